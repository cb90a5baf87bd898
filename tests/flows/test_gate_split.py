"""The gate on the test split (`gate: {split: test}`): its limits and its paired max_drop check the test
figures, not validation's (the split that chose the checkpoint, thresholds and temperature); a run or a
baseline without a test split fails the gate with the reason, never passes unchecked; the comment and the
error line name the split the gate used. Run folders written by hand, `runner report` through the CLI."""

from __future__ import annotations

import json
import random

from conftest import run_cli, write_spec

LABELS = ["neg", "pos"]


def predictions(n: int, accuracy: float, seed: int) -> tuple[list[str], list[str]]:
    rng = random.Random(seed)
    truth = [rng.choice(LABELS) for _ in range(n)]
    wrong = set(rng.sample(range(n), round(n * (1 - accuracy))))
    return truth, [LABELS[1 - LABELS.index(t)] if i in wrong else t for i, t in enumerate(truth)]


def write_split(folder, split: str, truth, predicted) -> dict:
    records = []
    for row, (t, p) in enumerate(zip(truth, predicted), start=2):
        probabilities = {"neg": 0.9 if p == "neg" else 0.1, "pos": 0.1 if p == "neg" else 0.9}
        records.append({"row": row, "text": f"{split} text {row}", "true_label": t, "label": p,
                        "probabilities": probabilities})
    (folder / "predictions").mkdir(exist_ok=True)
    (folder / "predictions" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    accuracy = sum(t == p for t, p in zip(truth, predicted)) / len(truth)
    return {"accuracy": accuracy, "f1_macro": accuracy}


def fake_run(folder, splits: dict, gate: dict | None = None):
    """A finished run with predictions and metrics of each of `splits` ({split: (truth, predicted)})."""
    folder.mkdir(parents=True)
    metrics = {split: write_split(folder, split, *rows) for split, rows in splits.items()}
    metrics["headline"] = {"split": "validation", "name": "f1_macro", "value": metrics["validation"]["f1_macro"]}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    spec = {"version": 1, "name": folder.name, "task": "single_label_classification", "gate": gate}
    (folder / "spec.yaml").write_text(json.dumps(spec))
    manifest = {"status": "finished", "name": folder.name, "spec": spec,
                "results": {"labels": LABELS, "task": spec["task"]}}
    (folder / "run.json").write_text(json.dumps(manifest))
    return folder


def report(run, base=None, fmt="markdown"):
    args = ["report", str(run)] + (["--compare", str(base)] if base else []) + ["--format", fmt]
    return run_cli(*args)


def test_the_gate_checks_the_split_it_names(tmp_path):
    """Validation flatters (0.95), test does not (0.60): the same min passes on validation, fails on test."""
    splits = {"validation": predictions(200, 0.95, 1), "test": predictions(200, 0.60, 2)}
    on_test = fake_run(tmp_path / "on-test", splits, gate={"split": "test", "min": 0.8})
    result = report(on_test)
    assert result.returncode == 1, result.stdout
    assert "f1_macro 0.6000 on test is below gate.min 0.8" in result.stdout
    assert result.stderr.startswith("error: gate: f1_macro 0.6000 on test is below gate.min 0.8")
    gate = json.loads(report(on_test, fmt="json").stdout)["gate"]
    assert gate["split"] == "test" and gate["value"] == 0.6 and gate["passed"] is False
    by_default = fake_run(tmp_path / "by-default", splits, gate={"min": 0.8})
    result = report(by_default)
    assert result.returncode == 0, result.stderr
    assert "**Quality gate: passed** (f1_macro 0.9500 on validation)" in result.stdout
    passing = fake_run(tmp_path / "passing", splits, gate={"split": "test", "min": 0.5})
    result = report(passing)
    assert result.returncode == 0 and "**Quality gate: passed** (f1_macro 0.6000 on test)" in result.stdout


def test_max_drop_on_test_compares_the_test_predictions_paired(tmp_path):
    """Both runs predict the same validation rows equally well; on test the new run is worse."""
    validation = predictions(300, 0.9, 3)
    truth, good = predictions(300, 0.9, 4)
    _, bad = predictions(300, 0.7, 4)
    base = fake_run(tmp_path / "base", {"validation": validation, "test": (truth, good)})
    gate = {"split": "test", "max_drop": 0.05}
    new = fake_run(tmp_path / "new", {"validation": validation, "test": (truth, bad)}, gate=gate)
    result = report(new, base)
    assert result.returncode == 1, result.stdout
    assert "f1_macro on test dropped by 0.2000" in result.stdout
    assert "95% paired bootstrap interval" in result.stdout and "on the same 300 test rows" in result.stdout
    summary = json.loads(report(new, base, fmt="json").stdout)
    assert summary["comparison"]["split"] == "validation" and summary["comparison"]["delta"] == 0  # the headline's
    assert summary["gate"]["split"] == "test" and summary["gate"]["passed"] is False
    on_validation = fake_run(tmp_path / "on-validation", {"validation": validation, "test": (truth, bad)},
                             gate={"max_drop": 0.05})
    assert report(on_validation, base).returncode == 0  # validation did not drop: the default gate passes


def test_a_test_gate_fails_when_either_run_has_no_test_split(tmp_path):
    validation = predictions(100, 0.9, 5)
    test = predictions(100, 0.9, 6)
    gate = {"split": "test", "max_drop": 0.0}
    with_test = fake_run(tmp_path / "with-test", {"validation": validation, "test": test}, gate=gate)
    without_test = fake_run(tmp_path / "without-test", {"validation": validation}, gate=gate)

    result = report(with_test, without_test)  # the baseline has no test split
    assert result.returncode == 1, result.stdout
    assert "gate.max_drop cannot be checked: the baseline has no test split" in result.stdout
    assert "not checked" not in result.stdout.replace("cannot be checked", "")

    result = report(without_test, with_test)  # the run itself has none
    assert result.returncode == 1, result.stdout
    assert "the run has no test split to gate on (gate.split: test; a test split needs data.test_file" in result.stdout
    assert "not checked" not in result.stdout.replace("cannot be checked", "")

    alone = fake_run(tmp_path / "alone", {"validation": validation}, gate={"split": "test", "min": 0.1})
    result = report(alone)  # no baseline: the limit still cannot be checked without a test split
    assert result.returncode == 1 and "the run has no test split to gate on" in result.stderr


def test_the_failed_gate_annotation_points_at_gate_split(tmp_path):
    """The Action's ::error for a gate that failed for want of a test split is placed at `split:` in the spec."""
    from runner.publish.action_errors import gate_annotation

    spec = write_spec(tmp_path, "version: 1\nname: a\ngate:\n  min: 0.5\n  split: test\n")
    line = "the run has no test split to gate on (gate.split: test; a test split needs data.test_file)"
    assert gate_annotation(line, str(spec), {"GITHUB_WORKSPACE": str(tmp_path)}).startswith(
        "::error file=spec.yaml,line=5,col=3,")


def test_validate_takes_gate_split_test_and_refuses_another_split(tmp_path):
    text = "version: 1\nname: a\ndata:\n  train: train.csv\n  test_file: test.csv\nmodel:\n  name: m\n"
    (tmp_path / "train.csv").write_text("text,label\na,pos\n")
    (tmp_path / "test.csv").write_text("text,label\na,pos\n")
    good = write_spec(tmp_path, text + "gate:\n  split: test\n  min: 0.5\n", "good.yaml")
    assert run_cli("validate", str(good)).returncode == 0
    bad = write_spec(tmp_path, text + "gate:\n  split: holdout\n", "bad.yaml")
    result = run_cli("validate", str(bad))
    assert result.returncode == 2 and f"{bad}:9:10 gate.split" in result.stderr, result.stderr


def test_validate_refuses_a_test_gate_when_the_spec_has_no_test_split(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\na,pos\n")
    spec = write_spec(tmp_path, "version: 1\nname: a\ndata:\n  train: train.csv\nmodel:\n  name: m\n"
                                "gate:\n  min: 0.5\n  split: test\n")
    result = run_cli("validate", str(spec))
    assert result.returncode == 2, result.stdout
    lines = result.stderr.splitlines()
    assert lines[0] == (f"error: {spec}:9:10 gate.split: gate.split is test, but the spec has no test split, "
                        "so every run fails the gate")
    assert lines[1].startswith("hint: add data.test_file (or data.hub.test_split)")


def test_a_run_compared_with_itself_is_no_baseline_and_fails_a_max_drop_gate(tmp_path):
    """`report RUN --compare RUN` said "Δ +0.0000, no clear difference" and passed `max_drop: 0`: a run is no
    baseline for itself (a copy in another folder still is), and the gate says why it cannot check."""
    splits = {"validation": predictions(200, 0.9, 5)}
    run = fake_run(tmp_path / "run", splits, gate={"max_drop": 0.0})
    for base in (run, tmp_path / "." / "run"):  # the same folder, however it is written
        result = report(run, base)
        assert result.returncode == 1, result.stdout
        assert "the baseline is this run itself" in result.stdout + result.stderr
    import shutil

    copy = shutil.copytree(run, tmp_path / "copy")
    result = report(run, copy)
    assert result.returncode == 0 and "the baseline is this run itself" not in result.stdout, result.stdout
