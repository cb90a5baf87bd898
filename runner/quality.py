"""Calibrated scores and tuned decisions (predict.calibration, predict.tune_thresholds):
temperature scaling fitted on the validation logits, expected calibration error (ECE) with its
reliability bins, and decision thresholds chosen on validation to maximise F1.

Plain numpy in, plain values out; `assess` fills a RunResult. The temperature is fitted first and
the thresholds are tuned on the calibrated probabilities, which is what `runner predict` applies.
"""

from __future__ import annotations

import numpy as np

BINS = 15
GRID = np.round(np.arange(0.02, 0.99, 0.01), 2)  # candidate thresholds
T_RANGE = (0.05, 20.0)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def probabilities(logits, multi_label: bool, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    return 1.0 / (1.0 + np.exp(-z)) if multi_label else _softmax(z)


def log_loss(logits, truth, multi_label: bool, temperature: float = 1.0) -> float:
    """Mean negative log likelihood of the truth (per row; per label for multi-label)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    if multi_label:
        y = np.asarray(truth, dtype=np.float64)
        return float(np.mean(np.logaddexp(0.0, z) - y * z))  # BCE with logits, stable
    shifted = z - z.max(axis=-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return float(-np.mean(log_p[np.arange(len(z)), np.asarray(truth, dtype=np.int64)]))


def fit_temperature(logits, truth, multi_label: bool) -> float:
    """The temperature T in [0.05, 20] that minimises the log loss of logits / T (1-D, bounded, on log T)."""
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    if len(logits) == 0:
        return 1.0
    found = minimize_scalar(
        lambda log_t: log_loss(logits, truth, multi_label, float(np.exp(log_t))),
        bounds=tuple(np.log(T_RANGE)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    best = float(np.exp(found.x))
    if best < 2 * T_RANGE[0] or best > T_RANGE[1] / 2:  # at (or near) a bound: too few rows to learn from
        import sys

        print(f"warning: the temperature fitted on {len(logits)} validation row(s) is at its bound (T = {best:.3g}); "
              "with so few rows calibration is not reliable: add validation rows or drop predict.calibration",
              file=sys.stderr)
    # Never worse than leaving the scores alone (a flat loss surface can stop the search anywhere).
    if log_loss(logits, truth, multi_label, best) > log_loss(logits, truth, multi_label, 1.0):
        return 1.0
    return round(best, 4)


def _confidence_and_outcome(probs: np.ndarray, truth, multi_label: bool) -> tuple[np.ndarray, np.ndarray]:
    """Single-label: the top class's probability and whether it was right. Multi-label: every
    (row, label) probability and whether the label was present."""
    if multi_label:
        return probs.reshape(-1), np.asarray(truth, dtype=np.float64).reshape(-1)
    truth = np.asarray(truth, dtype=np.int64)
    return probs.max(axis=-1), (probs.argmax(axis=-1) == truth).astype(np.float64)


def reliability(probs: np.ndarray, truth, multi_label: bool, bins: int = BINS) -> list[dict]:
    """Equal-width confidence bins: mean confidence, observed accuracy (frequency), rows; empty bins left out."""
    confidence, outcome = _confidence_and_outcome(np.asarray(probs, dtype=np.float64), truth, multi_label)
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        inside = index == b
        if inside.any():
            out.append(
                {
                    "confidence": round(float(confidence[inside].mean()), 6),
                    "accuracy": round(float(outcome[inside].mean()), 6),
                    "rows": int(inside.sum()),
                }
            )
    return out


def expected_calibration_error(probs: np.ndarray, truth, multi_label: bool, bins: int = BINS) -> float:
    """ECE: the rows-weighted mean gap between confidence and accuracy over equal-width bins."""
    table = reliability(probs, truth, multi_label, bins)
    total = sum(b["rows"] for b in table)
    if not total:
        return 0.0
    return round(sum(b["rows"] * abs(b["confidence"] - b["accuracy"]) for b in table) / total, 6)


def _f1(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """F1 of each column of boolean predictions (rows x candidates) against one boolean truth column."""
    truth = truth[:, None]
    tp = (predicted & truth).sum(axis=0)
    fp = (predicted & ~truth).sum(axis=0)
    fn = (~predicted & truth).sum(axis=0)
    denominator = 2 * tp + fp + fn
    return np.divide(2 * tp, denominator, out=np.zeros(len(tp), dtype=np.float64), where=denominator > 0)


def _best(scores: np.ndarray) -> float:
    """The candidate with the best score; among ties, the one closest to 0.5."""
    ties = np.flatnonzero(scores >= scores.max() - 1e-12)
    return float(GRID[ties[np.argmin(np.abs(GRID[ties] - 0.5))]])


def tune_thresholds(probs: np.ndarray, truth, label_names: list[str], multi_label: bool) -> dict:
    """{label: threshold}. Multi-label: each label's threshold maximises that label's F1. Two classes:
    the second class's threshold maximises macro F1. A label never present keeps 0.5."""
    probs = np.asarray(probs, dtype=np.float64)
    if multi_label:
        truth = np.asarray(truth).astype(bool)
        out = {}
        for j, name in enumerate(label_names):
            out[name] = _best(_f1(probs[:, j : j + 1] >= GRID[None, :], truth[:, j])) if truth[:, j].any() else 0.5
        return out
    positive = np.asarray(truth, dtype=np.int64) == 1
    predicted = probs[:, 1:2] >= GRID[None, :]
    macro = (_f1(predicted, positive) + _f1(~predicted, ~positive)) / 2
    return {label_names[1]: _best(macro)}


def assess(task, label_names: list[str], predict: dict, logits_by_split: dict, truth_by_split: dict, result) -> None:
    """Fit the temperature and tune the thresholds on validation (as the spec asks), and add to each
    split's metrics the ECE before/after (`ece`, `ece_calibrated`) and the tuned twins of the
    threshold metrics (`<name>_tuned`). Fills result.temperature, thresholds and calibration."""
    if not task.has_labels or "validation" not in logits_by_split:
        return
    multi = task.multi_label
    calibrate = predict.get("calibration") == "temperature"
    tune = predict.get("tune_thresholds") and task.can_tune_thresholds(len(label_names))
    if not (calibrate or tune):
        return
    logits, truth = logits_by_split["validation"], truth_by_split["validation"]
    temperature = fit_temperature(logits, truth, multi) if calibrate else 1.0
    if calibrate:
        result.temperature = temperature
        result.calibration = {"method": "temperature", "temperature": temperature, "bins": BINS, "splits": {}}
    if tune:
        result.thresholds = tune_thresholds(probabilities(logits, multi, temperature), truth, label_names, multi)
    for split, split_logits in logits_by_split.items():
        split_truth = truth_by_split[split]
        metrics = result.metrics.setdefault(split, {})
        if calibrate:
            before, after = probabilities(split_logits, multi), probabilities(split_logits, multi, temperature)
            metrics["ece"] = expected_calibration_error(before, split_truth, multi)
            metrics["ece_calibrated"] = expected_calibration_error(after, split_truth, multi)
            result.calibration["splits"][split] = {
                "ece": metrics["ece"],
                "ece_calibrated": metrics["ece_calibrated"],
                "log_loss": round(log_loss(split_logits, split_truth, multi), 6),
                "log_loss_calibrated": round(log_loss(split_logits, split_truth, multi, temperature), 6),
                "reliability": reliability(before, split_truth, multi),
                "reliability_calibrated": reliability(after, split_truth, multi),
            }
        if tune:
            scaled = np.asarray(split_logits, dtype=np.float64) / temperature
            tuned = task.compute_metrics(scaled, split_truth, label_names, predict["threshold"], result.thresholds)
            for name, value in tuned.items():
                if f"{name}_tuned" in _TUNED:
                    metrics[f"{name}_tuned"] = value


def extra_metrics(task, logits, truth, label_names: list[str], threshold: float, thresholds, temperature) -> dict:
    """For `runner eval` on new data: ECE before/after the run's temperature, and the tuned-threshold twins."""
    out = {}
    if not task.has_labels:
        return out
    temperature = temperature or 1.0
    if temperature != 1.0:
        out["ece"] = expected_calibration_error(probabilities(logits, task.multi_label), truth, task.multi_label)
        out["ece_calibrated"] = expected_calibration_error(
            probabilities(logits, task.multi_label, temperature), truth, task.multi_label
        )
    if thresholds:
        scaled = np.asarray(logits, dtype=np.float64) / temperature
        tuned = task.compute_metrics(scaled, truth, label_names, threshold, thresholds)
        out.update({f"{name}_tuned": value for name, value in tuned.items() if f"{name}_tuned" in _TUNED})
    return out


def _tuned_names() -> frozenset:
    from runner.tasks import THRESHOLD_METRICS

    return frozenset(f"{name}_tuned" for name in THRESHOLD_METRICS)


_TUNED = _tuned_names()


def save_in_config(config, temperature: float | None, thresholds: dict | None) -> None:
    """Put the temperature and thresholds in the model's config (config.json), where `runner predict`,
    the model card's snippet and a pipeline() user find them."""
    if temperature:
        config.runner_temperature = float(temperature)
    if thresholds:
        config.runner_thresholds = {name: float(value) for name, value in thresholds.items()}


def from_model_or_record(model, record_results: dict | None) -> tuple[float, dict | None]:
    """(temperature, thresholds) for prediction: from the model's config, else from the run's record
    (a LoRA adapter's base config does not carry them)."""
    config = getattr(model, "config", None)
    temperature = getattr(config, "runner_temperature", None)
    thresholds = getattr(config, "runner_thresholds", None)
    results = record_results or {}
    if temperature is None:
        temperature = results.get("temperature")
    if thresholds is None:
        thresholds = results.get("thresholds") or None
    return float(temperature or 1.0), thresholds


def assess_run(spec, model_config, data, result, logits_by_split: dict, truth_by_split: dict) -> None:
    """A run's evaluation, continued: temperature and thresholds fitted on validation and saved in the
    model's config, said; then the error analysis of the predictions they give."""
    from runner import erroranalysis
    from runner.console import say
    from runner.tasks import task_of

    task, labels, predict = task_of(spec["task"]), data.labels, spec["predict"]
    assess(task, labels, predict, logits_by_split, truth_by_split, result)
    save_in_config(model_config, result.temperature, result.thresholds)
    if result.temperature:
        validation = result.metrics["validation"]
        say(
            f"calibration: temperature {result.temperature:.3f}; validation ECE "
            f"{validation['ece']:.4f} -> {validation['ece_calibrated']:.4f}"
        )
    if result.thresholds:
        say("thresholds (tuned on validation): " + ", ".join(f"{n} {t:.2f}" for n, t in result.thresholds.items()))
    result.error_analysis = erroranalysis.analyse(
        task, data.splits, logits_by_split, labels, predict["threshold"], result.thresholds, result.temperature
    )
