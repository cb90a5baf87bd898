"""Prior adjustment to a stated class mix (`predict.class_prior`): applied after calibration, never by default.

A model, and a calibration fitted on validation (drawn like training), give p(y|x) under training's class mix.
Where the rows predicted on have another mix and p(x|y) is unchanged, Bayes' rule gives
p'(y|x) proportional to p(y|x) * target(y) / training(y): in logits, log(target(y) / training(y)) added to each
class's (calibrated) logit. So the adjustment folds into the calibration as one scale and one bias per class
(temperature T: scale 1/T; vector scaling: its own scale and bias), the form the predictions files,
`runner predict`, `runner eval` and the model card's snippet already apply. The folded dict also carries both
mixes by class name, so the record says what was done, and `from_test` is stored as the test split's numbers:
a finished run never reads its test file again to predict.

Single-label classification only; the spec's rules (runner.spec.specrules) refuse the rest before a run.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from runner.evaluate import calibration as cal
from runner.spec.sections import PredictSection
from runner.spec.tasks import Task

FROM_TEST = "from_test"


def _shares(counts: dict, labels: list[str]) -> dict:
    total = sum(int(counts.get(name, 0)) for name in labels)
    return {name: int(counts.get(name, 0)) / total if total else 0.0 for name in labels}


def _counts(frame, labels: list[str]) -> dict:
    found = frame["label"].value_counts()
    return {name: int(found.get(i, 0)) for i, name in enumerate(labels)}


def mix_text(shares: dict) -> str:
    return ", ".join(f"{name} {share:.1%}" for name, share in shares.items())


def check_data(predict: PredictSection, labels: list[str], splits: dict, where: Callable[..., str]) -> None:
    """With the classes known (they may come from the data): every class named in a stated mix is a class and
    every class is named; every class has training rows (its training share divides); `from_test` finds rows of
    every class in the test split (a share of 0 would never predict it). Raises SpecError (exit 2) at the spec's
    predict.class_prior (`where`: the place of a spec value, `spec.where`)."""
    from runner.errors import SpecError, SpecErrors
    from runner.spec.specrules import class_prior_name_problems

    asked = predict.class_prior
    if asked is None or not labels:
        return
    place = where("predict", "class_prior")
    if asked != FROM_TEST:
        problems = class_prior_name_problems(dict(asked), labels)
        if problems:
            raise SpecErrors([SpecError(message, fix, where(*path)) for path, message, fix in problems])
    empty = [name for name, n in _counts(splits["train"], labels).items() if n == 0]
    if empty:
        raise SpecError(
            f"predict.class_prior divides by each class's share of training, and {', '.join(map(repr, empty))} has "
            "no training row", "add training rows of that class, or remove predict.class_prior", place)
    if asked == FROM_TEST:
        if "test" not in splits:
            raise SpecError("predict.class_prior is from_test, but the data has no test split",
                            "add data.test_file (or data.hub.test_split), or give the mix as numbers", place)
        empty = [name for name, n in _counts(splits["test"], labels).items() if n == 0]
        if empty:
            raise SpecError(
                f"predict.class_prior is from_test, but the test split has no row of {', '.join(map(repr, empty))}: "
                "a share of 0 would never predict it",
                "give the mix as numbers, each class above 0 (class_prior: {" + ", ".join(
                    f"{name}: ..." for name in labels) + "})", place)


def asked_mix(predict: PredictSection, task: Task, data) -> dict | None:
    """{asked, target, training}: the stated mix (or the test split's, for `from_test`) and the training split's,
    each {class: share} in label order; None when predict.class_prior is not set (or the task has no classes)."""
    asked = predict.class_prior
    if asked is None or not data.labels or not task.one_label_per_row:
        return None
    distribution = data.summary["label_distribution"]
    if asked == FROM_TEST:
        target = _shares(distribution["test"], data.labels)
    else:
        target = {name: float(dict(asked)[name]) for name in data.labels}
    return {"asked": asked if asked == FROM_TEST else dict(target), "target": target,
            "training": _shares(distribution["train"], data.labels)}


def fold(calibration, target: dict, training: dict, labels: list[str]) -> dict:
    """The calibration (a temperature, vector scaling's {scale, bias}, or None) and the prior adjustment as one
    {scale, bias} per class id, with the mixes that made it: {method: class_prior, calibration, scale, bias,
    class_prior, training_prior}."""
    offset = [math.log(target[name] / training[name]) for name in labels]
    k = len(labels)
    if isinstance(calibration, dict):
        method, scale = "vector", [float(v) for v in calibration["scale"]]
        bias = [float(b) + o for b, o in zip(calibration["bias"], offset)]
    elif calibration not in (None, 0) and float(calibration) != 1.0:
        method, scale, bias = "temperature", [1.0 / float(calibration)] * k, offset
    else:
        method, scale, bias = None, [1.0] * k, offset
    return {"method": "class_prior", "calibration": method, "scale": scale, "bias": bias,
            "class_prior": dict(target), "training_prior": dict(training)}


def apply(prior: dict, calibration, task, labels: list[str], logits_by_split: dict, truth_by_split: dict,
          result) -> dict:
    """Fold the adjustment into the calibration the run applies, record it in result.calibration["class_prior"]
    (the mixes, the offsets, the folded params, and per split the ECE and log loss of the raw scores, of the
    calibrated ones when calibrated, and of the adjusted ones), add `ece` (raw) and `ece_prior_adjusted` to each
    split's metrics, and return the folded params (what the run's decisions apply)."""
    folded = fold(calibration, prior["target"], prior["training"], labels)
    splits = {}
    for split, logits in logits_by_split.items():
        truth = truth_by_split[split]
        raw = cal.probabilities(np.asarray(logits, dtype=np.float64), False)
        adjusted = cal.probabilities(cal.scale_logits(logits, folded), False)
        metrics = result.metrics.setdefault(split, {})
        metrics.setdefault("ece", cal.ece(raw, truth, False))  # no tuned thresholds beside a prior: argmax
        metrics["ece_prior_adjusted"] = cal.ece(adjusted, truth, False)
        splits[split] = {
            "ece": metrics["ece"],
            **({"ece_calibrated": metrics["ece_calibrated"]} if "ece_calibrated" in metrics else {}),
            "ece_prior_adjusted": metrics["ece_prior_adjusted"],
            "ece_prior_adjusted_interval": cal.ece_interval(adjusted, truth, False),
            "log_loss": round(cal.log_loss(logits, truth, False), 6),
            "log_loss_prior_adjusted": round(cal.log_loss(cal.scale_logits(logits, folded), truth, False), 6),
        }
    after = "the raw scores (no calibration applied)"
    if folded["calibration"] == "temperature":
        after = f"temperature scaling (T = {1 / folded['scale'][0]:.3f})"
    elif folded["calibration"] == "vector":
        after = "vector scaling"
    result.calibration["class_prior"] = {
        "asked": prior["asked"], "applied": True, "target": prior["target"], "training": prior["training"],
        "offset": {name: round(math.log(prior["target"][name] / prior["training"][name]), 6) for name in labels},
        "after": after, "params": folded, "splits": splits,
    }
    return folded


def tell(result) -> None:
    """The console's line on the adjustment (after calibration's), and a warning when class weights shifted the
    scores that it assumes follow training's mix."""
    from runner.console import say, warn

    recorded = (result.calibration or {}).get("class_prior") or {}
    if not recorded.get("applied"):
        return
    asked = FROM_TEST + ": the test split's mix" if recorded["asked"] == FROM_TEST else "as stated in the spec"
    shown = "; ".join(f"{s} ECE {v['ece']:.4f} -> {v['ece_prior_adjusted']:.4f}" for s, v in recorded["splits"].items())
    say(f"class prior ({asked}): probabilities adjusted from training's mix ({mix_text(recorded['training'])}) to "
        f"{mix_text(recorded['target'])}, after {recorded['after']}" + (f"; {shown}" if shown else ""))
    if result.class_weights and recorded["params"]["calibration"] != "vector":
        warn("predict.class_prior assumes scores that follow training's class mix; train.class_weights shifted them "
             "and no vector calibration undid that, so the adjusted probabilities favour the weighted classes "
             "(set predict.calibration: vector, or remove train.class_weights)")
