"""Features reach every flow by construction (one pipeline, runner.train.pipeline): class weights in every
search trial and every cross-validation fold, recorded; the data checks and the tuning rule in
cross-validation as in a single run; a search space outside the train.* limits refused by validate."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import labelled_rows, run_cli, tiny_spec_text, write_csv, write_spec

from runner.cli import main
from runner.train import weights


def read_json(path):
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture
def weighted_loss_calls(monkeypatch):
    """Counts the training steps (loss calls with gradients) that used the class-weighted loss."""
    import torch

    calls = {"train": 0}
    original = weights.weighted_loss

    def counting(*args, **kwargs):
        loss = original(*args, **kwargs)

        def compute_loss(*a, **k):
            if torch.is_grad_enabled():
                calls["train"] += 1
            return loss(*a, **k)

        return compute_loss

    monkeypatch.setattr(weights, "weighted_loss", counting)
    monkeypatch.setattr("runner.train.trainer.weighted_loss", counting)
    return calls


def skewed_rows():
    rows = labelled_rows(per_label=36, seed=5)
    return [row for i, row in enumerate(rows) if row["label"] == "pos" or i % 3 == 0]  # about 3:1


def run_in_process(spec_path, monkeypatch):
    monkeypatch.chdir(spec_path.parent)
    return CliRunner().invoke(main, ["run", str(spec_path)], catch_exceptions=False)


def test_every_search_trial_trains_with_the_class_weights_and_records_them(
    tiny_model, tmp_path, monkeypatch, weighted_loss_calls
):
    pytest.importorskip("optuna")
    write_csv(tmp_path / "data" / "train.csv", skewed_rows())
    extra = "search:\n  trials: 2\n  pruning: false\n  space:\n    learning_rate: {low: 0.001, high: 0.01, log: true}\n"
    text = tiny_spec_text(tiny_model, extra=extra).replace("  epochs: 1\n", "  epochs: 1\n  max_steps: 3\n")
    text = text.replace("train:\n", "train:\n  class_weights: balanced\n", 1)
    result = run_in_process(write_spec(tmp_path, text), monkeypatch)
    assert result.exit_code == 0, result.output[-3000:]
    # 2 trials of 3 steps and the run of 3 steps: every step weighted (without the trials', only 3)
    assert weighted_loss_calls["train"] == 9
    results = read_json(tmp_path / "run" / "run.json")["results"]
    assert results["class_weights"] and results["class_weights"]["neg"] > results["class_weights"]["pos"]
    assert results["search"]["class_weights"] == results["class_weights"]  # the same training split


def test_every_fold_trains_with_its_class_weights_and_the_record_has_them(
    tiny_model, tmp_path, monkeypatch, weighted_loss_calls
):
    write_csv(tmp_path / "data" / "train.csv", skewed_rows())
    text = tiny_spec_text(tiny_model).replace(
        "  epochs: 1\n", "  epochs: 1\n  max_steps: 3\n  class_weights: balanced\n"
    )
    text = text.replace("  train: data/train.csv\n", "  train: data/train.csv\n  cross_validation: {folds: 3}\n")
    result = run_in_process(write_spec(tmp_path, text), monkeypatch)
    assert result.exit_code == 0, result.output[-3000:]
    assert weighted_loss_calls["train"] == 4 * 3  # 3 folds and the final model, 3 steps each
    results = read_json(tmp_path / "run" / "run.json")["results"]
    assert results["class_weights"]["neg"] > results["class_weights"]["pos"] > 0
    per_fold = results["cross_validation"]["per_fold"]
    assert len(per_fold) == 3 and all(fold["class_weights"]["neg"] > fold["class_weights"]["pos"] for fold in per_fold)


def test_cross_validation_runs_the_data_checks(tiny_model, tmp_path):
    rows = labelled_rows(per_label=30, seed=2)
    rows += rows[:4]  # four exact duplicates
    write_csv(tmp_path / "data" / "train.csv", rows)
    text = tiny_spec_text(tiny_model).replace("  epochs: 1\n", "  epochs: 1\n  max_steps: 2\n")
    text = text.replace("  train: data/train.csv\n", "  train: data/train.csv\n  cross_validation: {folds: 2}\n")
    result = run_cli("run", str(write_spec(tmp_path, text)), cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    checks = read_json(tmp_path / "run" / "run.json")["results"]["data_checks"]
    assert checks["duplicates_in_train"]["exact"] + sum(o["exact"] for o in checks["overlap"].values()) == 4
    assert "repeat an earlier training text" in result.stdout + result.stderr or checks["overlap"]


def test_cross_validation_refuses_tuned_thresholds_on_three_classes_like_a_single_run(tiny_model, tmp_path):
    write_csv(tmp_path / "data" / "train.csv", labelled_rows(labels=("pos", "neg", "neu"), per_label=12))
    base = tiny_spec_text(tiny_model, extra="predict:\n  tune_thresholds: true\n")
    outcomes = {}
    for name, text in {
        "single": base,
        "cv": base.replace("  train: data/train.csv\n", "  train: data/train.csv\n  cross_validation: {folds: 2}\n"),
    }.items():
        spec = write_spec(tmp_path, text.replace("output:\n  dir: run", f"output:\n  dir: {name}"), f"{name}.yaml")
        result = run_cli("run", str(spec), cwd=tmp_path, timeout=600)
        outcomes[name] = result
        assert result.returncode == 2, result.stderr[-2000:]
        assert "predict.tune_thresholds is for multi-label or two classes" in result.stderr
        assert "Traceback" not in result.stderr
        assert not (tmp_path / name).exists()  # refused before the folder: none left behind
    first = [outcomes[name].stderr.splitlines()[0].split(" predict.tune_thresholds: ")[1] for name in outcomes]
    assert first[0] == first[1]  # the same words in both flows


@pytest.mark.parametrize(
    "space, message",
    [
        ("epochs: {low: 0.4, high: 0.9}", "epochs 0.4 is 0 whole epochs for a trial: it trains no step"),
        ("batch_size: {choices: [0, 8]}", "0 is below train.batch_size's minimum 1"),
        ("learning_rate: {low: 5, high: 10}", "5 is above train.learning_rate's maximum 1"),
        ("warmup_ratio: {choices: [0.1, 1.0]}", "1.0 is not below train.warmup_ratio's maximum 1"),
        ("weight_decay: {low: -0.1, high: 0.1}", "-0.1 is below train.weight_decay's minimum 0"),
    ],
)
def test_a_search_space_outside_the_train_limits_is_a_validate_error_at_its_line(tiny_model, tmp_path, space, message):
    pytest.importorskip("optuna")
    write_csv(tmp_path / "data" / "train.csv", labelled_rows())
    text = tiny_spec_text(tiny_model, extra=f"search:\n  trials: 2\n  space:\n    {space}\n")
    spec = write_spec(tmp_path, text)
    line = text.splitlines().index(f"    {space}") + 1
    result = run_cli("validate", str(spec))
    assert result.returncode == 2
    assert f"{spec}:{line}:" in result.stderr and message in result.stderr, result.stderr


def test_a_search_space_within_the_limits_validates(tiny_model, tmp_path):
    pytest.importorskip("optuna")
    write_csv(tmp_path / "data" / "train.csv", labelled_rows())
    space = "epochs: {low: 1, high: 3}\n    batch_size: {choices: [4, 8]}\n    learning_rate: {low: 0.0001, high: 0.1}"
    result = run_cli(
        "validate", str(write_spec(tmp_path, tiny_spec_text(tiny_model, extra=f"search:\n  space:\n    {space}\n")))
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("flow", ["cross_validation", "search", "compiled_cross_validation"])
@pytest.mark.timing
def test_sigterm_in_a_fold_or_a_trial_says_how_to_start_again_and_leaves_no_temporary_folder(
    tiny_model, tmp_path, flow
):
    """Nothing is left in TMPDIR: not the fold's or trial's folder, and not torch.compile's cache (which torch
    puts there by default: runner.train.hardware moves it to runner's cache folder)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    if flow == "search":
        pytest.importorskip("optuna")
    write_csv(tmp_path / "data" / "train.csv", labelled_rows(per_label=30))
    text = tiny_spec_text(tiny_model).replace("  epochs: 1\n", "  epochs: 1\n  max_steps: 400\n")
    if flow == "compiled_cross_validation":
        text = text.replace("  epochs: 1\n", "  epochs: 1\n  compile: true\n")
    if flow == "search":
        text += "search:\n  trials: 3\n  space:\n    learning_rate: {low: 0.001, high: 0.01}\n"
        started_line, temporary = "search:", "runner-search-"
    else:
        text = text.replace("  train: data/train.csv\n", "  train: data/train.csv\n  cross_validation: {folds: 2}\n")
        started_line, temporary = "cross-validation:", "runner-folds-"
    spec = write_spec(tmp_path, text)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONUNBUFFERED": "1", "TORCHINDUCTOR_CACHE_DIR": ""}
    command = [sys.executable, "-m", "runner", "run", str(spec), "--output", "elsewhere", "--set", "seed=3"]
    process = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    for line in process.stdout:
        if line.startswith(started_line) or time.monotonic() > deadline:
            break
    said_before = []  # inside the first fold or trial: its first progress line (10% of 400 steps), not a sleep
    for line in process.stderr:
        said_before.append(line)
        if line.startswith("train: step") or time.monotonic() > deadline:
            break
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=300)
    err = "".join(said_before) + err
    assert process.returncode == 143, err[-2000:]
    said = [line for line in err.splitlines() if line.startswith(("error", "hint", "interrupted", "note"))]
    assert "Traceback" not in err and len(said) == 1 and said[0].startswith("interrupted"), err
    assert "start again with: runner run" in err or "run it again" in err, err
    if "start again with:" in err:  # the user's own command, --output and --set included
        assert f"runner run {spec} --output elsewhere --set seed=3" in err
    assert not [p.name for p in scratch.iterdir() if p.name.startswith(temporary)]
    assert not list(scratch.iterdir()), sorted(p.name for p in scratch.iterdir())
    assert not (tmp_path / "elsewhere").exists()


def test_dry_run_says_what_each_flow_trains(tiny_model, tmp_path):
    write_csv(tmp_path / "data" / "train.csv", labelled_rows())
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    plans = {
        "single": [],
        "cv": ["--set", "data.cross_validation={folds: 4}"],
        "search": ["--set", "search={trials: 3, space: {learning_rate: {low: 0.001, high: 0.01}}}"],
    }
    said, data = {}, {}
    for name, extra in plans.items():
        result = run_cli("run", str(spec), "--dry-run", *extra, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        said[name] = next(line for line in result.stdout.splitlines() if line.startswith("0. flow:"))
        data[name] = next(line for line in result.stdout.splitlines() if line.startswith("1. data:"))
    assert "one training" in said["single"]
    assert "5 trainings: 4 folds" in said["cv"]
    assert "validation: 20% held out" in data["single"]
    assert "validation: out of fold, every training row in one of 4 folds" in data["cv"]
    assert "held out" not in data["cv"]
    assert said["search"].startswith("0. flow: a search of 3 trial(s) over learning_rate, then one training")
    assert not (tmp_path / "run").exists()  # a dry run touches nothing


def test_a_fold_without_a_class_in_its_training_rows_is_warned(tiny_model, tmp_path):
    rows = [row for row in labelled_rows(per_label=12, seed=4) if row["label"] == "pos"][:10]
    rows.append({"text": "the day was awful and grim", "label": "neg"})  # one row of neg: one fold trains without it
    write_csv(tmp_path / "data" / "train.csv", rows)
    text = tiny_spec_text(tiny_model, extra="labels: [neg, pos]\n").replace(
        "  epochs: 1\n", "  epochs: 1\n  max_steps: 2\n"
    )
    text = text.replace("  train: data/train.csv\n", "  train: data/train.csv\n  cross_validation: {folds: 3}\n")
    result = run_cli("run", str(write_spec(tmp_path, text)), cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    warned = [line for line in result.stderr.splitlines() if "has no training row of class 'neg'" in line]
    assert len(warned) == 1 and warned[0].startswith("warning: fold ")


def test_a_cross_validation_record_cut_short_is_completed_by_the_resume_its_hint_names(tiny_model, tmp_path):
    """The folder check says a record cut short is completed by --resume; for a cross-validation run too (it
    was refused as "cannot be resumed"). The record is written again from run.json, no training."""
    import json

    write_csv(tmp_path / "data" / "train.csv", labelled_rows())
    text = tiny_spec_text(tiny_model).replace("  train: data/train.csv\n",
                                              "  train: data/train.csv\n  cross_validation: {folds: 2}\n")
    spec = write_spec(tmp_path, text)
    assert run_cli("run", str(spec), cwd=tmp_path).returncode == 0
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    (tmp_path / "run" / "run.json").write_text(json.dumps({**manifest, "status": "recording"}))  # killed there
    (tmp_path / "run" / "report.md").unlink()
    again = run_cli("run", str(spec), cwd=tmp_path)
    assert again.returncode == 2 and "--resume completes it" in again.stderr
    result = run_cli("run", str(spec), "--resume", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no training" in result.stdout and (tmp_path / "run" / "report.md").is_file()
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "finished"
