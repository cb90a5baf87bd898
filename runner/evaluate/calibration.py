"""Calibration that never hurts silently (`predict.calibration: auto | temperature | vector | none`).

Two ways to rescale a model's logits, fitted on the validation split by log loss:
- temperature scaling: logits / T (one number; never changes the most probable class);
- vector scaling: logits * w + b, one scale and one bias per class (per label for multi-label;
  Platt scaling per label). The bias can undo the prior shift that class weights put into the
  scores, which one temperature cannot.

A method is applied only when it helps on rows it was not fitted on: the validation split is cut
into two seeded folds, each method is fitted on one and scored on the other (cross-fitting), and a
method whose cross-fitted log loss is not lower, whose cross-fitted ECE is higher, or whose
decisions score lower on the run's metric (vector scaling can move the most probable class back
from a minority that class weights favour) than the raw scores' is not applied. `auto` tries both
and keeps the best that helps, preferring temperature (which keeps the most probable class) unless
vector scaling's held-out log loss is lower by more than PREFER_SIMPLER of the raw one; an explicit
method is checked the same way. The method kept is then fitted on every validation row and applied
only if it does not raise that split's ECE (nor lower its metric) either. Every figure goes into
run.json's `calibration` and the report, applied or not.

Calibration and tuned thresholds obey one floor (`validation_floor`): at least MIN_PER_CLASS validation
rows of every class and MIN_ROWS in all, or neither is fitted, and run.json's `calibration.floor` and the
report say why, with the class counts.

ECE is measured on the decisions the model outputs (`decisions`: the tuned thresholds when they are
tuned): a row's confidence is the probability of the class it is given, its outcome whether that
class is right. With fewer than SMALL rows it comes with a bootstrap 95% interval.
"""

from __future__ import annotations

import numpy as np

BINS = 15
MIN_ROWS = 40  # fewer validation rows in all: nothing is fitted on them (validation_floor)
MIN_PER_CLASS = 10  # fewer validation rows of any class (multi-label: with or without any label): nothing either
SHOWN_CLASSES = 8  # a floor's message names at most this many classes' counts
SMALL = 2000  # fewer rows: ECE with a bootstrap interval
RESAMPLES = 400
FOLDS = 2
T_RANGE = (0.05, 20.0)
METHODS = ("temperature", "vector")
PREFER_SIMPLER = 0.01  # auto keeps temperature unless vector's held-out log loss is lower by 1% of the raw one


def asked(value) -> str | None:
    """The spec's predict.calibration as a method name; None for none/null/false."""
    if value in (None, False, "none"):
        return None
    return str(value)


def scale_logits(logits, calibration=None) -> np.ndarray:
    """Logits rescaled: `calibration` is a temperature (a number), {scale, bias} (vector scaling) or None."""
    z = np.asarray(logits, dtype=np.float64)
    if isinstance(calibration, dict):
        return z * np.asarray(calibration["scale"], dtype=np.float64) + np.asarray(calibration["bias"], np.float64)
    if calibration in (None, 0) or float(calibration) == 1.0:
        return z
    return z / float(calibration)


def probabilities(z: np.ndarray, multi: bool) -> np.ndarray:
    if multi:
        return 1.0 / (1.0 + np.exp(-z))
    shifted = z - z.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def _targets(truth, shape, multi: bool) -> np.ndarray:
    if multi:
        return np.asarray(truth, dtype=np.float64).reshape(shape)
    y = np.zeros(shape)
    y[np.arange(shape[0]), np.asarray(truth, dtype=np.int64)] = 1.0
    return y


def log_loss(z: np.ndarray, truth, multi: bool) -> float:
    """Mean negative log likelihood per row (per label for multi-label)."""
    z = np.asarray(z, dtype=np.float64)
    if multi:
        y = np.asarray(truth, dtype=np.float64)
        return float(np.mean(np.logaddexp(0.0, z) - y * z))
    shifted = z - z.max(axis=-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return float(-np.mean(log_p[np.arange(len(z)), np.asarray(truth, dtype=np.int64)]))


def fit_temperature(z, truth, multi: bool) -> float:
    from scipy.optimize import minimize_scalar

    z = np.asarray(z, dtype=np.float64)
    if not len(z):
        return 1.0
    found = minimize_scalar(
        lambda log_t: log_loss(z / np.exp(log_t), truth, multi),
        bounds=tuple(np.log(T_RANGE)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    best = float(np.exp(found.x))
    if best < 2 * T_RANGE[0] or best > T_RANGE[1] / 2:  # at (or near) a bound: too few rows to learn from
        from runner.console import warn

        warn(
            f"the temperature fitted on {len(z)} validation row(s) is at its bound (T = {best:.3g}); with so few "
            "rows calibration is not reliable: add validation rows or set predict.calibration: none"
        )
    return 1.0 if log_loss(z / best, truth, multi) > log_loss(z, truth, multi) else round(best, 4)


def fit_vector(z, truth, multi: bool) -> dict:
    """{scale, bias} per class minimising the log loss, with a small pull towards (1, 0) (1 / rows)."""
    from scipy.optimize import minimize

    z = np.asarray(z, dtype=np.float64)
    n, k = z.shape
    y = _targets(truth, z.shape, multi)
    pull = 1.0 / max(n, 1)

    def loss_and_gradient(theta):
        w, b = theta[:k], theta[k:]
        u = z * w + b
        if multi:
            loss = np.sum(np.logaddexp(0.0, u) - y * u) / n
        else:
            shifted = u - u.max(axis=-1, keepdims=True)
            loss = -np.sum(y * (shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True)))) / n
        g = (probabilities(u, multi) - y) / n
        loss += pull * (np.sum((w - 1.0) ** 2) + np.sum(b**2))
        grad = np.concatenate([(g * z).sum(axis=0) + 2 * pull * (w - 1.0), g.sum(axis=0) + 2 * pull * b])
        return loss, grad

    found = minimize(loss_and_gradient, np.concatenate([np.ones(k), np.zeros(k)]), jac=True, method="L-BFGS-B")
    theta = found.x
    return {"scale": [round(float(v), 6) for v in theta[:k]], "bias": [round(float(v), 6) for v in theta[k:]]}


def fit(method: str, z, truth, multi: bool):
    return fit_temperature(z, truth, multi) if method == "temperature" else fit_vector(z, truth, multi)


def confidence_and_outcome(probs, truth, multi: bool, decided=None) -> tuple[np.ndarray, np.ndarray]:
    """Per row (per row and label for multi-label): the confidence of the decision and whether it was right.
    Single-label: the probability of the class decided (argmax without `decided`)."""
    probs = np.asarray(probs, dtype=np.float64)
    if multi:
        return probs, np.asarray(truth, dtype=np.float64).reshape(probs.shape)
    decided = probs.argmax(axis=-1) if decided is None else np.asarray(decided, dtype=np.int64)
    confidence = probs[np.arange(len(probs)), decided]
    return confidence, (decided == np.asarray(truth, dtype=np.int64)).astype(np.float64)


def _ece(confidence: np.ndarray, outcome: np.ndarray, bins: int = BINS) -> float:
    confidence, outcome = confidence.reshape(-1), outcome.reshape(-1)
    if not len(confidence):
        return 0.0
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    gap = np.bincount(index, confidence, bins) - np.bincount(index, outcome, bins)
    return float(np.abs(gap).sum() / len(confidence))


def ece(probs, truth, multi: bool, decided=None) -> float:
    return round(_ece(*confidence_and_outcome(probs, truth, multi, decided)), 6)


def ece_interval(probs, truth, multi: bool, decided=None, seed: int = 0) -> list[float] | None:
    """Bootstrap 95% interval of the ECE (rows resampled), for fewer than SMALL rows; else None. ECE is
    biased upwards on a sample (noise alone opens gaps in the bins), so the draws are shifted back by
    their mean's excess over the estimate before the percentiles are taken (bias-corrected)."""
    confidence, outcome = confidence_and_outcome(probs, truth, multi, decided)
    n = len(confidence)
    if n >= SMALL or n < 2:
        return None
    rng = np.random.default_rng(seed)
    estimate = _ece(confidence, outcome)
    draws = np.array([_ece(confidence[i], outcome[i]) for i in (rng.integers(0, n, n) for _ in range(RESAMPLES))])
    draws = np.clip(draws - (draws.mean() - estimate), 0.0, None)
    return [round(float(v), 6) for v in np.percentile(draws, [2.5, 97.5])]


def validation_floor(truth, label_names=None, multi: bool = False) -> dict:
    """The one rule calibration and tuned thresholds obey: they are fitted only on a validation split with at
    least MIN_PER_CLASS (10) rows of every class and MIN_ROWS (40) in all; multi-label: at least 10 rows with
    each label and 10 without it (a threshold needs both sides). Otherwise neither is fitted.

    Why these numbers: calibration is checked by 2-fold cross-fitting, so 10 rows of a class leave at least 5 of
    it in each fold to fit on and 5 to score on (vector scaling fits a bias per class; a class with no row is
    pushed towards zero by a fit that never saw it); a tuned threshold maximises F1 per class, and with k rows of
    a class one row moves its recall by 1/k: under 10, a single row moves its F1 by 0.1 or more and the threshold
    follows single rows. 40 in all is the calibration's floor from before (ECE in 15 bins on 20 held-out rows a
    fold is already coarse).

    Returns {met, rows, classes: {name: rows}, without: {name: rows} (multi-label), min_per_class, min_rows,
    rule, reason}; `reason` is one line that names the class counts."""
    labels = np.asarray(truth)
    n = int(labels.shape[0]) if labels.ndim else 0
    if multi:
        k = labels.shape[1] if labels.ndim == 2 else len(label_names or ())
        names = list(label_names or range(k))
        matrix = labels.reshape(n, k).astype(bool) if n else np.zeros((0, k), dtype=bool)
        classes = {str(name): int(matrix[:, j].sum()) for j, name in enumerate(names)}
        without = {str(name): n - count for name, count in classes.items()}
    else:
        names = list(label_names) if label_names is not None else list(range(int(labels.max()) + 1 if n else 0))
        counts = np.bincount(labels.astype(np.int64), minlength=len(names)) if n else np.zeros(len(names), int)
        classes = {str(name): int(counts[j]) for j, name in enumerate(names)}
        without = None
    short = [name for name, count in classes.items()
             if count < MIN_PER_CLASS or (without is not None and without[name] < MIN_PER_CLASS)]
    met = bool(classes) and not short and n >= MIN_ROWS
    shown = list(classes) if len(classes) <= SHOWN_CLASSES else (short[:SHOWN_CLASSES] or list(classes)[:SHOWN_CLASSES])
    counts_text = ", ".join(f"{name} {classes[name]}" + (f" of {n}" if multi else "") for name in shown)
    rest = len(classes) - len(shown)
    if rest:
        counts_text += f" and {rest} more"
    needed = (f"at least {MIN_PER_CLASS} validation rows with each label, {MIN_PER_CLASS} without it and {MIN_ROWS} "
              "in all") if multi else f"at least {MIN_PER_CLASS} validation rows of every class and {MIN_ROWS} in all"
    rule = f"calibration and tuned thresholds need {needed}"
    if met:
        reason = f"{n} validation rows ({counts_text}): {needed}"
    else:
        reason = f"too few validation rows: {n} in all ({counts_text}); {rule}"
    out = {"met": met, "rows": n, "classes": classes, "min_per_class": MIN_PER_CLASS, "min_rows": MIN_ROWS,
           "rule": rule, "reason": reason}
    if without is not None:
        out["without"] = without
    return out


def declined_line(floor: dict, calibration: str | None, thresholds: bool, multi: bool = False,
                  threshold: float = 0.5) -> str:
    """The one line said when the floor (validation_floor) declines what the spec asks: what is declined, the
    counts and the rule, what the run does instead, and how to get there."""
    asked = [f"predict.calibration ({calibration})" if calibration else "", "predict.tune_thresholds" if thresholds
             else ""]
    what = " and ".join(a for a in asked if a)
    instead = (["the scores stay as the model gives them"] if calibration else []) + (
        [f"rows are decided at predict.threshold {threshold:g}" if multi else "rows are decided by argmax"]
        if thresholds else [])
    instead = " and ".join(instead)
    return (f"{what} declined: {floor['reason']}; {instead} (add validation rows: data.validation_file or a larger "
            "data.validation_fraction)")


def _folds(truth, multi: bool, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold, StratifiedKFold

    n = len(truth)
    labels = np.asarray(truth)
    if not multi and np.unique(labels, return_counts=True)[1].min() >= FOLDS:
        return list(StratifiedKFold(FOLDS, shuffle=True, random_state=seed).split(np.zeros(n), labels))
    return list(KFold(FOLDS, shuffle=True, random_state=seed).split(np.zeros(n)))


def figures(z, truth, multi: bool, decide, score=None) -> dict:
    probs = probabilities(z, multi)
    decided = decide(probs)
    out = {"log_loss": round(log_loss(z, truth, multi), 6), "ece": ece(probs, truth, multi, decided)}
    if score is not None:
        out["decisions"] = round(float(score(probs, decided)), 6)
    return out


def _helps(got: dict, raw: dict) -> bool:
    """Lower log loss, no higher ECE, and decisions no worse (by the run's metric, when it is given)."""
    worse_decisions = "decisions" in raw and got["decisions"] < raw["decisions"] - 1e-9
    return got["log_loss"] < raw["log_loss"] and got["ece"] <= raw["ece"] and not worse_decisions


def _shown(v: dict, metric: str) -> str:
    return f"log loss {v['log_loss']:.4f}, ECE {v['ece']:.4f}" + (
        f", {metric} {v['decisions']:.4f}" if "decisions" in v else ""
    )


def choose(
    method: str, logits, truth, multi: bool, decide=lambda probs: None, seed: int = 0, score=None, metric: str = "",
    floor: dict | None = None,
) -> dict:
    """Fit and check `method` (auto, temperature or vector) on the validation logits.

    `decide(probs)` gives the decisions the model would output from those probabilities (None:
    argmax); `score(probs, decided)`, when given, the run's `metric` of those decisions: a method that
    lowers it (vector scaling can move the most probable class, e.g. back from a minority that class
    weights favour) does not help. Returns {asked, method, applied, params, rows, reason, raw:
    {log_loss, ece, decisions}, cross_fitted: {method: {...}}, fitted: {...}}; `params` is the
    temperature or {scale, bias}, None when nothing is applied. Nothing is fitted below the floor that tuned
    thresholds obey too (`floor`: validation_floor's verdict, computed from `truth` when not given)."""
    z = np.asarray(logits, dtype=np.float64)
    n = len(z)
    floor = floor or validation_floor(truth, None, multi)
    out = {"asked": method, "method": None, "applied": False, "params": None, "rows": n, "min_rows": MIN_ROWS,
           "min_per_class": MIN_PER_CLASS}
    out["raw"] = figures(z, truth, multi, decide, score) if n else {}
    if metric and score is not None:
        out["metric"] = metric
    if not floor["met"]:
        out["reason"] = floor["reason"]
        return out
    candidates = list(METHODS) if method == "auto" else [method]
    folds = _folds(truth, multi, seed)
    truth_array = np.asarray(truth)
    out["cross_fitted"] = {}
    for name in candidates:
        held_out = np.empty_like(z)
        for fitted_on, scored_on in folds:
            held_out[scored_on] = scale_logits(z[scored_on], fit(name, z[fitted_on], truth_array[fitted_on], multi))
        out["cross_fitted"][name] = figures(held_out, truth, multi, decide, score)
    raw = out["raw"]
    helping = [name for name, got in out["cross_fitted"].items() if _helps(got, raw)]
    if not helping:
        shown = "; ".join(f"{name}: {_shown(v, metric)}" for name, v in out["cross_fitted"].items())
        out["reason"] = (
            f"not applied: on held-out validation rows (2-fold cross-fitting) no method beat the raw scores "
            f"({_shown(raw, metric)}; {shown})"
        )
        return out
    best = min(helping, key=lambda name: (out["cross_fitted"][name]["log_loss"], out["cross_fitted"][name]["ece"]))
    if best == "vector" and "temperature" in helping:  # the simpler one, which keeps the argmax, unless clearly worse
        gain = out["cross_fitted"]["temperature"]["log_loss"] - out["cross_fitted"]["vector"]["log_loss"]
        best = "temperature" if gain < PREFER_SIMPLER * raw["log_loss"] else best
    refused = []
    for name in [best] + [other for other in helping if other != best]:  # the next one when the best fails
        params = fit(name, z, truth, multi)
        fitted = figures(scale_logits(z, params), truth, multi, decide, score)
        out["fitted"], out["fitted_method"] = fitted, name
        if fitted["ece"] > raw["ece"] or fitted["log_loss"] > raw["log_loss"] or (
            "decisions" in raw and fitted["decisions"] < raw["decisions"] - 1e-9
        ):
            refused.append(
                f"{name} fitted on every validation row would not help ({_shown(raw, metric)} -> "
                f"{_shown(fitted, metric)})"
            )
            continue
        cross = out["cross_fitted"][name]
        out.update(method=name, applied=True, params=params)
        out["reason"] = (
            f"{name} applied: held-out validation {_shown(raw, metric)} -> {_shown(cross, metric)} (2-fold "
            "cross-fitting)" + (f"; {'; '.join(refused)}, so not that" if refused else "")
        )
        return out
    out["reason"] = "not applied: " + "; ".join(refused)
    return out
