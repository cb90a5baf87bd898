"""The metrics summary a pull-request comment, a job summary and `runner report` show, with deltas
against a baseline run."""

from __future__ import annotations

import math
import os
from pathlib import Path

from runner.evaluate.compare import per_class_deltas
from runner.record.analysis import summary_lines
from runner.record.comparison import comparison_and_gate
from runner.record.flows import comparison_lines
from runner.record.markdown import SPLITS, number, per_class_table, table
from runner.record.paths import published_arg
from runner.record.render import COMMENT_LIMIT, FULL_REPORT, fit, inert, length, link, publish
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


def _spec_of(folder: Path) -> dict | None:
    """{name, spec_file} of the run in `folder` (run.json), or None when it has no readable record."""
    from runner.errors import RunnerError

    try:
        return _spec_in(RunDir(folder).read_manifest())
    except (RunnerError, OSError, ValueError):
        return None


def _spec_in(manifest) -> dict | None:
    if not isinstance(manifest, dict) or not manifest.get("name"):
        return None
    return {"name": str(manifest["name"]), "spec_file": manifest.get("spec_file")}


def _another_spec(own: dict | None, base: dict | None) -> bool:
    """Whether the baseline's run trained another spec: another name, or another spec file when both say."""
    if not own or not base:
        return False
    files = own.get("spec_file"), base.get("spec_file")
    return own["name"] != base["name"] or bool(all(files) and files[0] != files[1])


def spec_names(summary: dict) -> tuple[str, str]:
    """How the baseline's spec and this run's are named side by side: by name, and by spec file too when the
    names are the same (two files may carry one name)."""
    base, own = summary.get("base_spec") or {}, summary.get("spec") or {}
    base_name, own_name = str(base.get("name", "")), str(own.get("name") or summary.get("name", ""))
    if base_name == own_name and base.get("spec_file") and own.get("spec_file"):
        return f"{base_name}, from {base['spec_file']}", f"{own_name}, from {own['spec_file']}"
    return base_name, own_name


def another_spec_warning(summary: dict) -> str | None:
    """The console's warning when the baseline is another spec's run; None when it is this spec's."""
    if not summary.get("base_is_another_spec"):
        return None
    theirs, ours = spec_names(summary)
    ours = f"this spec's ({ours})" if ", from " in ours else f"{ours}'s"
    return f"the baseline is another spec's run ({theirs}), not {ours}: the change compares two setups"


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
    comparison, gate = comparison_and_gate(run_dir, base, headline, metrics, base_metrics)
    base_folder = (Path(base) if Path(base).is_dir() else Path(base).parent) if base is not None else None
    base_per_class = results_of(base_folder).per_class.get(split) if base_folder is not None else None
    base_spec = _spec_of(base_folder) if base_folder is not None else None
    return {
        "name": manifest.get("name") or folder.path.resolve().name,
        "run_dir": str(folder.path),
        "status": manifest.get("status"),
        "task": results.get("task") or spec_values.get("task"),
        "headline": headline_entry,
        "rule": headline.get("rule"),
        "metrics": splits,
        "base": str(base) if base is not None else None,
        "spec": _spec_in(manifest),  # this run's: {name, spec_file}
        "base_spec": base_spec,  # whose run the baseline is: {name, spec_file}, None when it has no run.json
        "base_is_another_spec": _another_spec(_spec_in(manifest), base_spec),  # run.json, read once above
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


def summary_markdown(run_dir: str | Path, base: str | Path | None = None, summary: dict | None = None,
                     limit: int = COMMENT_LIMIT) -> str:
    """Markdown for a pull-request comment or job summary (see summary_json). Every string of the
    record is made inert first (runner.record.render), and the body passes its last guard.

    The body stays within `limit` characters (a comment GitHub takes, with room for the action's footer):
    the per-class tables are shortened first (the classes with the lowest F1 are kept), then the
    details (calibration, data checks, error analysis) left out, each with a note that says how much
    and where the whole report is; the headline and the metrics tables always stay."""
    summary = summary or summary_json(run_dir, base)
    hub = summary["hub_url"]  # written by `runner push`: shown as a link when it is a plain address (render.link)
    if summary.get("base_name"):  # the baseline by the name the caller gave (the action: the run it came from)
        summary = {**summary, "base": str(summary["base_name"])}
    elif isinstance(summary.get("base"), str):  # the baseline by a path of no machine
        summary = {**summary, "base": _shown_path(summary["base"])}
    summary = inert(summary)
    title = f"### runner: {summary['name']}"
    headline = summary["headline"]
    if headline:
        rule = (summary.get("rule") or "").split(" (")[0]  # "tuned threshold", "argmax"
        title += f" · {headline['name']} {number(headline['value'])} ({headline['split']}{', ' + rule if rule else ''})"
        if headline["change"]:
            title += f" {_change_text(headline)}"
        test = (summary["metrics"].get("test") or {}).get(headline["name"]) if headline["split"] != "test" else None
        if test and test.get("value") is not None:  # beside it the held-out figure no choice saw
            title += f" · test {number(test['value'])}"
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
        whose = summary.get("base_spec")
        spec_line = f" Its spec: {whose['name']}" + (f" ({whose['spec_file']})" if whose and whose.get("spec_file")
                                                     else "") + "." if whose else ""
        out += [
            f"Baseline: {summary['base']}.{spec_line} Lower is better for {', '.join(sorted(LOWER_IS_BETTER))}; "
            "higher for the rest.",
            "",
        ]
        if summary.get("base_is_another_spec"):
            theirs, ours = spec_names(summary)
            out += [f"> **The baseline is another spec's run** ({theirs}), not this spec's "
                    f"({ours}): the change compares two different setups, not a change to this one.", ""]
    if hub:
        out += [f"Model on the Hub: {link(hub)}", ""]
    if summary["data_rows"]:
        out += ["Data: " + " · ".join(f"{split} {number(n)} rows" for split, n in summary["data_rows"].items()), ""]
    per_class = {split: rows for split, rows in (summary["per_class"] or {}).items() if rows}
    details = summary_lines(summary.get("analysis") or {})  # calibration, thresholds, data checks, error analysis

    def body(shown: int | None, details: list[str]) -> str:
        return "\n".join(out + _per_class_lines(per_class, shown) + details)

    text = body(None, details)
    if length(text) > limit:
        most = max((len(rows) for rows in per_class.values()), default=0)
        if length(body(0, details)) > limit:
            details = [f"Calibration, data checks and error analysis are left out here (this comment would be longer "
                       f"than {limit:,} characters); they are in {FULL_REPORT}.", ""]
        low, high = 0, most  # the most rows per table that fit
        while low < high:
            middle = (low + high + 1) // 2
            low, high = (middle, high) if length(body(middle, details)) <= limit else (low, middle - 1)
        text = body(low, details)
    return publish(fit(text, limit))


def _shown_path(path: str) -> str:
    """A path as published: relative to the working folder that holds it, else its last two parts."""
    shown = published_arg(path)
    if os.path.isabs(path) and shown == Path(path).name:
        return "…/" + "/".join(Path(path).parts[-2:])
    return shown


def _per_class_lines(per_class: dict, shown: int | None = None) -> list[str]:
    """The per-class tables; `shown`: at most that many rows each, the classes with the lowest F1 (the ones
    to look at), with a note that says how many were left out and where the whole table is."""
    if not per_class:
        return []
    out = ["<details><summary>Per-class metrics</summary>", ""]
    for split, by_class in per_class.items():
        out += [f"**{split}**", ""]
        if shown is None or len(by_class) <= shown:
            out += [per_class_table(by_class), ""]
            continue
        worst = sorted(by_class.items(), key=lambda item: _f1_key(item[1]))[:shown]
        if worst:
            out += [per_class_table(dict(worst)), ""]
        left = len(by_class) - len(worst)
        out += [f"{left} of {len(by_class)} classes left out here to keep this comment within GitHub's limit"
                + (f" (shown: the {len(worst)} with the lowest F1)" if worst else "")
                + f"; the whole table is in {FULL_REPORT}.", ""]
    return out + ["</details>", ""]


def _f1_key(values) -> tuple:
    f1 = values.get("f1") if isinstance(values, dict) else None
    known = isinstance(f1, (int, float)) and not isinstance(f1, bool) and math.isfinite(f1)
    return (0, f1) if known else (1, 0.0)
