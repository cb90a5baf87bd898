"""Calibration that never hurts silently. Units with known answers (a prior shift that only
vector scaling undoes, an over-confident model, a calibrated one that nothing should touch, too few
rows), then tiny-model runs through the real CLI: vector scaling applied by `runner predict` and by
the model card's snippet, and a run where calibration would not help, reported as not applied."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import make_texts, tiny_spec_text, write_csv, write_spec

from runner.cli import main
from runner.evaluate import calibration as cal


def sampled(n: int, seed: int = 0, classes: int = 3):
    """Logits and labels drawn from their softmax: perfectly calibrated scores."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, classes)) * 2
    probs = cal.probabilities(logits, False)
    truth = np.array([rng.choice(classes, p=p) for p in probs])
    return logits, truth


def test_vector_scaling_undoes_a_prior_shift_that_temperature_cannot():
    logits, truth = sampled(900)
    shifted = logits + np.array([0.0, 0.0, 1.5])  # what class weights do to the minority's score
    choice = cal.choose("auto", shifted, truth, False)
    assert choice["applied"] and choice["method"] == "vector", choice
    assert choice["cross_fitted"]["vector"]["ece"] < choice["cross_fitted"]["temperature"]["ece"] + 0.05
    assert choice["cross_fitted"]["vector"]["log_loss"] < choice["cross_fitted"]["temperature"]["log_loss"] - 0.05
    assert choice["params"]["bias"][2] - np.mean(choice["params"]["bias"][:2]) == pytest.approx(-1.5, abs=0.4)
    after = cal.probabilities(cal.scale_logits(shifted, choice["params"]), False)
    assert cal.ece(after, truth, False) < cal.ece(cal.probabilities(shifted, False), truth, False) / 2


def test_auto_keeps_temperature_for_an_overconfident_model():
    logits, truth = sampled(900, seed=1)
    choice = cal.choose("auto", 3 * logits, truth, False)
    assert choice["applied"] and choice["method"] == "temperature"
    assert choice["params"] == pytest.approx(3.0, rel=0.15)


def test_a_calibrated_model_is_never_made_worse_and_a_refusal_shows_its_figures():
    refused = 0
    for seed in range(5):
        logits, truth = sampled(600, seed=seed)
        for method in ("auto", "temperature", "vector"):
            choice = cal.choose(method, logits, truth, False)
            raw = choice["raw"]
            if choice["applied"]:  # it helped on held-out rows and does not raise validation ECE
                assert choice["cross_fitted"][choice["method"]]["log_loss"] < raw["log_loss"]
                assert choice["fitted"]["ece"] <= raw["ece"]
            else:
                refused += 1
                assert choice["params"] is None and choice["reason"].startswith("not applied")
                assert f"ECE {raw['ece']:.4f}" in choice["reason"]
    assert refused >= 5  # scores that are calibrated already are mostly left alone (measured: 11 of 15)


def test_too_few_validation_rows_fit_nothing():
    logits, truth = sampled(cal.MIN_ROWS - 1)
    choice = cal.choose("temperature", 5 * logits, truth, False)
    assert not choice["applied"] and "too few" in choice["reason"] and "cross_fitted" not in choice


def test_multi_label_vector_scaling_is_platt_per_label():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(800, 2)) * 2
    truth = (rng.random((800, 2)) < cal.probabilities(logits, True)).astype(int)
    choice = cal.choose("vector", logits * 0.3 - 1.0, truth, True)  # under-confident and shifted
    assert choice["applied"] and choice["method"] == "vector"
    assert choice["params"]["scale"] == pytest.approx([1 / 0.3] * 2, rel=0.25)


def test_ece_is_measured_on_the_decisions_made():
    probs = np.array([[0.6, 0.4]] * 10)
    truth = np.array([1] * 6 + [0] * 4)
    argmax = cal.ece(probs, truth, False)  # says class 0 at 0.6, right 40% of the time
    tuned = cal.ece(probs, truth, False, decided=np.ones(10, dtype=int))  # says class 1 at 0.4, right 60%
    assert argmax == pytest.approx(0.2) and tuned == pytest.approx(0.2)
    assert cal.ece(probs, np.zeros(10, dtype=int), False, decided=np.ones(10, dtype=int)) == pytest.approx(0.4)
    logits, truth = sampled(300, seed=4)
    probs = cal.probabilities(logits, False)
    low, high = cal.ece_interval(probs, truth, False)
    assert 0 <= low <= cal.ece(probs, truth, False) <= high
    assert cal.ece_interval(np.full((cal.SMALL, 2), 0.5), np.zeros(cal.SMALL, dtype=int), False) is None


# ---------------------------------------------------------------------------------------------
# Tiny models through the real CLI


def three_classes(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for label, share in (("pos", 0.5), ("neg", 0.3), ("neu", 0.2)):
        rows += [{"text": t, "label": label} for t in make_texts(label, int(n * share), rng)]
    for row in rows:  # some noise, so that the scores are not all near 0 and 1
        if rng.random() < 0.15:
            row["label"] = rng.choice(["pos", "neg", "neu"])
    rng.shuffle(rows)
    return rows


def run(folder, tiny_model, predict: str, name: str = "run", rows: int = 300, weights: str = ""):
    write_csv(folder / "data" / "train.csv", three_classes(rows, 0))
    text = tiny_spec_text(tiny_model, extra=f"labels: [pos, neg, neu]\npredict: {predict}\n")
    if weights:
        text = text.replace("  batch_size: 8\n", f"  batch_size: 8\n  class_weights: {weights}\n")
    text = text.replace("  train: data/train.csv\n", "  train: data/train.csv\n  validation_fraction: 0.3\n")
    spec = write_spec(folder, text.replace("epochs: 1", "epochs: 3"))
    result = CliRunner().invoke(main, ["run", str(spec), "--output", str(folder / name)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return folder / name, result.output


def test_vector_scaling_travels_to_predict_and_the_card(tiny_model, tmp_path):
    # Weights that favour one class by far shift every score towards it: a per-class bias, what vector
    # scaling corrects (temperature alone cannot), so it is applied whatever the tiny model's figures.
    run_dir, output = run(tmp_path, tiny_model, "{calibration: vector}", weights="{pos: 1.0, neg: 1.0, neu: 12.0}")
    results = json.loads((run_dir / "run.json").read_text())["results"]
    recorded = results["calibration"]
    assert recorded["asked"] == "vector" and recorded["rows"] == 90 and "cross_fitted" in recorded
    assert f"calibration (vector): {recorded['reason']}" in output
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert recorded["applied"], recorded["reason"]
    assert metrics["validation"]["ece_calibrated"] <= metrics["validation"]["ece"]
    config = json.loads((run_dir / "model" / "config.json").read_text())
    assert config["runner_calibration"]["scale"] == recorded["params"]["scale"]
    texts = ["really lovely happy day", "quite sad grim today", "the chair by the window"]
    printed = CliRunner().invoke(main, ["predict", str(run_dir), *texts]).stdout
    predicted = [json.loads(line) for line in printed.splitlines() if line.startswith("{")]
    card = (run_dir / "model" / "README.md").read_text()
    assert "runner_calibration" in card and "Vector scaling" in (run_dir / "report.md").read_text()
    snippet = card.split("```python\n", 1)[1].split("```", 1)[0].replace("path/to/this/folder", str(run_dir / "model"))
    for row, text in zip(predicted, texts):
        scope: dict = {}
        exec(snippet.replace("the service was quick and friendly", text), scope)  # noqa: S102
        assert scope["label"] == row["label"]
        for name, p in scope["scores"].items():
            assert p == pytest.approx(row["probabilities"][name], abs=1e-5)


def test_too_few_validation_rows_are_reported_as_not_applied(tiny_model, tmp_path):
    run_dir, output = run(tmp_path, tiny_model, "{calibration: auto}", rows=100)
    results = json.loads((run_dir / "run.json").read_text())["results"]
    validation = json.loads((run_dir / "metrics.json").read_text())["validation"]
    recorded = results["calibration"]
    assert recorded["rows"] == 30 and not recorded["applied"]
    assert "too few validation rows: 30 in all" in recorded["reason"]  # the floor (calibration.validation_floor)
    report = (run_dir / "report.md").read_text()
    assert "`predict.calibration: auto`: **not applied**" in report and recorded["reason"] in report
    assert "ece_calibrated" not in validation and results["temperature"] is None
    assert "runner_temperature" not in json.loads((run_dir / "model" / "config.json").read_text())
    low, high = recorded["splits"]["validation"]["ece_interval"]  # 30 rows: the ECE with its interval
    assert low <= validation["ece"] <= high
    assert "too few" in output


@pytest.mark.parametrize(("value", "ok"), [("none", True), ("auto", False), ("vector", False)])
def test_regression_takes_none_and_refuses_a_method(tmp_path, value, ok):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("text,label\na,1\nb,2\n")
    extra = f"task: regression\npredict: {{calibration: {value}}}\n"
    result = CliRunner().invoke(main, ["validate", str(write_spec(tmp_path, tiny_spec_text(tmp_path, extra=extra)))])
    refused = result.exit_code == 2 and "predict.calibration is for classification" in result.output
    assert refused != ok, result.output
