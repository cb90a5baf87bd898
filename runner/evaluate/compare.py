"""Honest comparisons of two runs, and the quality gate.

`bootstrap_delta`: the change of a metric from a baseline run to a new run with a paired bootstrap
95% interval (runner.record.comparison.paired_delta reads the two runs' folders for it). Paired means both
runs predicted the same rows: their predictions/<split>.jsonl are matched by source row and text
(`matched_rows`), and each bootstrap sample draws the same rows for both. When the
rows differ (other data, another split, other rows dropped) no interval is given and no
difference is called: the result says why.

`gate_verdict`: the spec's `gate: {metric, split, min, max, max_drop}` against the new run's figures on
`gate.split` (validation by default, or test) and the comparison on that split; `runner report` and the
Action exit 1 when it fails.
"""

from __future__ import annotations

import math

from runner.spec.tasks import lower_is_better

RESAMPLES = 1000
SEED = 0
FAST = ("accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro")  # from a confusion matrix


def matched_rows(new: list[dict], base: list[dict]) -> tuple[list[dict], list[dict]] | str:
    """Both runs' predictions of the same rows, in one order; or why they are not the same rows."""

    def key(record):
        return (record.get("row"), record.get("text"), record.get("text_pair"))

    new_keys, base_keys = [key(r) for r in new], [key(r) for r in base]
    if len(set(new_keys)) != len(new_keys) or len(set(base_keys)) != len(base_keys):
        return "a run predicted the same row twice"
    if set(new_keys) != set(base_keys):
        only_new, only_base = len(set(new_keys) - set(base_keys)), len(set(base_keys) - set(new_keys))
        return (
            f"the runs predicted different rows ({len(new)} vs {len(base)}; {only_new} only in the new run, "
            f"{only_base} only in the baseline)"
        )
    by_key = dict(zip(base_keys, base))
    return new, [by_key[k] for k in new_keys]


def metric_sampler(task, metric: str, scores, truth, labels: list[str], threshold: float, thresholds=None):
    """A function of row indices giving the metric on those rows (fast for confusion-matrix metrics), with
    the run's decision rule: its tuned `thresholds` when it has them (as its metrics and predictions do)."""
    import numpy as np

    from runner.evaluate.strategies import strategy_of

    strategy = strategy_of(task)
    if task.one_label_per_row and metric in FAST:
        from runner.evaluate.metrics import softmax

        probabilities = softmax(np.asarray(scores, dtype=float))
        predicted = strategy.decide(probabilities, labels, threshold, thresholds)
        truth, n = np.asarray(truth, dtype=int), len(labels)

        def fast(index):
            matrix = np.bincount(truth[index] * n + predicted[index], minlength=n * n).reshape(n, n)
            true_positive, support, predicted_count = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
            if metric == "accuracy":
                return true_positive.sum() / max(matrix.sum(), 1)
            precision = np.divide(true_positive, predicted_count, out=np.zeros(n), where=predicted_count > 0)
            recall = np.divide(true_positive, support, out=np.zeros(n), where=support > 0)
            if metric == "precision_macro":
                return precision.mean()
            if metric == "recall_macro":
                return recall.mean()
            f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(n), where=(precision + recall) > 0)
            return f1.mean() if metric == "f1_macro" else (f1 * support).sum() / max(support.sum(), 1)

        return fast
    scores, truth = np.asarray(scores), np.asarray(truth)
    return lambda index: strategy.compute_metrics(scores[index], truth[index], labels, threshold, thresholds).get(
        metric, np.nan
    )


def bootstrap_delta(samplers: list, metric: str, n: int, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """The paired bootstrap of a metric's change: `samplers` (new, base) give the metric on a draw of row indices
    of the `n` matched rows. {rows, new, base, delta, low, high, resamples, verdict}."""
    import numpy as np

    everything = np.arange(n)
    new_value, base_value = float(samplers[0](everything)), float(samplers[1](everything))
    rng = np.random.default_rng(seed)
    deltas = np.empty(resamples)
    for i in range(resamples):
        index = rng.integers(0, n, n)
        deltas[i] = samplers[0](index) - samplers[1](index)
    low, high = (float(x) for x in np.nanpercentile(deltas, [2.5, 97.5]))
    better_up = not lower_is_better(metric)
    if low > 0 or high < 0:
        verdict = "better" if (low > 0) == better_up else "worse"
    else:
        verdict = "no clear difference"
    return {
        "rows": n,
        "new": round(new_value, 6),
        "base": round(base_value, 6),
        "delta": round(new_value - base_value, 6),
        "low": round(low, 6),
        "high": round(high, 6),
        "resamples": resamples,
        "verdict": verdict,
    }


def per_class_deltas(new: dict | None, base: dict | None) -> dict:
    """{label: {metric: delta}} for the labels and metrics both per-class tables have."""
    out = {}
    for label, values in (new or {}).items():
        old = (base or {}).get(label)
        if not isinstance(old, dict) or not isinstance(values, dict):
            continue
        out[label] = {
            name: round(values[name] - old[name], 6)
            for name in ("precision", "recall", "f1")
            if isinstance(values.get(name), (int, float)) and isinstance(old.get(name), (int, float))
        }
    return out


def gate_split(gate: dict | None) -> str:
    """The split the gate checks: `gate.split`, validation when the spec (or an older run's) does not say."""
    split = (gate or {}).get("split")
    return str(split) if split not in (None, "") else "validation"  # a run folder may come from anywhere


def gate_verdict(gate: dict | None, headline: dict, values: dict, comparison: dict | None,
                 base_value=None, base_has_split: bool = True) -> dict | None:
    """{passed, metric, split, value, reasons: [...], notes: [...]} for the spec's gate; None without one.

    `values` are the new run's metrics on the gate's split (`gate.split`); `comparison` the paired_delta of
    the gate's metric on that split (None without a baseline); `base_value` the baseline's figure of that
    metric there, which checks `max_drop` unpaired when the rows cannot be paired; `base_has_split`
    whether the baseline has that split at all. A configured check that cannot be made fails the gate with
    the reason: it never passes unchecked. Each reason names the split."""
    if not gate:
        return None
    metric = gate.get("metric") or headline.get("name")
    split = gate_split(gate)
    value = values.get(metric)
    out = {"metric": metric, "split": split, "value": value, "reasons": [], "notes": []}
    if not values and split != "validation":
        needs = "; a test split needs data.test_file or data.hub.test_split" if split == "test" else ""
        out["reasons"].append(f"the run has no {split} split to gate on (gate.split: {split}{needs})")
    elif not isinstance(value, (int, float)):
        out["reasons"].append(f"the run has no {metric} on {split}")
    else:
        if gate.get("min") is not None and value < gate["min"]:
            out["reasons"].append(f"{metric} {value:.4f} on {split} is below gate.min {gate['min']}")
        if gate.get("max") is not None and value > gate["max"]:
            out["reasons"].append(f"{metric} {value:.4f} on {split} is above gate.max {gate['max']}")
    if gate.get("max_drop") is not None:
        if comparison is None:
            out["notes"].append("gate.max_drop not checked: no baseline to compare with")
        elif comparison.get("labels_differ"):  # a figure over other classes is no baseline for this one
            out["reasons"].append(f"gate.max_drop cannot be checked: {comparison['reason']}, so {metric} on {split} "
                                  "averages over other classes in each")
        elif comparison.get("itself"):  # Δ 0 by construction: no check at all
            out["reasons"].append(f"gate.max_drop cannot be checked: {comparison['reason']}")
        elif not base_has_split:
            setting = f" (gate.split: {split})" if split != "validation" else ""
            out["reasons"].append(f"gate.max_drop cannot be checked: the baseline has no {split} split: no "
                                  f"{split} figures, no predictions/{split}.jsonl{setting}")
        elif not comparison.get("paired"):
            why = comparison.get("reason")
            if not _finite(base_value) or not _finite(value):
                whose = "the baseline" if not _finite(base_value) else "the new run"
                out["reasons"].append(f"gate.max_drop cannot be checked: {why}, and {whose} has no {metric} "
                                      f"on {split}")
            else:
                drop = value - base_value if lower_is_better(metric) else base_value - value
                out["notes"].append(f"gate.max_drop checked on the two runs' {split} figures, not paired rows: {why}")
                if drop > gate["max_drop"]:
                    out["reasons"].append(
                        f"{metric} on {split} dropped by {drop:.4f} against the baseline ({base_value:.4f} -> "
                        f"{value:.4f}, unpaired), more than gate.max_drop {gate['max_drop']}")
        else:
            drop = -comparison["delta"] if not lower_is_better(metric) else comparison["delta"]
            interval = interval_text(comparison)
            if drop > gate["max_drop"]:
                out["reasons"].append(
                    f"{metric} on {split} dropped by {drop:.4f} against the baseline ({interval}), more than "
                    f"gate.max_drop {gate['max_drop']}"
                )
    out["passed"] = not out["reasons"]
    return out


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def interval_text(comparison: dict) -> str:
    return (
        f"Δ {comparison['delta']:+.4f}, 95% paired bootstrap interval [{comparison['low']:+.4f}, "
        f"{comparison['high']:+.4f}] on the same {comparison['rows']} {comparison['split']} rows"
    )
