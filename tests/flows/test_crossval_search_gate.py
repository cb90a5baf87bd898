"""Cross-validation, label issues, hyperparameter search, paired comparisons and the quality gate
on the tiny model: fold bookkeeping, flipped labels found, a search repeated with its
seed, the bootstrap refusing other rows, the gate failing and passing through the CLI and the Action."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import labelled_rows, run_cli, tiny_spec_text, write_csv, write_spec
from support.github_fake import FakeGitHub, actions_env

from runner.cli import main
from runner.flows.crossval import fold_ids
from runner.publish import action
from runner.record.comparison import paired_delta


def read_json(path):
    return json.loads(path.read_text(encoding="utf-8"))


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------------------------------------
# Folds


def test_folds_put_every_row_in_exactly_one_fold_stratified_and_seeded():
    labels = [0] * 30 + [1] * 12 + [2] * 9
    folds, stratified = fold_ids(labels, 3, seed=5, stratify=True)
    assert stratified and len(folds) == len(labels) and set(folds) == {0, 1, 2}
    for k in range(3):  # each class spread evenly over the folds
        assert sorted(label for label, f in zip(labels, folds) if f == k).count(2) == 3
    assert fold_ids(labels, 3, seed=5, stratify=True)[0] == folds
    assert fold_ids(labels, 3, seed=6, stratify=True)[0] != folds
    # a class with fewer rows than folds: plain K-fold, said so
    assert fold_ids([0] * 20 + [1] * 2, 3, seed=5, stratify=True)[1] is False


def test_cross_validation_with_a_validation_file_is_a_spec_error(tiny_model, tmp_path):
    write_csv(tmp_path / "data" / "train.csv", labelled_rows())
    text = tiny_spec_text(tiny_model).replace(
        "  train: data/train.csv\n",
        "  train: data/train.csv\n  validation_file: data/train.csv\n  cross_validation: {folds: 3}\n",
    )
    result = run_cli("validate", str(write_spec(tmp_path, text)))
    assert result.returncode == 2
    assert "data.validation_file" in result.stderr and "cross_validation" in result.stderr


@pytest.fixture(scope="module")
def crossval_run(tiny_model, tmp_path_factory):
    """100 rows, 6 of them with their label flipped on purpose, 3 folds."""
    folder = tmp_path_factory.mktemp("crossval")
    rows = labelled_rows(per_label=50, seed=3)
    flipped = sorted(random.Random(11).sample(range(len(rows)), 6))
    for i in flipped:
        rows[i]["label"] = "neg" if rows[i]["label"] == "pos" else "pos"
    write_csv(folder / "data" / "train.csv", rows)
    text = (
        tiny_spec_text(tiny_model, extra="labels: [neg, pos]\n")
        .replace("epochs: 1", "epochs: 6")
        .replace("  train: data/train.csv\n", "  train: data/train.csv\n  cross_validation: {folds: 3}\n")
    )
    result = run_cli("run", str(write_spec(folder, text)), cwd=folder, timeout=1800)  # 4 trainings
    assert result.returncode == 0, result.stderr[-3000:]
    # CSV line numbers: the header is line 1
    return folder / "run", {i + 2 for i in flipped}, len(rows), result.stdout


def test_every_training_row_is_predicted_exactly_once_out_of_fold(crossval_run):
    run_dir, _, n, output = crossval_run
    # the console describes the rows the folds use, not the data step's validation split they take back
    assert f"cross-validation: {n} rows in 3 stratified folds" in output and "data: train" not in output
    predicted = read_jsonl(run_dir / "predictions" / "validation.jsonl")
    assert sorted(r["row"] for r in predicted) == list(range(2, n + 2))
    assert all(abs(sum(r["probabilities"].values()) - 1) < 1e-4 for r in predicted)
    metrics = read_json(run_dir / "metrics.json")
    cv = metrics["cross_validation"]
    assert cv["folds"] == 3 and len(cv["per_fold"]) == 3
    assert set(cv["mean"]) == set(cv["std"]) and "f1_macro" in cv["mean"]
    assert metrics["headline"]["split"] == "validation"
    record = read_json(run_dir / "run.json")["results"]
    assert sum(fold["rows"] for fold in record["cross_validation"]["per_fold"]) == n
    assert record["data_summary"]["rows"] == {"train": n}  # the final model saw every row
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "## Cross-validation" in report and "## Suspected label issues" in report


def test_flipped_labels_are_at_the_top_of_the_label_issue_list(crossval_run):
    run_dir, flipped, _, _ = crossval_run
    with open(run_dir / "label_issues.csv", encoding="utf-8") as stream:
        issues = list(csv.DictReader(stream))
    assert issues and list(issues[0]) == ["rank", "row", "text", "given_label", "suggested_label", "score", "confident"]
    scores = [float(r["score"]) for r in issues]
    assert scores == sorted(scores)  # most suspect first
    top = {int(r["row"]) for r in issues[: 2 * len(flipped)]}
    caught = len(top & flipped)
    assert caught >= 4, (caught, flipped, [r["row"] for r in issues])
    for row in issues:
        if int(row["row"]) in flipped:
            assert row["suggested_label"] != row["given_label"]


# ---------------------------------------------------------------------------------------------
# Search


SEARCH = """search:
  trials: 3
  space:
    learning_rate: {low: 0.001, high: 0.01, log: true}
    weight_decay: {choices: [0.0, 0.05]}
"""


def test_search_records_every_trial_writes_the_best_spec_and_repeats_with_its_seed(tiny_model, tmp_path):
    pytest.importorskip("optuna")
    from runner.flows.search import search
    from runner.spec.document import load_spec

    write_csv(tmp_path / "data" / "train.csv", labelled_rows(per_label=30))
    text = tiny_spec_text(tiny_model, extra=SEARCH).replace("  batch_size: 8\n", "  batch_size: 8\n  max_steps: 6\n")
    spec_path = write_spec(tmp_path, text)
    result = run_cli("run", str(spec_path), cwd=tmp_path, timeout=1800)  # 3 trials and the run
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "run"
    record = read_json(run_dir / "run.json")["results"]["search"]
    assert len(record["trials"]) == 3 and record["sampler"] == "TPE (seed 7)"
    assert all(set(t["params"]) == {"learning_rate", "weight_decay"} for t in record["trials"])
    best = record["best"]
    best_spec = load_spec(run_dir / "best-spec.yaml", check_files=False)
    assert best_spec["search"] is None
    # 3 significant figures, and the run trained with those values, so the file reproduces it
    assert best_spec["train"]["learning_rate"] == pytest.approx(best["params"]["learning_rate"], rel=5e-3)
    assert read_json(run_dir / "run.json")["spec"]["train"]["learning_rate"] == best_spec["train"]["learning_rate"]
    assert "## Hyperparameter search" in (run_dir / "report.md").read_text(encoding="utf-8")

    again = search(load_spec(spec_path))  # the same spec, data and seed: the same trials
    assert [(t["params"], t["value"], t["state"]) for t in again["trials"]] == [
        (t["params"], t["value"], t["state"]) for t in record["trials"]
    ]
    assert again["best"]["number"] == best["number"]


def test_search_space_key_without_lora_is_a_spec_error(tiny_model, tmp_path):
    write_csv(tmp_path / "data" / "train.csv", labelled_rows())
    text = tiny_spec_text(tiny_model, extra="search:\n  trials: 2\n  space:\n    lora_r: {choices: [4, 8]}\n")
    result = CliRunner().invoke(main, ["validate", str(write_spec(tmp_path, text))])
    assert result.exit_code == 2 and "search.space.lora_r needs LoRA" in result.output


def test_validate_imports_neither_optuna_nor_cleanlab_nor_torch(tiny_model, tmp_path):
    write_csv(tmp_path / "data" / "train.csv", labelled_rows())
    text = tiny_spec_text(tiny_model, extra=SEARCH + "gate: {min: 0.5}\n").replace(
        "  train: data/train.csv\n", "  train: data/train.csv\n  cross_validation: {folds: 3}\n"
    )
    spec = write_spec(tmp_path, text)
    code = (
        "import sys; from runner.cli import main\n"
        f"sys.argv = ['runner', 'validate', {str(spec)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    print('EXIT', e.code)\n"
        "print('HEAVY', [m for m in ('torch', 'optuna', 'cleanlab', 'transformers') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout and "ok:" in out.stdout, out.stdout + out.stderr


# ---------------------------------------------------------------------------------------------
# Comparisons and the gate, on run folders written by hand


def fake_run(folder, truth, predicted, rows=None, gate=None, f1=None):
    """A finished run folder with validation predictions (labels neg/pos) and its metrics."""
    labels = ["neg", "pos"]
    folder.mkdir(parents=True)
    rows = rows or list(range(2, len(truth) + 2))
    lines = []
    for row, t, p in zip(rows, truth, predicted):
        probability = {"neg": 0.9 if p == "neg" else 0.1, "pos": 0.1 if p == "neg" else 0.9}
        lines.append({"row": row, "text": f"text {row}", "true_label": t, "label": p, "probabilities": probability})
    (folder / "predictions").mkdir()
    (folder / "predictions" / "validation.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    accuracy = sum(t == p for t, p in zip(truth, predicted)) / len(truth)
    value = f1 if f1 is not None else accuracy
    metrics = {
        "validation": {"accuracy": accuracy, "f1_macro": value},
        "headline": {"split": "validation", "name": "f1_macro", "value": value},
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    spec = {"version": 1, "name": folder.name, "task": "single_label_classification", "gate": gate}
    (folder / "spec.yaml").write_text(json.dumps(spec))
    (folder / "run.json").write_text(
        json.dumps(
            {
                "status": "finished",
                "name": folder.name,
                "spec": spec,
                "results": {"labels": labels, "task": spec["task"]},
            }
        )
    )
    return folder


def truth_and_predictions(n, accuracy, seed):
    rng = random.Random(seed)
    truth = [rng.choice(["neg", "pos"]) for _ in range(n)]
    flip = set(rng.sample(range(n), round(n * (1 - accuracy))))
    return truth, [("pos" if t == "neg" else "neg") if i in flip else t for i, t in enumerate(truth)]


def test_paired_bootstrap_gives_an_interval_on_the_same_rows(tmp_path):
    truth, base_predictions = truth_and_predictions(400, 0.70, seed=1)
    _, new_predictions = truth_and_predictions(400, 0.90, seed=1)
    base = fake_run(tmp_path / "base", truth, base_predictions)
    mostly_right = [t if i % 10 else p for i, (t, p) in enumerate(zip(truth, new_predictions))]
    new = fake_run(tmp_path / "new", truth, mostly_right)
    result = paired_delta(new, base, "validation", "accuracy")
    assert result["paired"] and result["rows"] == 400
    assert result["low"] < result["delta"] < result["high"]
    assert result["verdict"] == "better" and result["low"] > 0
    import shutil

    same = paired_delta(shutil.copytree(base, tmp_path / "copy"), base, "validation", "f1_macro")
    assert same["delta"] == 0 and same["verdict"] == "no clear difference"
    itself = paired_delta(base, base, "validation", "f1_macro")  # no baseline at all (tests/flows/test_gate_split)
    assert itself["paired"] is False and itself["itself"] and "this run itself" in itself["reason"]


def test_paired_bootstrap_refuses_when_the_rows_differ(tmp_path):
    truth, predictions = truth_and_predictions(50, 0.8, seed=2)
    base = fake_run(tmp_path / "base", truth, predictions)
    new = fake_run(tmp_path / "new", truth, predictions, rows=list(range(100, 150)))
    result = paired_delta(new, base, "validation", "f1_macro")
    assert result["paired"] is False and "different rows" in result["reason"]
    fewer = fake_run(tmp_path / "fewer", truth[:40], predictions[:40])
    assert paired_delta(fewer, base, "validation", "f1_macro")["paired"] is False
    out = CliRunner().invoke(main, ["report", str(new), "--compare", str(base)])
    assert out.exit_code == 0 and "no difference called" in out.output


@pytest.mark.parametrize("given, message", [
    ("base.csv", "base.csv is a file, neither a run folder nor a metrics.json"),
    ("missing", "missing does not exist"),
    ("empty-folder", "empty-folder has no metrics.json"),
    ("binary", "binary/metrics.json is not UTF-8 text"),
    ("null", "null/metrics.json holds null, not a JSON object"),
])
def test_a_baseline_that_is_no_run_is_one_clear_error(tmp_path, monkeypatch, given, message):
    truth, predictions = truth_and_predictions(20, 0.8, seed=4)
    run = fake_run(tmp_path / "run", truth, predictions)
    (tmp_path / "base.csv").write_text("text,label\nsecret text,pos\n")
    (tmp_path / "empty-folder").mkdir()
    (tmp_path / "binary").mkdir()
    (tmp_path / "binary" / "metrics.json").write_bytes(b"\xff\xfe\x00secret text")
    (tmp_path / "null").mkdir()
    (tmp_path / "null" / "metrics.json").write_text("null")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["report", str(run), "--compare", given])
    assert result.exit_code == 2 and f"error: {message}" in result.output.replace(str(tmp_path) + "/", "")
    assert "hint:" in result.output and "secret text" not in result.output and "Traceback" not in result.output


def test_a_nan_baseline_is_no_baseline_and_the_json_stays_standard(tmp_path):
    truth, predictions = truth_and_predictions(20, 0.8, seed=5)
    run = fake_run(tmp_path / "run", truth, predictions)
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "metrics.json").write_text('{"validation": {"f1_macro": NaN, "accuracy": 0.5}}')
    markdown = CliRunner().invoke(main, ["report", str(run), "--compare", str(tmp_path / "base")])
    assert markdown.exit_code == 0, markdown.output
    f1_row = next(line for line in markdown.output.splitlines() if "f1_macro" in line and line.startswith("|"))
    assert "nan" not in f1_row and "no change" not in f1_row and "–" in f1_row
    out = CliRunner().invoke(main, ["report", str(run), "--compare", str(tmp_path / "base"), "--format", "json"])
    summary = json.loads(out.stdout, parse_constant=lambda name: pytest.fail(f"{name} in the JSON"))
    assert summary["metrics"]["validation"]["f1_macro"]["base"] is None
    assert summary["metrics"]["validation"]["accuracy"]["base"] == 0.5


def test_gate_min_fails_and_passes_with_the_cli_exit_code(tmp_path):
    truth, predictions = truth_and_predictions(60, 0.8, seed=3)
    failing = fake_run(tmp_path / "low", truth, predictions, gate={"min": 0.95})
    passing = fake_run(tmp_path / "high", truth, predictions, gate={"min": 0.5})
    result = run_cli("report", str(failing))
    assert result.returncode == 1
    assert "Quality gate: failed" in result.stdout and "below gate.min 0.95" in result.stdout
    assert result.stderr.startswith("error: gate: f1_macro") and "hint:" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("report", str(passing))
    assert result.returncode == 0 and "Quality gate: passed" in result.stdout


def test_gate_max_drop_against_a_baseline_shows_the_interval(tmp_path):
    truth, good = truth_and_predictions(300, 0.9, seed=4)
    _, bad = truth_and_predictions(300, 0.7, seed=4)
    base = fake_run(tmp_path / "base", truth, good)
    worse = fake_run(tmp_path / "worse", truth, bad, gate={"metric": "accuracy", "max_drop": 0.05})
    result = run_cli("report", str(worse), "--compare", str(base))
    assert result.returncode == 1
    assert "dropped by 0.2000" in result.stdout and "95% paired bootstrap interval" in result.stdout
    summary = json.loads(run_cli("report", str(worse), "--compare", str(base), "--format", "json").stdout)
    assert summary["gate"]["passed"] is False and summary["comparison"]["verdict"] == "worse"
    assert summary["per_class_deltas"] is not None
    fine = fake_run(tmp_path / "fine", truth, good, gate={"metric": "accuracy", "max_drop": 0.05})
    assert run_cli("report", str(fine), "--compare", str(base)).returncode == 0
    # --compare-name: the baseline named by where it came from (the action: spec and run), not by its folder
    named = run_cli("report", str(fine), "--compare", str(base), "--compare-name", "specs/a.yaml from run 12 <b>")
    assert "Baseline: specs/a.yaml from run 12 &lt;b&gt;." in named.stdout and str(base) not in named.stdout
    # other rows: no paired interval, so max_drop is checked on the two runs' figures (0.9 -> 0.7) and fails
    other = fake_run(tmp_path / "other", truth, bad, rows=list(range(500, 800)), gate={"max_drop": 0.05})
    result = run_cli("report", str(other), "--compare", str(base))
    assert result.returncode == 1, result.stdout
    assert "dropped by 0.2000" in result.stdout and "unpaired" in result.stdout and "different rows" in result.stdout
    same = fake_run(tmp_path / "same", truth, good, rows=list(range(500, 800)), gate={"max_drop": 0.05})
    result = run_cli("report", str(same), "--compare", str(base))
    assert result.returncode == 0 and "not paired rows" in result.stdout


def test_a_max_drop_that_cannot_be_checked_fails_the_gate(tmp_path):
    """A baseline is given but neither paired rows nor its figure exist: the gate fails and says why."""
    truth, good = truth_and_predictions(100, 0.9, seed=6)
    run = fake_run(tmp_path / "run", truth, good, gate={"max_drop": 0.0})
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "metrics.json").write_text('{"validation": {"accuracy": 0.5}}')  # no f1_macro, no rows
    result = run_cli("report", str(run), "--compare", str(tmp_path / "base"))
    assert result.returncode == 1, result.stdout
    assert "gate.max_drop cannot be checked: the baseline has no predictions/validation.jsonl" in result.stdout
    assert "not checked" not in result.stdout.replace("cannot be checked", "")
    # a damaged predictions file is named as damaged, not as missing
    broken = fake_run(tmp_path / "broken", truth, good)
    (broken / "predictions" / "validation.jsonl").write_text('{"row": 2, "text": \n')
    summary = json.loads(run_cli("report", str(run), "--compare", str(broken), "--format", "json").stdout)
    assert "not JSON lines" in summary["comparison"]["reason"]
    assert summary["gate"]["passed"] is True  # the figures (equal) are checked unpaired


LINE_LIKE = ("\u0085", "\u2028", "\u000c", "\u2029", "\u001e")  # str.splitlines() splits at each of these


def test_texts_with_line_like_characters_round_trip_through_run_predict_compare_and_the_gate(tiny_model, tmp_path):
    """Tweets hold U+0085 (NEXT LINE), U+2028 and form feeds: every JSONL and text reader splits at "\n" only,
    so the comparison pairs the rows and a regression fails a max_drop gate (it passed, unchecked, before)."""
    rows = labelled_rows(per_label=40, seed=3)
    for i, row in enumerate(rows):
        if i % 3 == 0:
            row["text"] = row["text"].replace(" ", LINE_LIKE[i % len(LINE_LIKE)], 1)
    write_csv(tmp_path / "data" / "train.csv", rows)
    good = tiny_spec_text(tiny_model, extra="gate:\n  max_drop: 0.0\n").replace("epochs: 1", "epochs: 4")
    write_spec(tmp_path, good, "good.yaml")
    bad = good.replace("learning_rate: 0.003", "learning_rate: 0.0000001").replace("epochs: 4", "epochs: 1")
    write_spec(tmp_path, bad, "bad.yaml")
    for name in ("good", "bad"):
        result = run_cli("run", f"{name}.yaml", "--output", name, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    written = (tmp_path / "good" / "predictions" / "validation.jsonl").read_text(encoding="utf-8")
    records = [json.loads(line) for line in written.split("\n") if line]
    assert any(ch in r["text"] for r in records for ch in LINE_LIKE), "the validation split holds such texts"
    result = run_cli("report", "bad", "--compare", "good", "--format", "json", cwd=tmp_path)
    summary = json.loads(result.stdout)
    assert summary["comparison"]["paired"] is True, summary["comparison"]
    assert summary["comparison"]["rows"] == len(records)
    assert summary["comparison"]["delta"] < 0 and summary["gate"]["passed"] is False
    result = run_cli("report", "bad", "--compare", "good", cwd=tmp_path)
    assert result.returncode == 1 and "Quality gate: failed" in result.stdout and "not checked" not in result.stdout
    # predict reads a .txt input one line a text: a U+0085 or U+2028 inside a line stays in its text, and a byte
    # order mark at its start is no part of the first text
    texts = tmp_path / "texts.txt"
    texts.write_bytes("\ufeffa great\u0085sunny day\nan awful\u2028grim day\r\nthird\u000cline\n".encode())
    out = tmp_path / "out.jsonl"
    result = run_cli("predict", "good", "--input", str(texts), "--output", str(out), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    predicted = [json.loads(line) for line in out.read_text(encoding="utf-8").split("\n") if line]
    assert [p["text"] for p in predicted] == ["a great\u0085sunny day", "an awful\u2028grim day", "third\u000cline"]


def test_action_fails_and_the_comment_says_why_when_the_gate_fails(tmp_path, monkeypatch):
    (tmp_path / "repo" / "specs").mkdir(parents=True)
    (tmp_path / "repo" / "specs" / "s.yaml").write_text("version: 1\n")
    monkeypatch.chdir(tmp_path / "repo")
    truth, predictions = truth_and_predictions(60, 0.8, seed=5)

    def run_cli_fake(args, capture):
        if args[0] == "run":
            fake_run(tmp_path / "temp" / "runner-runs" / "specs-s", truth, predictions, gate={"min": 0.99})
            return 0, "", ""
        result = CliRunner().invoke(main, args)
        return result.exit_code, result.stdout, result.stderr

    with FakeGitHub(login=None) as fake:
        env = actions_env(tmp_path, fake.url) | {
            "RUNNER_TEMP": str(tmp_path / "temp"),
            "INPUT_SPEC": "specs/s.yaml",
            "GITHUB_WORKSPACE": str(tmp_path / "repo"),
        }
        assert action.run_action(env, run_cli=run_cli_fake) == 1
        [comment] = fake.comments[7]
    assert "Quality gate: failed" in comment["body"] and "below gate.min 0.99" in comment["body"]


def test_a_baseline_says_whose_run_it_is_and_warns_when_another_specs(tmp_path):
    """`report --compare` names the baseline's spec; a baseline another spec produced (an explicit base-metrics
    of the action pointing at the wrong run) is said, in the report and on stderr."""
    truth, predictions = truth_and_predictions(60, 0.8, seed=5)
    run = fake_run(tmp_path / "new" / "tiny", truth, predictions)
    same = fake_run(tmp_path / "old" / "tiny", truth, predictions)
    other = fake_run(tmp_path / "other", truth, predictions)
    result = run_cli("report", str(run), "--compare", str(same))
    assert result.returncode == 0 and "Its spec: tiny." in result.stdout
    assert "another spec" not in result.stdout + result.stderr
    result = run_cli("report", str(run), "--compare", str(other))
    assert result.returncode == 0, result.stderr
    assert "Its spec: other." in result.stdout and "**The baseline is another spec's run** (other)" in result.stdout
    assert "warning: the baseline is another spec's run (other), not tiny's" in result.stderr
    summary = json.loads(run_cli("report", str(run), "--compare", str(other), "--format", "json").stdout)
    assert summary["base_spec"] == {"name": "other", "spec_file": None} and summary["base_is_another_spec"] is True
