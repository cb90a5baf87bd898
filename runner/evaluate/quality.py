"""Calibrated scores and tuned decisions (predict.calibration, predict.tune_thresholds), and the one
decision rule every figure of a run uses.

Calibration (runner.evaluate.calibration) is chosen and checked on validation first; the thresholds are then
tuned on the probabilities the model outputs (calibrated when a calibration is applied), which is what
`runner predict` applies. With tuned thresholds (or a vector scaling, which can move the most probable
class) the run's metrics, per-class tables, confusion matrices and headline are those of that rule;
the argmax figures of the raw scores stay beside them as `<name>_argmax`.

Plain numpy in, plain values out; `assess` fills a RunResult.
"""

from __future__ import annotations

import numpy as np

from runner.evaluate import calibration as cal
from runner.evaluate.strategies import strategy_of
from runner.spec.sections import PredictSection
from runner.spec.tasks import Task

BINS = cal.BINS
GRID = np.round(np.arange(0.02, 0.99, 0.01), 2)  # candidate thresholds
T_RANGE = cal.T_RANGE


def probabilities(logits, multi_label: bool, temperature=1.0) -> np.ndarray:
    """Softmax/sigmoid of the logits rescaled by `temperature` (a number, or {scale, bias})."""
    return cal.probabilities(cal.scale_logits(logits, temperature), multi_label)


def log_loss(logits, truth, multi_label: bool, temperature=1.0) -> float:
    """Mean negative log likelihood of the truth (per row; per label for multi-label)."""
    return cal.log_loss(cal.scale_logits(logits, temperature), truth, multi_label)


def fit_temperature(logits, truth, multi_label: bool) -> float:
    """The temperature T in [0.05, 20] that minimises the log loss of logits / T (never worse than T = 1)."""
    return cal.fit_temperature(logits, truth, multi_label)


def reliability(probs: np.ndarray, truth, multi_label: bool, bins: int = BINS, decided=None) -> list[dict]:
    """Equal-width confidence bins: mean confidence, observed accuracy (frequency), rows; empty bins left out.
    Confidence is that of the decision (`decided`; argmax without it)."""
    confidence, outcome = cal.confidence_and_outcome(probs, truth, multi_label, decided)
    confidence, outcome = confidence.reshape(-1), outcome.reshape(-1)
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


def expected_calibration_error(probs: np.ndarray, truth, multi_label: bool, bins: int = BINS, decided=None) -> float:
    """ECE: the rows-weighted mean gap between confidence and accuracy over equal-width bins."""
    return cal.ece(probs, truth, multi_label, decided)


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


def assess(task, label_names: list[str], predict, logits_by_split: dict, truth_by_split: dict, result,
           metric: str = "", prior: dict | None = None) -> None:
    """Choose and check the calibration and tune the thresholds on validation (as the spec asks), with the ECE
    of the raw and calibrated scores in each split's metrics (`ece`, `ece_calibrated`); then, with `prior`
    (classprior.asked_mix: predict.class_prior), adjust the calibrated probabilities to that class mix
    (`ece_prior_adjusted`); then make the run's figures those of its decision rule."""
    fitted = _fit_on_validation(task, label_names, predict, logits_by_split, truth_by_split, result, metric)
    params = fitted[1] if fitted else None
    if prior and task.has_labels:
        from runner.evaluate import classprior

        params = classprior.apply(prior, params, task, label_names, logits_by_split, truth_by_split, result)
    if fitted or (prior and task.has_labels):
        apply_decision_rule(task, result, logits_by_split, truth_by_split, label_names, predict.threshold, params)
    _raw_ece(task, label_names, predict.threshold, logits_by_split, truth_by_split, result)


def _raw_ece(task, label_names: list[str], threshold: float, logits_by_split: dict, truth_by_split: dict,
             result) -> None:
    """Each labelled split's `ece` (the raw scores, on the decisions made from them) where neither calibration
    nor the class prior recorded it: with `calibration: none` the raw figure is still the one to compare with."""
    if not task.has_labels:
        return
    strategy = strategy_of(task)
    for split, logits in logits_by_split.items():
        metrics = result.metrics.setdefault(split, {})
        if "ece" in metrics or truth_by_split.get(split) is None:
            continue
        raw = probabilities(logits, task.multi_label)
        decided = strategy.decide(raw, label_names, threshold, result.thresholds or None)
        metrics["ece"] = cal.ece(raw, truth_by_split[split], task.multi_label, decided)


def _fit_on_validation(
    task, label_names: list[str], predict: PredictSection, logits_by_split: dict, truth_by_split: dict, result,
    metric: str = "",
) -> None:
    """Choose and check the calibration and tune the thresholds on validation (as the spec asks); add
    to each split's metrics the ECE of the raw and of the calibrated scores (`ece`, `ece_calibrated`,
    on the decisions made from each). Fills result.temperature, thresholds and calibration; returns (True, the
    calibration applied: a temperature, {scale, bias} or None), or None when neither is asked.

    Both obey one floor (calibration.validation_floor: enough validation rows of every class); below it neither
    is fitted, and result.calibration records the verdict (`floor`) and what became of the thresholds asked for
    (`thresholds`: {asked, tuned, reason})."""
    if not task.has_labels or "validation" not in logits_by_split:
        return
    multi, threshold, strategy = task.multi_label, predict.threshold, strategy_of(task)
    method = cal.asked(predict.calibration)
    tune = bool(predict.tune_thresholds) and task.can_tune_thresholds(len(label_names))
    if not (method or tune):
        return
    logits, truth = logits_by_split["validation"], truth_by_split["validation"]
    floor = cal.validation_floor(truth, label_names, multi)
    result.calibration = {"floor": floor}
    if tune:
        result.calibration["thresholds"] = {"asked": True, "tuned": floor["met"], "reason": floor["reason"]}
        tune = floor["met"]

    def tuned(probs):
        return tune_thresholds(probs, truth, label_names, multi) if tune else None

    params = None
    if method:
        from runner.spec.tasks import THRESHOLD_METRICS

        metric = metric if metric in THRESHOLD_METRICS else "f1_macro"  # the decisions' figure that must not drop

        from runner.evaluate import metrics as metric_functions

        def score(probs, decided):
            given = np.asarray(truth).astype(int)
            if multi:
                return metric_functions.multi_label_metrics(decided, given).get(metric, 0.0)
            return metric_functions.single_label_metrics(probs, given, len(label_names), decided).get(metric, 0.0)

        def decide(probs):
            return strategy.decide(probs, label_names, threshold, tuned(probs))

        choice = cal.choose(method, logits, truth, multi, decide, score=score, metric=metric, floor=floor)
        params = choice.pop("params") if choice["applied"] else None
        result.calibration = {**choice, "bins": BINS, "splits": {}, **result.calibration}
        if choice["applied"]:
            result.calibration["params"] = params
            if choice["method"] == "temperature":
                result.temperature = result.calibration["temperature"] = params
    raw_thresholds = tuned(probabilities(logits, multi))
    if tune:
        result.thresholds = tuned(probabilities(logits, multi, params))
    for split, split_logits in logits_by_split.items() if method else ():
        split_truth = truth_by_split[split]
        before, after = probabilities(split_logits, multi), probabilities(split_logits, multi, params)
        decided_before = strategy.decide(before, label_names, threshold, raw_thresholds)
        decided_after = strategy.decide(after, label_names, threshold, result.thresholds)
        metrics = result.metrics.setdefault(split, {})
        metrics["ece"] = cal.ece(before, split_truth, multi, decided_before)
        entry = {
            "ece": metrics["ece"],
            "ece_interval": cal.ece_interval(before, split_truth, multi, decided_before),
            "log_loss": round(log_loss(split_logits, split_truth, multi), 6),
            "reliability": reliability(before, split_truth, multi, decided=decided_before),
        }
        if params is not None:
            metrics["ece_calibrated"] = cal.ece(after, split_truth, multi, decided_after)
            entry.update(
                ece_calibrated=metrics["ece_calibrated"],
                ece_calibrated_interval=cal.ece_interval(after, split_truth, multi, decided_after),
                log_loss_calibrated=round(log_loss(split_logits, split_truth, multi, params), 6),
                reliability_calibrated=reliability(after, split_truth, multi, decided=decided_after),
            )
        result.calibration["splits"][split] = entry
    return True, params  # None when nothing was asked: then the decision rule is the argmax


def apply_decision_rule(
    task, result, logits_by_split: dict, truth_by_split: dict, label_names: list[str], threshold: float, params=None
) -> None:
    """When the run decides otherwise than the argmax of its raw scores (tuned thresholds, or a vector
    scaling), its threshold metrics, per-class tables, confusion matrices and headline become those of
    the rule it outputs; the raw argmax (multi-label: predict.threshold) figures stay as `<name>_argmax`.
    The rule's name goes into the headline (`rule`)."""
    from runner.evaluate import metrics as metric_functions
    from runner.spec.tasks import THRESHOLD_METRICS

    thresholds = result.thresholds or None
    strategy = strategy_of(task)
    rule = strategy.decision_rule(thresholds, params, threshold)
    headline = result.metrics.get("headline")
    if isinstance(headline, dict):
        headline["rule"] = rule
    if not (thresholds or isinstance(params, dict)):
        return
    for split, logits in logits_by_split.items():
        truth, scaled = truth_by_split[split], cal.scale_logits(logits, params)
        metrics = result.metrics.setdefault(split, {})
        chosen = strategy.compute_metrics(scaled, truth, label_names, threshold, thresholds)
        for name in THRESHOLD_METRICS:
            if name in metrics and name in chosen:
                metrics[f"{name}_argmax"], metrics[name] = metrics[name], chosen[name]
        decided = strategy.decide(strategy.probabilities(scaled), label_names, threshold, thresholds)
        result.per_class[split] = metric_functions.per_class_report(
            decided, np.asarray(truth).astype(int), label_names, task.multi_label
        )
        if task.one_label_per_row:
            result.confusion_matrix[split] = metric_functions.confusion(np.eye(len(label_names))[decided], truth,
                                                                        len(label_names))
    if isinstance(headline, dict) and headline.get("name") in THRESHOLD_METRICS:
        values = result.metrics.get(headline.get("split", "validation"), {})
        headline["value"] = values.get(headline["name"], headline.get("value"))
        headline["argmax_value"] = values.get(f"{headline['name']}_argmax")


def extra_metrics(task, logits, truth, label_names: list[str], threshold: float, thresholds, temperature) -> dict:
    """For `runner eval` on new data, on the run's decision rule: ECE before/after its calibration, and,
    when it decides otherwise than the raw argmax, the rule's threshold metrics (`<name>`) with the
    argmax ones beside them (`<name>_argmax`)."""
    from runner.spec.tasks import THRESHOLD_METRICS

    out = {}
    if not task.has_labels:
        return out
    multi, strategy = task.multi_label, strategy_of(task)
    calibrated = isinstance(temperature, dict) or (temperature or 1.0) != 1.0
    raw = probabilities(logits, multi)  # the raw ECE always, as the run records it (its decisions if uncalibrated)
    out["ece"] = expected_calibration_error(raw, truth, multi, decided=None if calibrated else strategy.decide(
        raw, label_names, threshold, thresholds))
    if calibrated:
        after = probabilities(logits, multi, temperature)
        prior = isinstance(temperature, dict) and temperature.get("class_prior")  # calibration and class prior in one
        out["ece_prior_adjusted" if prior else "ece_calibrated"] = expected_calibration_error(
            after, truth, multi, decided=strategy.decide(after, label_names, threshold, thresholds)
        )
    if thresholds or isinstance(temperature, dict):
        raw = strategy.compute_metrics(logits, truth, label_names, threshold)
        scaled = cal.scale_logits(logits, temperature)
        chosen = strategy.compute_metrics(scaled, truth, label_names, threshold, thresholds)
        for name in THRESHOLD_METRICS:
            if name in chosen:
                out[name], out[f"{name}_argmax"] = chosen[name], raw[name]
    return out


def save_in_config(config, temperature, thresholds: dict | None, vector: dict | None = None) -> None:
    """Put the calibration and thresholds in the model's config (config.json), where `runner predict`,
    the model card's snippet and a pipeline() user find them: `runner_temperature`, or
    `runner_calibration` ({method: vector, scale, bias}), and `runner_thresholds`. With predict.class_prior,
    `runner_calibration` holds the calibration and the adjustment in one ({method: class_prior, calibration,
    scale, bias, class_prior, training_prior}; runner.evaluate.classprior.fold), and no `runner_temperature`
    beside it, which a reader could apply twice."""
    prior = bool(vector and vector.get("class_prior"))
    if temperature and not prior:
        config.runner_temperature = float(temperature)
    if vector:
        config.runner_calibration = {**(vector if prior else {}), "method": vector.get("method", "vector"),
                                     "scale": list(vector["scale"]), "bias": list(vector["bias"])}
    if thresholds:
        config.runner_thresholds = {name: float(value) for name, value in thresholds.items()}


def from_model_or_record(model, record_results: dict | None) -> tuple:
    """(calibration, thresholds) for prediction: calibration is a temperature (1.0: none) or {scale,
    bias} (vector scaling); from the model's config, else from the run's record (a LoRA adapter's
    base config does not carry them)."""
    config = getattr(model, "config", None)
    vector = getattr(config, "runner_calibration", None)
    temperature = getattr(config, "runner_temperature", None)
    thresholds = getattr(config, "runner_thresholds", None)
    results = record_results or {}
    if vector is None and temperature is None:
        recorded = results.get("calibration") or {}
        prior = recorded.get("class_prior") or {}
        if prior.get("applied"):  # the calibration and the class prior in one (classprior.fold)
            vector = prior.get("params")
        elif recorded.get("applied") and recorded.get("method") == "vector":
            vector = recorded.get("params")
    if isinstance(vector, dict) and "scale" in vector and "bias" in vector:
        temperature = {key: value for key, value in vector.items() if key != "method"}
    elif temperature is None:
        temperature = results.get("temperature")
    if thresholds is None:
        thresholds = results.get("thresholds") or None
    return (temperature if isinstance(temperature, dict) else float(temperature or 1.0)), thresholds


def output_calibration(result):
    """What the run's predictions apply to the logits: a temperature, {scale, bias}, or None; with
    predict.class_prior, the calibration and the adjustment in one {scale, bias} (classprior.fold)."""
    calibration = result.calibration or {}
    prior = calibration.get("class_prior") or {}
    if prior.get("applied"):
        return prior.get("params")
    if calibration.get("applied") and calibration.get("method") == "vector":
        return calibration.get("params")
    return result.temperature


def assess_run(predict: PredictSection, task: Task, metric: str, model_config, data, result, logits_by_split: dict,
               truth_by_split: dict) -> None:
    """A run's evaluation, continued: calibration and thresholds fitted on validation and saved in the
    model's config, said; the decision rule applied to the figures (`metric`: train.metric_for_best_model);
    then the error analysis of the predictions they give."""
    from runner.console import say, warn
    from runner.evaluate import classprior, erroranalysis

    labels = data.labels
    assess(task, labels, predict, logits_by_split, truth_by_split, result, metric,
           classprior.asked_mix(predict, task, data))
    applied = output_calibration(result)
    save_in_config(model_config, result.temperature, result.thresholds, applied if isinstance(applied, dict) else None)
    recorded = result.calibration or {}
    floor = recorded.get("floor") or {"met": True}
    if not floor["met"]:  # one line for all that the floor declined
        warn(cal.declined_line(floor, recorded.get("asked"), "thresholds" in recorded, task.multi_label,
                               predict.threshold))
    elif recorded.get("asked"):
        say(f"calibration ({recorded['asked']}): {recorded['reason']}")
    classprior.tell(result)
    if result.thresholds:
        say("thresholds (tuned on validation): " + ", ".join(f"{n} {t:.2f}" for n, t in result.thresholds.items()))
    headline = result.headline
    if headline.get("argmax_value") is not None:
        say(f"{headline['name']} uses the {headline['rule']}; argmax gives {headline['argmax_value']:.4f}")
    result.error_analysis = erroranalysis.analyse(
        task, data.splits, logits_by_split, labels, predict.threshold, result.thresholds, applied
    )
