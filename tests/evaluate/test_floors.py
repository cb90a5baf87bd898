"""Calibration and tuned thresholds obey one floor (calibration.validation_floor): enough validation rows of
every class, or neither is fitted, with one line that names the class counts, recorded in run.json's
`calibration` and the report. Units on the rule, then a real `runner run` on one validation row."""

from __future__ import annotations

import json
import random

import numpy as np
from conftest import make_texts, run_cli, tiny_spec_text, write_csv, write_spec

from runner.evaluate import calibration as cal
from runner.evaluate import quality
from runner.record.result import RunResult
from runner.spec.sections import PredictSection
from runner.spec.tasks import task_of

LABELS = ["neg", "pos"]


def test_the_floor_needs_every_class_and_rows_in_all():
    one_row = cal.validation_floor(np.array([1]), LABELS)
    assert not one_row["met"] and one_row["classes"] == {"neg": 0, "pos": 1}
    assert one_row["reason"] == ("too few validation rows: 1 in all (neg 0, pos 1); calibration and tuned thresholds "
                                 f"need at least {cal.MIN_PER_CLASS} validation rows of every class and "
                                 f"{cal.MIN_ROWS} in all")
    one_class = cal.validation_floor(np.ones(500, dtype=int), LABELS)  # many rows, one class: declined all the same
    assert not one_class["met"] and "(neg 0, pos 500)" in one_class["reason"]
    short = cal.validation_floor(np.array([0] * 60 + [1] * (cal.MIN_PER_CLASS - 1)), LABELS)
    assert not short["met"] and f"pos {cal.MIN_PER_CLASS - 1}" in short["reason"]
    few = cal.validation_floor(np.array([0, 1] * (cal.MIN_ROWS // 2 - 1)), LABELS)  # every class, too few in all
    assert not few["met"]
    enough = cal.validation_floor(np.array([0] * (cal.MIN_ROWS - cal.MIN_PER_CLASS) + [1] * cal.MIN_PER_CLASS), LABELS)
    assert enough["met"] and enough["reason"].startswith(f"{cal.MIN_ROWS} validation rows (neg 30, pos 10)")
    assert not cal.validation_floor(np.zeros(0, dtype=int), LABELS)["met"]  # an empty split
    many = cal.validation_floor(np.arange(100) % 20, [f"c{i}" for i in range(20)])
    assert not many["met"] and "c7 5 and 12 more" in many["reason"]  # the counts, cut short, on one line


def test_multi_label_needs_rows_with_and_without_each_label():
    truth = np.zeros((60, 2), dtype=int)
    truth[:20, 0] = 1
    truth[:55, 1] = 1  # 5 rows without `pos`: no negatives to place its threshold against
    floor = cal.validation_floor(truth, ["neg", "pos"], multi=True)
    assert not floor["met"] and floor["without"] == {"neg": 40, "pos": 5}
    assert "(neg 20 of 60, pos 55 of 60)" in floor["reason"] and "without it" in floor["reason"]
    truth[:40, 1] = 0
    assert cal.validation_floor(truth, ["neg", "pos"], multi=True)["met"]


def overconfident(n_neg: int, n_pos: int, seed: int = 0):
    """Logits three times too sure of themselves (calibration helps them) and their labels."""
    rng = np.random.default_rng(seed)
    truth = np.array([0] * n_neg + [1] * n_pos)
    margin = np.where(truth == 1, 1.0, -1.0) + rng.normal(size=len(truth)) * 1.5
    return np.stack([-margin, margin], axis=1) * 3, truth


def assessed(logits, truth, predict: dict) -> RunResult:
    result = RunResult.from_dict({})
    task = task_of("single_label_classification")
    logits_by_split, truth_by_split = {"validation": logits}, {"validation": truth}
    quality.assess(task, LABELS, PredictSection(**predict), logits_by_split, truth_by_split, result, "f1_macro")
    return result


def test_one_class_validation_fits_neither_calibration_nor_thresholds():
    logits, truth = overconfident(0, 300)
    result = assessed(logits, truth, {"calibration": "auto", "tune_thresholds": True})
    recorded = result.calibration
    assert not recorded["applied"] and recorded["reason"] == recorded["floor"]["reason"]
    assert recorded["floor"]["classes"] == {"neg": 0, "pos": 300}
    assert recorded["thresholds"] == {"asked": True, "tuned": False, "reason": recorded["floor"]["reason"]}
    assert result.thresholds == {} and result.temperature is None and "cross_fitted" not in recorded


def test_above_the_floor_both_are_fitted_as_before():
    logits, truth = overconfident(150, 150)
    result = assessed(logits, truth, {"calibration": "temperature", "tune_thresholds": True})
    assert result.calibration["floor"]["met"] and result.calibration["applied"]
    assert result.calibration["thresholds"]["tuned"] and set(result.thresholds) == {"pos"}
    alone = assessed(logits, truth, {"tune_thresholds": True})  # thresholds alone: the floor is recorded too
    assert alone.thresholds and alone.calibration["floor"]["met"] and "asked" not in alone.calibration


def test_declined_line_says_what_for_whom():
    floor = cal.validation_floor(np.array([1]), LABELS)
    both = cal.declined_line(floor, "auto", True)
    assert both.startswith("predict.calibration (auto) and predict.tune_thresholds declined: too few validation rows")
    assert "the scores stay as the model gives them and rows are decided by argmax" in both
    assert "predict.threshold 0.5" in cal.declined_line(floor, None, True, multi=True)
    assert "argmax" not in cal.declined_line(floor, "vector", False)


def test_one_validation_row_through_the_cli(tiny_model, tmp_path):
    rng = random.Random(0)
    rows = [{"text": t, "label": label} for label in LABELS for t in make_texts(label, 40, rng)]
    rng.shuffle(rows)
    write_csv(tmp_path / "data" / "train.csv", rows)
    write_csv(tmp_path / "data" / "validation.csv", [{"text": "a lovely sunny day", "label": "pos"}])
    text = tiny_spec_text(tiny_model, extra="labels: [neg, pos]\npredict: {calibration: auto, tune_thresholds: true}\n")
    text = text.replace("  train: data/train.csv\n",
                        "  train: data/train.csv\n  validation_file: data/validation.csv\n")
    spec = write_spec(tmp_path, text)
    done = run_cli("run", str(spec), "--output", str(tmp_path / "run"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    declined = [line for line in done.stderr.splitlines() if "declined" in line]
    assert declined == [
        "warning: predict.calibration (auto) and predict.tune_thresholds declined: too few validation rows: 1 in all "
        f"(neg 0, pos 1); calibration and tuned thresholds need at least {cal.MIN_PER_CLASS} validation rows of every "
        f"class and {cal.MIN_ROWS} in all; the scores stay as the model gives them and rows are decided by argmax "
        "(add validation rows: data.validation_file or a larger data.validation_fraction)"
    ], done.stderr[-3000:]
    assert "thresholds (tuned" not in done.stdout and "calibration (auto)" not in done.stdout
    run_dir = tmp_path / "run"
    results = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["results"]
    recorded = results["calibration"]
    assert results["thresholds"] == {} and not recorded["applied"]
    assert recorded["floor"]["met"] is False and recorded["floor"]["classes"] == {"neg": 0, "pos": 1}
    assert recorded["thresholds"]["tuned"] is False
    config = json.loads((run_dir / "model" / "config.json").read_text(encoding="utf-8"))
    assert "runner_thresholds" not in config and "runner_temperature" not in config
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert f"`predict.tune_thresholds`: **not tuned**. {recorded['floor']['reason']}." in report
    assert f"`predict.calibration: auto`: **not applied**. {recorded['floor']['reason']}." in report
