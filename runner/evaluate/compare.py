"""Honest comparisons of two runs, and the quality gate.

`paired_delta`: the change of a metric from a baseline run to a new run with a paired bootstrap
95% interval. Paired means both runs predicted the same rows: their predictions/<split>.jsonl are
matched by source row and text, and each bootstrap sample draws the same rows for both. When the
rows differ (other data, another split, other rows dropped) no interval is given and no
difference is called: the result says why.

`gate_verdict`: the spec's `gate: {metric, split, min, max, max_drop}` against the new run's figures on
`gate.split` (validation by default, or test) and the comparison on that split; `runner report` and the
Action exit 1 when it fails.
"""

from __future__ import annotations

import math
from pathlib import Path

from runner.files import read_jsonl
from runner.record.rundir import RunDir
from runner.record.runrecord import results_of
from runner.spec.tasks import TASKS, lower_is_better, metric_items, task_of

RESAMPLES = 1000
SEED = 0
FAST = ("accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro")  # from a confusion matrix


def read_predictions(run_dir: RunDir, split: str) -> list[dict] | str:
    """The run's predictions of `split`, or why there are none to pair ("has no ...", "has a damaged ...")."""
    path = run_dir.predictions_file(split)
    if not path.is_file():
        return f"has no predictions/{split}.jsonl"
    try:
        return read_jsonl(path)
    except OSError as exc:
        return f"cannot read predictions/{split}.jsonl ({exc.strerror or exc})"
    except ValueError:
        return f"has a predictions/{split}.jsonl that is not JSON lines"


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

    if task.one_label_per_row and metric in FAST:
        from runner.evaluate.metrics import softmax

        probabilities = softmax(np.asarray(scores, dtype=float))
        predicted = task.decide(probabilities, labels, threshold, thresholds)
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
    return lambda index: task.compute_metrics(scores[index], truth[index], labels, threshold, thresholds).get(
        metric, np.nan
    )


def paired_delta(new_dir, base_dir, split: str, metric: str, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """{paired, rows, split, metric, new, base, delta, low, high, verdict} or {paired: False, reason}."""
    import numpy as np

    new_run, base_run = RunDir(new_dir), RunDir(base_dir)
    new, base = read_predictions(new_run, split), read_predictions(base_run, split)
    out = {"split": split, "metric": metric, "paired": False}
    for who, rows in (("the new run", new), ("the baseline", base)):
        if isinstance(rows, str):
            return out | {"reason": f"{who} {rows}"}
    matched = matched_rows(new, base)
    if isinstance(matched, str):
        return out | {"reason": matched}
    spec_values = new_run.spec_values()
    task_name = spec_values.get("task") or results_of(new_dir).task
    if task_name not in TASKS:
        return out | {"reason": "the new run's spec does not name its task"}
    task = task_of(task_name)
    labels = results_of(new_run.path).labels
    if results_of(base_run.path).labels != labels:
        return out | {"reason": "the runs have different labels"}
    threshold = (spec_values.get("predict") or {}).get("threshold", 0.5)
    try:
        samplers = []
        for records, run in zip(matched, (new_run, base_run)):
            scores, truth = task.from_prediction_records(records, labels)
            thresholds = results_of(run.path).thresholds or None  # each run's own rule
            samplers.append(metric_sampler(task, metric, scores, truth, labels, threshold, thresholds))
    except (KeyError, ValueError, TypeError) as exc:
        return out | {"reason": f"the predictions files cannot be read as this task's ({type(exc).__name__}: {exc})"}
    n = len(matched[0])
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
    return out | {
        "paired": True,
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


def comparison_and_gate(run_dir, base, headline: dict, metrics: dict,
                        base_metrics: dict | None = None) -> tuple[dict | None, dict | None]:
    """The headline comparison (with a baseline) and the gate verdict (with a gate in the run's spec), the
    gate's on its own split (`gate.split`); `metrics` and `base_metrics` are the two runs' metrics.json."""
    spec_values = RunDir(run_dir).spec_values() if Path(run_dir).is_dir() else {}
    gate = spec_values.get("gate") if isinstance(spec_values.get("gate"), dict) else None
    headline_split, split = headline.get("split", "validation"), gate_split(gate)
    base_metrics = base_metrics or {}
    comparison = base_dir = None
    if base is not None and headline.get("name"):
        base_dir = Path(base) if Path(base).is_dir() else Path(base).parent
        comparison = paired_delta(run_dir, base_dir, headline_split, headline["name"])
    if gate is None:
        return comparison, None
    metric = gate.get("metric") or headline.get("name")
    gate_comparison = comparison
    if base_dir is not None and metric and (metric, split) != (headline.get("name"), headline_split):
        gate_comparison = paired_delta(run_dir, base_dir, split, metric)
    elif base is not None and comparison is None:  # a run without a headline: the gate's check cannot be paired
        gate_comparison = {"paired": False, "reason": "the run has no headline metric"}
    base_values = dict(metric_items(base_metrics.get(split)))
    return comparison, gate_verdict(gate, headline, dict(metric_items(metrics.get(split))), gate_comparison,
                                    base_values.get(metric), bool(base_values) or gate_comparison is None
                                    or bool(gate_comparison.get("paired")))
