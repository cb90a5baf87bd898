"""Markdown for what the flows above a single run add: cross-validation, label issues and the search
(report.md sections), and the paired comparison and quality gate (the pull-request summary)."""

from __future__ import annotations

import math

from runner.record.markdown import duration, number, table
from runner.record.rundir import LABEL_ISSUES

TEXT_WIDTH = 80


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= TEXT_WIDTH else text[: TEXT_WIDTH - 1] + "…"


def cross_validation_lines(cv: dict | None, headline: str | None = None) -> list[str]:
    """One line for a comment: `5-fold cross-validation: f1_macro 0.81 ± 0.02 (per fold ...)`."""
    if not cv or not cv.get("mean"):
        return []
    names = [headline] if headline in cv["mean"] else list(cv["mean"])[:1]
    parts = [f"{name} {number(cv['mean'][name])} ± {number(cv['std'].get(name))}" for name in names]
    per_fold = ", ".join(number(m.get(names[0])) for m in cv.get("per_fold") or [])
    return [f"{cv.get('folds')}-fold cross-validation, mean ± std over the folds: {'; '.join(parts)} ({per_fold})", ""]


def report_sections(result) -> list[str]:
    """report.md sections for cross-validation, label issues and the search (empty when none ran)."""
    out = []
    cv = result.cross_validation
    if cv:
        names = list(cv.get("mean") or {})
        rows = [
            [f"fold {r['fold'] + 1}", number(r["rows"])] + [number(r["metrics"].get(n)) for n in names]
            for r in cv.get("per_fold") or []
        ]
        rows.append(["**mean**", ""] + [number(cv["mean"].get(n)) for n in names])
        rows.append(["std", ""] + [number(cv["std"].get(n)) for n in names])
        out += [
            "## Cross-validation",
            "",
            f"{cv['folds']} {'stratified ' if cv.get('stratified') else ''}folds (seed {cv.get('seed')}); each fold's "
            "model trained on the other folds and predicted this fold. The validation metrics above are those of "
            f"the out-of-fold predictions of every row. Folds took {duration(cv.get('fold_seconds'))}; the final "
            f"model was {cv.get('final_model')}.",
            "",
            table(["fold", "rows"] + names, rows),
            "",
        ]
    issues = result.label_issues
    if issues:
        out += ["## Suspected label issues", ""]
        if issues.get("error"):
            out += [f"Not computed: {issues['error']}.", ""]
        else:
            top = issues.get("top") or issues.get("rows") or []
            out += [
                f"{issues['count']} row(s) whose given label the out-of-fold predictions doubt: "
                f"{issues.get('confident_learning', 0)} flagged by cleanlab's confident learning, the others "
                f"predicted as another label; all of them, most suspect first, in "
                f"`{issues.get('file', LABEL_ISSUES)}`. Method: {issues.get('method', 'cleanlab')}. The score "
                "is the probability given to the given label; `row` is the row's place in its data file (CSV: "
                "counting the header as 1).",
                "",
            ]
            if issues.get("warning"):
                out += [f"> **Warning:** {issues['warning']}.", ""]
            if top:
                rows = [
                    [number(r["row"]), _short(r["text"]), r["given_label"], r["suggested_label"], number(r["score"])]
                    for r in top
                ]
                out += [table(["row", "text", "given", "suggested", "score"], rows, "rlllr"), ""]
    search = result.search
    if search:
        keys = list(search.get("space") or {})
        best = (search.get("best") or {}).get("number")
        rows = [
            [f"**{t['number']}**" if t["number"] == best else str(t["number"]), t["state"], number(t["value"])]
            + [f"{v:.3g}" if isinstance(v := t["params"].get(k), float) else number(v) for k in keys]
            + [duration(t.get("seconds"))]
            for t in search.get("trials") or []
        ]
        out += [
            "## Hyperparameter search",
            "",
            f"{len(search.get('trials') or [])} trial(s), {search['direction']} validation {search['metric']}; "
            f"sampler {search['sampler']}, pruner {search['pruner']}; {duration(search.get('seconds'))} in all. "
            f"This run trained with trial {best}'s values (3 significant figures); `best-spec.yaml` is the spec "
            "with them, its other lines as you wrote them.",
            "",
            table(["trial", "state", search["metric"]] + keys + ["time"], rows, "ll" + "r" * (len(keys) + 2)),
            "",
        ]
        caveat = search_caveat(search, (result.data_summary.get("rows") or {}).get("validation"))
        if caveat:
            out += [f"> **Warning:** {caveat}", ""]
    return out


def comparison_lines(summary: dict) -> list[str]:
    """The paired interval, per-class deltas, cross-validation and the gate verdict for the summary."""
    out = cross_validation_lines(summary.get("cross_validation"), (summary.get("headline") or {}).get("name"))
    comparison = summary.get("comparison")
    if comparison:
        if comparison.get("paired"):
            out += [
                f"**{comparison['metric']}**: Δ {comparison['delta']:+.4f}, 95% paired bootstrap interval "
                f"[{comparison['low']:+.4f}, {comparison['high']:+.4f}] ({comparison['resamples']} resamples of the "
                f"same {comparison['rows']} {comparison['split']} rows both runs predicted): "
                f"**{comparison['verdict']}**.",
                "",
            ]
        else:
            out += [
                f"**{comparison['metric']}**: no difference called, because {comparison['reason']}; "
                "a paired interval needs both runs to predict the same rows.",
                "",
            ]
    deltas = {label: d for label, d in (summary.get("per_class_deltas") or {}).items() if d}
    if deltas:
        rows = [
            [label, f"{d.get('precision', 0):+.4f}", f"{d.get('recall', 0):+.4f}", f"{d.get('f1', 0):+.4f}"]
            for label, d in deltas.items()
        ]
        out += [
            "Per-class change against the baseline:",
            "",
            table(["label", "Δ precision", "Δ recall", "Δ f1"], rows),
            "",
        ]
    gate = summary.get("gate")
    if gate:
        if gate["passed"]:
            out += [f"**Quality gate: passed** ({gate['metric']} {number(gate['value'])} on {gate['split']})."]
        else:
            out += ["**Quality gate: failed**: " + "; ".join(gate["reasons"]) + "."]
        out += [f"_{note}._" for note in gate.get("notes") or []] + [""]
    return out


def search_caveat(search: dict, validation_rows: int | None) -> str | None:
    """A warning when the search's choice may be noise: few trials for the keys searched, or a best
    trial that beats the runner-up by less than the metric's sampling error on the validation rows."""
    trials = [t for t in search.get("trials") or [] if t.get("state") == "complete" and t.get("value") is not None]
    keys = len(search.get("space") or {}) or 1
    reasons = []
    if len(trials) < 4 * keys:
        reasons.append(f"{len(trials)} complete trial(s) for {keys} searched key(s) (fewer than 4 per key)")
    if validation_rows and len(trials) >= 2:
        values = sorted((t["value"] for t in trials), reverse=search.get("direction") != "minimize")
        gap = abs(values[0] - values[1])
        noise = 1.0 / math.sqrt(validation_rows)  # ~2 standard errors of a proportion near 0.5
        if gap < noise:
            reasons.append(
                f"the best trial beats the next by {gap:.4f}, less than the sampling noise of a figure on "
                f"{validation_rows} validation rows (about ±{noise:.3f})"
            )
    if not reasons:
        return None
    return "the search's choice may be noise: " + "; ".join(reasons) + ". More trials or more validation rows help."
