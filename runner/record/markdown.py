"""Markdown pieces shared by the report, the model card and the pull-request summary."""

from __future__ import annotations

import re

from runner.spec.tasks import metric_items

SPLITS = ("validation", "test")
_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")  # a cell made inert (runner.record.render) has its pipes escaped


def number(value) -> str:
    """A figure as the records show it: a count in plain digits (1150, not 1,150: the tables stay machine-readable,
    and the sentences beside them say the same figure the same way), a metric to 4 decimals."""
    if value is None:
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 100 else f"{value:.4f}"
    return str(value)


def duration(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def table(header: list[str], rows: list[list], align: str = "") -> str:
    """A markdown table; `align` has one letter per column, l or r (default: first l, rest r)."""
    align = align or "l" + "r" * (len(header) - 1)
    cells = lambda row: "| " + " | ".join(_UNESCAPED_PIPE.sub(r"\\|", str(c)) for c in row) + " |"  # noqa: E731
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return "\n".join([cells(header), rule] + [cells(row) for row in rows])


def metrics_table(metrics: dict, headline: dict | None = None) -> str:
    by_split = {s: dict(metric_items(metrics.get(s))) for s in SPLITS if metric_items(metrics.get(s))}
    names = list(dict.fromkeys(name for values in by_split.values() for name in values))
    rows = [
        [f"**{name}**" if headline and headline.get("name") == name else name]
        + [number(values.get(name)) for values in by_split.values()]
        for name in names
    ]
    return table(["metric"] + list(by_split), rows) if rows else "No metrics were recorded."


def per_class_table(per_class: dict) -> str:
    rows = [
        [label, number(v.get("precision")), number(v.get("recall")), number(v.get("f1")), number(v.get("support"))]
        for label, v in per_class.items()
    ]
    return table(["label", "precision", "recall", "f1", "support"], rows)


def headline_text(metrics: dict) -> str:
    headline = metrics.get("headline") or {}
    if not isinstance(headline.get("value"), (int, float)):
        return ""
    rule = f" (decision: {headline['rule']})" if headline.get("rule") else ""
    return f"**{headline['name']} {number(headline['value'])}** on {headline.get('split', 'validation')}{rule}"
