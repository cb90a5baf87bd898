"""The metrics summary a pull-request comment, a job summary and `runner report` show, with deltas
against a baseline run."""

from __future__ import annotations

import math
from pathlib import Path

from runner.evaluate.compare import comparison_and_gate, per_class_deltas
from runner.record.analysis import summary_lines
from runner.record.flows import comparison_lines
from runner.record.markdown import SPLITS, number, per_class_table, table
from runner.record.render import inert, link, publish
from runner.record.rundir import RunDir, hub_url, read_metrics
from runner.record.runrecord import results_of
from runner.spec.tasks import LOWER_IS_BETTER, lower_is_better, metric_items


def _compare(name: str, value, base) -> dict:
    entry = {
        "value": value,
        "base": base,
        "delta": None,
        "change": None,
        "better": None,
        "higher_is_better": not lower_is_better(name),
    }
    if isinstance(base, float) and not math.isfinite(base):  # a baseline's NaN is no figure to compare with
        entry["base"] = base = None
    if isinstance(base, (int, float)) and not isinstance(base, bool) and math.isfinite(value):
        delta = round(value - base, 12)
        entry["delta"] = delta
        entry["change"] = "up" if delta > 0 else ("down" if delta < 0 else "same")
        entry["better"] = None if delta == 0 else ((delta > 0) == entry["higher_is_better"])
    return entry


def finite_json(value):
    """`value` with every NaN or infinity as None, so that `--format json` is standard JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(item) for item in value]
    return value


def summary_json(run_dir: str | Path, base: str | Path | None = None) -> dict:
    """The run's metrics per split, each with its baseline value and change when `base` is given.

    {name, run_dir, status, task, headline: {split, name, value, base, delta, change, better,
    higher_is_better}, metrics: {split: {metric: {...same fields...}}}, base, hub_url, data_rows,
    per_class}. `base` is a run folder or a metrics.json path.
    """
    folder = RunDir(run_dir)
    metrics = folder.read_metrics()
    manifest = folder.read_manifest()
    base_metrics = read_metrics(base) if base is not None else {}
    splits = {}
    for split in SPLITS:
        values = metric_items(metrics.get(split))
        if values:
            base_values = dict(metric_items(base_metrics.get(split)))
            splits[split] = {name: _compare(name, value, base_values.get(name)) for name, value in values}
    headline = metrics.get("headline") if isinstance(metrics.get("headline"), dict) else {}
    headline_entry = None
    if headline.get("name") and headline.get("split", "validation") in splits:
        split = headline.get("split", "validation")
        found = splits[split].get(headline["name"])
        if found:
            headline_entry = {"split": split, "name": headline["name"], **found}
    results = results_of(folder.path).to_dict() if manifest else {}
    spec_values = manifest.get("spec") if isinstance(manifest.get("spec"), dict) else {}
    split = headline.get("split", "validation")
    comparison, gate = comparison_and_gate(run_dir, base, headline, dict(metric_items(metrics.get(split))),
                                           dict(metric_items(base_metrics.get(split))))
    base_folder = (Path(base) if Path(base).is_dir() else Path(base).parent) if base is not None else None
    base_per_class = results_of(base_folder).per_class.get(split) if base_folder is not None else None
    return {
        "name": manifest.get("name") or folder.path.resolve().name,
        "run_dir": str(folder.path),
        "status": manifest.get("status"),
        "task": results.get("task") or spec_values.get("task"),
        "headline": headline_entry,
        "rule": headline.get("rule"),
        "metrics": splits,
        "base": str(base) if base is not None else None,
        "hub_url": hub_url(manifest),
        "data_rows": (results.get("data_summary") or {}).get("rows"),
        "per_class": results.get("per_class"),
        "analysis": {
            k: results.get(k) for k in ("temperature", "thresholds", "calibration", "data_checks", "error_analysis")
        },
        "comparison": comparison,
        "per_class_deltas": per_class_deltas((results.get("per_class") or {}).get(split), base_per_class)
        if base is not None
        else None,
        "gate": gate,
        "cross_validation": metrics.get("cross_validation"),
    }


def _change_text(entry: dict) -> str:
    if entry["change"] is None:
        return "–"
    if entry["change"] == "same":
        return "= no change"
    mark = "▲" if entry["change"] == "up" else "▼"
    delta = entry["delta"]
    shown = f"{delta:+.4f}" if abs(delta) >= 5e-5 else f"{delta:+.1e}"  # a tiny change must not read as +0.0000
    return f"{mark} {shown} ({'better' if entry['better'] else 'worse'})"


def summary_markdown(run_dir: str | Path, base: str | Path | None = None, summary: dict | None = None) -> str:
    """Markdown for a pull-request comment or job summary (see summary_json). Every string of the
    record is made inert first (runner.record.render), and the body passes its last guard."""
    summary = summary or summary_json(run_dir, base)
    hub = summary["hub_url"]  # written by `runner push`: shown as a link when it is a plain address (render.link)
    summary = inert(summary)
    title = f"### runner: {summary['name']}"
    headline = summary["headline"]
    if headline:
        rule = (summary.get("rule") or "").split(" (")[0]  # "tuned threshold", "argmax"
        title += f" · {headline['name']} {number(headline['value'])} ({headline['split']}{', ' + rule if rule else ''})"
        if headline["change"]:
            title += f" {_change_text(headline)}"
    out = [title, ""]
    if summary["status"] and summary["status"] != "finished":
        out += [f"> Run status: **{summary['status']}**.", ""]
    compare = base is not None
    for split, entries in summary["metrics"].items():
        rows = []
        for name, entry in entries.items():
            is_headline = headline and headline["split"] == split and headline["name"] == name
            cells = [f"**{name}**" if is_headline else name, number(entry["value"])]
            if compare:
                cells += [number(entry["base"]), _change_text(entry)]
            rows.append(cells)
        header = ["metric", split] + (["baseline", "change"] if compare else [])
        out += [table(header, rows, "lr" + ("rl" if compare else "")), ""]
    out += comparison_lines(summary)
    if compare:
        out += [
            f"Baseline: {summary['base']}. Lower is better for {', '.join(sorted(LOWER_IS_BETTER))}; higher for the "
            "rest.",
            "",
        ]
    if hub:
        out += [f"Model on the Hub: {link(hub)}", ""]
    if summary["data_rows"]:
        out += ["Data: " + " · ".join(f"{split} {number(n)} rows" for split, n in summary["data_rows"].items()), ""]
    per_class = {split: rows for split, rows in (summary["per_class"] or {}).items() if rows}
    if per_class:
        out += ["<details><summary>Per-class metrics</summary>", ""]
        for split, by_class in per_class.items():
            out += [f"**{split}**", "", per_class_table(by_class), ""]
        out += ["</details>", ""]
    out += summary_lines(summary.get("analysis") or {})  # calibration, thresholds, data checks, error analysis
    return publish("\n".join(out))
