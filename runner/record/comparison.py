"""Comparing a run with a baseline run, read from their folders: the paired predictions, the headline comparison
and the gate's verdict. The statistics (the paired bootstrap, the gate's rules) are runner.evaluate.compare's;
this module reads what they need from the two run folders."""

from __future__ import annotations

from pathlib import Path

from runner.evaluate.compare import (
    RESAMPLES,
    SEED,
    bootstrap_delta,
    gate_split,
    gate_verdict,
    matched_rows,
    metric_sampler,
)
from runner.files import read_jsonl
from runner.record.rundir import RunDir
from runner.record.runrecord import results_of
from runner.spec.tasks import TASKS, metric_items, task_of


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


def _labels_text(labels: list) -> str:
    return ", ".join(map(str, labels))


def paired_delta(new_dir, base_dir, split: str, metric: str, resamples: int = RESAMPLES, seed: int = SEED) -> dict:
    """{paired, rows, split, metric, new, base, delta, low, high, verdict} or {paired: False, reason}."""
    new_run, base_run = RunDir(new_dir), RunDir(base_dir)
    out = {"split": split, "metric": metric, "paired": False}
    if new_run.path.resolve() == base_run.path.resolve():  # `--compare RUN` of RUN: Δ 0 would pass any gate
        return out | {"itself": True,
                      "reason": "the baseline is this run itself (give the folder of another run to compare with)"}
    new, base = read_predictions(new_run, split), read_predictions(base_run, split)
    labels, base_labels = results_of(new_run.path).labels, results_of(base_run.path).labels
    if labels and base_labels and set(labels) != set(base_labels):  # first: the figures measure other classes
        why = f"the runs have different labels (new run: {_labels_text(labels)}; baseline: {_labels_text(base_labels)})"
        return out | {"labels_differ": True, "reason": why}
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
    if base_labels != labels:
        return out | {"reason": f"the runs list their labels in another order (new run: {_labels_text(labels)}; "
                                f"baseline: {_labels_text(base_labels)}), and a two-class metric or a tuned "
                                "threshold is of the second label"}
    threshold = (spec_values.get("predict") or {}).get("threshold", 0.5)
    from runner.evaluate.strategies import strategy_of

    try:
        samplers = []
        for records, run in zip(matched, (new_run, base_run)):
            scores, truth = strategy_of(task).from_prediction_records(records, labels)
            thresholds = results_of(run.path).thresholds or None  # each run's own rule
            samplers.append(metric_sampler(task, metric, scores, truth, labels, threshold, thresholds))
    except (KeyError, ValueError, TypeError) as exc:
        return out | {"reason": f"the predictions files cannot be read as this task's ({type(exc).__name__}: {exc})"}
    return out | {"paired": True} | bootstrap_delta(samplers, metric, len(matched[0]), resamples, seed)


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
