"""Prior adjustment to a stated class mix (`predict.class_prior`, issue #34): the arithmetic after calibration, the
spec's refusals (exit 2 at the key's line), and a run through the real CLI on a training file with 3% positives
and a test file with 30%: the shift is warned and explained, the test ECE of the adjusted probabilities is not
worse than the raw scores', and `runner predict` applies the recorded numbers (not the word `from_test`)."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import FILLER, WORDS, run_cli, tiny_spec_text, write_csv, write_spec

from runner.cli import main
from runner.evaluate import calibration as cal
from runner.evaluate import classprior

# ---------------------------------------------------------------------------------------------
# The arithmetic


def test_the_adjustment_follows_the_calibration_and_is_bayes_rule():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 3)) * 2
    target, training = {"a": 0.5, "b": 0.3, "c": 0.2}, {"a": 0.1, "b": 0.6, "c": 0.3}
    ratio = np.array([target[n] / training[n] for n in "abc"])
    vector = {"scale": [0.5, 1.5, 1.0], "bias": [0.2, -0.1, 0.0]}
    for calibration in (None, 2.5, vector):
        folded = classprior.fold(calibration, target, training, list("abc"))
        calibrated = cal.probabilities(cal.scale_logits(logits, calibration), False)  # calibration first
        expected = calibrated * ratio / (calibrated * ratio).sum(axis=1, keepdims=True)
        assert cal.probabilities(cal.scale_logits(logits, folded), False) == pytest.approx(expected, abs=1e-12)
        assert folded["class_prior"] == target and folded["training_prior"] == training
    assert classprior.fold(2.5, target, training, list("abc"))["calibration"] == "temperature"


def test_on_a_shifted_mix_the_adjusted_scores_are_calibrated_and_the_raw_ones_are_not():
    """Scores calibrated for 3% positives, on rows with 30%: the raw ECE is large, the adjusted one small."""
    rng = np.random.default_rng(1)
    evidence = rng.normal(size=20000)  # a log likelihood ratio per row
    positive = rng.random(20000) < 0.3
    evidence[positive] += 1.0
    evidence[~positive] -= 1.0  # under equal priors: p(pos | x) = sigmoid(2 * evidence)
    logits = np.stack([np.zeros_like(evidence), 2 * evidence + np.log(0.03 / 0.97)], axis=1)  # training's mix
    truth = positive.astype(int)
    folded = classprior.fold(None, {"neg": 0.7, "pos": 0.3}, {"neg": 0.97, "pos": 0.03}, ["neg", "pos"])
    raw = cal.ece(cal.probabilities(logits, False), truth, False)
    adjusted = cal.ece(cal.probabilities(cal.scale_logits(logits, folded), False), truth, False)
    assert raw > 0.1 and adjusted < 0.02, (raw, adjusted)


# ---------------------------------------------------------------------------------------------
# What the spec refuses (runner validate: no training)


def validate(tmp_path, predict: str, extra: str = "", test_file: bool = True, model=None):
    write_csv(tmp_path / "data" / "train.csv", [{"text": "a b", "label": "pos"}, {"text": "c d", "label": "neg"}])
    write_csv(tmp_path / "data" / "test.csv", [{"text": "a b", "label": "pos"}, {"text": "c d", "label": "neg"}])
    text = tiny_spec_text(model or tmp_path, extra=f"{extra}predict:\n{predict}")
    if test_file:
        text = text.replace("  train: data/train.csv\n", "  train: data/train.csv\n  test_file: data/test.csv\n")
    spec = write_spec(tmp_path, text)
    return CliRunner().invoke(main, ["validate", str(spec)]), spec.read_text().splitlines()


def place(lines: list[str], key: str) -> str:
    """`spec.yaml:LINE:COLUMN` of the first line that starts with `key:` (after indentation)."""
    for number, line in enumerate(lines, 1):
        if line.strip().startswith(f"{key}:"):
            return f"spec.yaml:{number}:"
    raise AssertionError(key)


@pytest.mark.parametrize(
    ("predict", "extra", "message"),
    [
        ("  class_prior: {pos: 0.3, neg: 0.6}\n", "", "the shares in predict.class_prior sum to 0.9, not 1"),
        ("  class_prior: {pos: 0.3, neg: 0.7, neu: 0.0}\n", "labels: [pos, neg]\n", "is out of range: must be > 0"),
        ("  class_prior: {pos: 0.3, bad: 0.7}\n", "labels: [pos, neg]\n", "'bad' is not one of the labels"),
        ("  class_prior: {pos: 0.3, neu: 0.7}\n", "labels: [pos, neg, neu]\n", "leaves out 'neg'"),
        ("  class_prior: from_tset\n", "", "is not a valid value here"),
        ("  class_prior: from_test\n  tune_thresholds: true\n", "",
         "predict.tune_thresholds and predict.class_prior both set the decisions"),
        ("  class_prior: from_test\n", "task: multi_label_classification\n",
         "predict.class_prior is for single-label classification, not multi-label text classification"),
        ("  class_prior: from_test\n", "task: regression\n", "is for single-label classification, not text regression"),
    ],
)
def test_the_spec_refuses_a_mix_it_cannot_apply(tmp_path, predict, extra, message):
    result, lines = validate(tmp_path, predict, extra)
    assert result.exit_code == 2 and message in result.output, result.output
    key = "tune_thresholds" if "tune_thresholds" in message else "class_prior"
    assert re.search(rf"error: \S*{place(lines, key)}\d+ predict\.{key}", result.output), result.output
    assert "Traceback" not in result.output


def test_from_test_needs_a_test_split_and_a_stated_mix_passes(tiny_model, tmp_path):
    result, lines = validate(tmp_path, "  class_prior: from_test\n", test_file=False)
    assert result.exit_code == 2 and "predict.class_prior is from_test, but the spec has no test split" in result.output
    assert place(lines, "class_prior") in result.output and "data.test_file" in result.output
    for mix in ("{pos: 0.3, neg: 0.7}", "{pos: 0.1, neg: 0.2, neu: 0.7}", "from_test"):
        extra = "labels: [pos, neg, neu]\n" if "neu" in mix else ""
        result, _ = validate(tmp_path, f"  class_prior: {mix}\n", extra, model=tiny_model)
        assert result.exit_code == 0, result.output


def test_labels_found_in_the_data_are_checked_before_training(tiny_model, tmp_path):
    """Without `labels:` the classes come from the data: a class the mix names that the data lacks, and a class
    `from_test` would give a share of 0, are spec errors (exit 2) found before any training."""
    rng = random.Random(0)
    write_csv(tmp_path / "data" / "train.csv", shifted_rows(30, 30, rng))
    write_csv(tmp_path / "data" / "test.csv", shifted_rows(0, 20, rng))  # no positive row
    base = tiny_spec_text(tiny_model).replace("  train: data/train.csv\n",
                                              "  train: data/train.csv\n  test_file: data/test.csv\n")
    for mix, message in (("{pos: 0.3, other: 0.7}", "'other' is not one of the labels"),
                         ("from_test", "the test split has no row of 'pos': a share of 0 would never predict it")):
        spec = write_spec(tmp_path, base + f"predict:\n  class_prior: {mix}\n")
        result = CliRunner().invoke(main, ["run", str(spec)])
        assert result.exit_code == 2 and message in result.output, result.output
        assert "spec.yaml:" in result.output and "predict.class_prior" in result.output
        assert "train:" not in result.output and not (tmp_path / "run" / "model").exists()  # nothing trained


# ---------------------------------------------------------------------------------------------
# Through the real CLI: 3% positives in training, 30% in test


def shifted_rows(positives: int, negatives: int, rng: random.Random) -> list[dict]:
    """Half the rows carry one word of their class among filler words, half only filler: on those the best a
    model can say is training's share, which on a split with another mix is miscalibrated (what the adjustment
    corrects), whatever it learns of the words."""
    out = []
    for label, count in (("pos", positives), ("neg", negatives)):
        for index in range(count):
            words = rng.sample(FILLER, 5) + (rng.sample(WORDS[label], 1) if index % 2 else [])
            rng.shuffle(words)
            out.append({"text": " ".join(words), "label": label})
    rng.shuffle(out)
    return out


@pytest.mark.timing
def test_a_test_mix_of_30_percent_is_warned_and_the_adjusted_test_ece_is_not_worse(tiny_model, tmp_path):
    rng = random.Random(3)
    write_csv(tmp_path / "data" / "train.csv", shifted_rows(18, 582, rng))  # 3% positive
    write_csv(tmp_path / "data" / "test.csv", shifted_rows(45, 105, rng))  # 30% positive
    text = tiny_spec_text(tiny_model, extra="labels: [pos, neg]\npredict:\n  calibration: temperature\n"
                                            "  class_prior: from_test\n")
    text = text.replace("  train: data/train.csv\n", "  train: data/train.csv\n  test_file: data/test.csv\n")
    text = text.replace("epochs: 1", "epochs: 2\n  precision: fp32").replace("batch_size: 8", "batch_size: 16")
    spec = write_spec(tmp_path, text)  # fp32: the run's evaluation and `runner predict` give the same scores
    result = run_cli("run", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"

    [warned] = [line for line in result.stderr.splitlines() if "class mix of test" in line]  # both proportions
    assert re.search(r"pos [23]\.\d% in training, 30\.0% in test", warned), warned
    assert "class prior (from_test: the test split's mix)" in result.stdout + result.stderr
    report = (run / "report.md").read_text(encoding="utf-8")
    assert re.search(r"\| pos \| [23]\.\d% \| 30\.0% \|", report) and "`predict.class_prior` adjusts" in report
    assert "`predict.class_prior`: **applied**" in report and "ECE prior-adjusted" in report

    metrics = json.loads((run / "metrics.json").read_text())
    test = metrics["test"]
    # the done-when: with the prior set to the test mix, the test ECE is not worse than without calibration
    assert test["ece_prior_adjusted"] <= test["ece"], test
    assert "adjusted to the class mix pos 30.0%, neg 70.0%" in metrics["headline"]["rule"]
    recorded = json.loads((run / "run.json").read_text())["results"]["calibration"]["class_prior"]
    assert recorded["asked"] == "from_test" and recorded["target"] == {"pos": 0.3, "neg": 0.7}  # numbers, recorded
    assert recorded["training"]["pos"] == pytest.approx(0.03, abs=0.005)
    saved = json.loads((run / "model" / "config.json").read_text())["runner_calibration"]
    assert saved["class_prior"] == {"pos": 0.3, "neg": 0.7} and saved["method"] == "class_prior"
    assert "runner_temperature" not in json.loads((run / "model" / "config.json").read_text())

    # `runner predict` applies the recorded numbers: the same probabilities as the run's own test predictions,
    # also once the test file (which `from_test` named) is gone
    (tmp_path / "data" / "test.csv").rename(tmp_path / "elsewhere.csv")
    out = tmp_path / "predicted.jsonl"
    predicted = CliRunner().invoke(main, ["predict", str(run), "--input", str(tmp_path / "elsewhere.csv"),
                                          "--output", str(out)])
    assert predicted.exit_code == 0, predicted.output[-2000:]
    ours = [json.loads(line) for line in out.read_text().splitlines()]
    recorded_rows = [json.loads(line) for line in (run / "predictions" / "test.jsonl").read_text().splitlines()]
    by_text = {row["text"]: row for row in recorded_rows}
    for row in ours:
        assert row["label"] == by_text[row["text"]]["label"]
        for name, p in row["probabilities"].items():
            assert p == pytest.approx(by_text[row["text"]]["probabilities"][name], abs=1e-5)
    # `runner eval` on the same rows names the step: the adjusted ECE, as the run measured it
    evaluated = CliRunner().invoke(main, ["eval", str(run), "--data", str(tmp_path / "elsewhere.csv")])
    assert evaluated.exit_code == 0, evaluated.output[-2000:]
    figures = json.loads(evaluated.stdout[evaluated.stdout.index("{"):])
    assert figures["ece_prior_adjusted"] == pytest.approx(test["ece_prior_adjusted"], abs=1e-4)
    # the model card's snippet applies the same numbers
    card = (run / "model" / "README.md").read_text()
    assert "the adjustment to the class mix pos 30.0%, neg 70.0%" in card
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0].replace("path/to/this/folder", str(run / "model"))
    for row in ours[:3]:
        scope: dict = {}
        exec(snippet.replace("the service was quick and friendly", row["text"]), scope)  # noqa: S102
        assert scope["label"] == row["label"]
        for name, p in scope["scores"].items():
            assert p == pytest.approx(row["probabilities"][name], abs=1e-5)
