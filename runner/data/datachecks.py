"""Checks of the data at load time: duplicate texts inside the training split, texts shared between
training and validation/test (leakage: the model is scored on rows it learned), very short and very
long texts, and classes with too few training rows to learn. The label distribution per split is in
the data summary already.

Exact duplicates compare the text (and its pair) as written; normalised ones after case folding,
removing punctuation and collapsing spaces ("Great movie!" == "great  movie"). Vectorised pandas:
fine for a million rows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from runner.spec.sections import PredictSection
from runner.spec.tasks import Task

MIN_ROWS = 10  # fewer training rows than this for a class: warned
SHORT_WORDS = 1  # at most this many words: a very short text
LONG_FACTOR, LONG_MIN_WORDS = 5, 50  # more words than max(5 x the median, 50): a very long text
EXAMPLES = 5
SHOWN_CHARS = 160


def _key(frame: pd.DataFrame) -> pd.Series:
    key = frame["text"].astype(str)
    if "text_pair" in frame.columns:
        key = key + "\t" + frame["text_pair"].astype(str)
    return key


def _normalised(key: pd.Series) -> pd.Series:
    return key.str.casefold().str.replace(r"[^\w\s]+", " ", regex=True).str.split().str.join(" ")


def _shown(text: str) -> str:
    text = str(text).replace("\t", " | ")
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def _label_text(value, labels: list[str]) -> str:
    if isinstance(value, (list, tuple, np.ndarray)):
        return "+".join(labels[i] for i, x in enumerate(list(value)) if x) or "(none)"
    if labels and float(value).is_integer() and 0 <= int(value) < len(labels):
        return labels[int(value)]
    return str(value)


def duplicates(frame: pd.DataFrame, labels: list[str]) -> dict:
    """Repeated texts inside one split: rows that repeat an earlier row (exact and normalised),
    groups whose copies carry different labels, and the largest groups as examples."""
    key = _key(frame)
    normal = _normalised(key)
    label_text = frame["label"].map(lambda v: _label_text(v, labels))
    groups = pd.DataFrame({"key": normal, "label": label_text, "row": frame["__row__"], "text": key})
    repeated = groups[normal.duplicated(keep=False)]
    examples, conflicting = [], 0
    if len(repeated):
        by_key = repeated.groupby("key", sort=False)
        sizes = by_key.size().sort_values(ascending=False, kind="stable")
        conflicting = int((by_key["label"].nunique() > 1).sum())
        for name in sizes.index[:EXAMPLES]:
            group = by_key.get_group(name)
            examples.append(
                {
                    "text": _shown(group["text"].iloc[0]),
                    "copies": int(len(group)),
                    "rows": [int(r) for r in group["row"].head(10)],
                    "labels": sorted(set(group["label"])),
                }
            )
    return {
        "exact": int(key.duplicated().sum()),
        "normalized": int(normal.duplicated().sum()),
        "conflicting_labels": conflicting,
        "examples": examples,
    }


def overlap(train: pd.DataFrame, other: pd.DataFrame) -> dict:
    """Rows of `other` whose text is also in training: exactly, and once normalised."""
    train_key, other_key = _key(train), _key(other)
    exact = other_key.isin(set(train_key))
    normal = _normalised(other_key).isin(set(_normalised(train_key)))
    examples = [
        {"text": _shown(text), "row": int(row)}
        for text, row in zip(other_key[normal].head(EXAMPLES), other["__row__"][normal])
    ]
    return {"exact": int(exact.sum()), "normalized": int(normal.sum()), "rows": len(other), "examples": examples}


def lengths(frame: pd.DataFrame) -> dict:
    words = frame["text"].astype(str).str.split().str.len()
    median = float(words.median()) if len(words) else 0.0
    long_at = max(LONG_FACTOR * median, LONG_MIN_WORDS)
    short, long = words <= SHORT_WORDS, words > long_at
    return {
        "median_words": median,
        "short": {
            "rows": int(short.sum()),
            "max_words": SHORT_WORDS,
            "examples": [_shown(t) for t in frame["text"][short].head(EXAMPLES)],
        },
        "long": {
            "rows": int(long.sum()),
            "min_words": int(long_at) + 1,
            "examples": [_shown(t) for t in frame["text"][long].head(EXAMPLES)],
        },
    }


def rare_classes(distribution: dict) -> list[dict]:
    """Classes with fewer than MIN_ROWS training rows (none at all included)."""
    return [
        {"label": name, "rows": int(n)}
        for name, n in distribution.items()
        if isinstance(n, (int, float)) and n < MIN_ROWS
    ]


# A class mix differs "beyond sampling noise" when a chi-square test of homogeneity (training against the split)
# gives p below SHIFT_P and the proportions differ by at least SHIFT_TV in total variation (half the summed
# absolute differences): the first rules out chance on small splits, the second a negligible shift on large ones.
SHIFT_P = 0.001
SHIFT_TV = 0.05


def class_mix(distributions: dict) -> dict:
    """Each evaluation split's class mix against training's (single-label classification): proportions, total
    variation, chi-square p-value, and whether it is a shift. {} when there is nothing to compare."""
    from scipy.stats import chi2_contingency

    train = distributions.get("train") or {}
    labels = [label for label, n in train.items() if isinstance(n, (int, float))]
    out = {}
    for split in ("validation", "test"):
        other = distributions.get(split) or {}
        if not other or not labels:
            continue
        counts = [[int(train.get(label, 0)) for label in labels], [int(other.get(label, 0)) for label in labels]]
        totals = [sum(row) for row in counts]
        if min(totals) == 0:
            continue
        kept = [i for i in range(len(labels)) if counts[0][i] + counts[1][i] > 0]
        proportions = {labels[i]: [counts[0][i] / totals[0], counts[1][i] / totals[1]] for i in range(len(labels))}
        tv = 0.5 * sum(abs(a - b) for a, b in proportions.values())
        p_value = 1.0
        if len(kept) > 1:
            p_value = float(chi2_contingency([[row[i] for i in kept] for row in counts])[1])
        out[split] = {"rows": totals[1], "proportions": {k: [round(a, 4), round(b, 4)] for k, (a, b) in
                                                         proportions.items()},
                      "total_variation": round(tv, 4), "p_value": p_value,
                      "shift": bool(p_value < SHIFT_P and tv >= SHIFT_TV)}
    return out


def check(splits: dict, labels: list[str], task, train_distribution: dict | None = None,
          distributions: dict | None = None) -> dict:
    """All checks, and one warning line for each finding worth a person's attention."""
    train = splits["train"]
    out = {"duplicates_in_train": duplicates(train, labels), "overlap": {}, "lengths": lengths(train)}
    for split in ("validation", "test"):
        if split in splits:
            out["overlap"][split] = overlap(train, splits[split])
    out["rare_classes"] = rare_classes(train_distribution or {}) if task.has_labels else []
    single_label = task.has_labels and not task.multi_label
    out["class_mix"] = class_mix(distributions or {}) if single_label else {}
    out["min_rows"] = MIN_ROWS
    out["warnings"] = warnings(out)
    return out


def warnings(checks: dict) -> list[str]:
    out = []
    dup = checks["duplicates_in_train"]
    if dup["normalized"]:
        line = f"{dup['normalized']} training row(s) repeat an earlier training text ({dup['exact']} exactly)"
        if dup["conflicting_labels"]:
            line += f"; {dup['conflicting_labels']} repeated text(s) carry different labels"
        out.append(line)
    for split, found in checks["overlap"].items():
        if found["normalized"]:
            out.append(
                f"{found['normalized']} of {found['rows']} {split} row(s) also appear in training "
                f"({found['exact']} exactly): their {split} scores are inflated"
            )
    for kind in ("short", "long"):
        found = checks["lengths"][kind]
        if found["rows"]:
            bound = (
                f"at most {found['max_words']} word" if kind == "short" else f"more than {found['min_words'] - 1} words"
            )
            out.append(f"{found['rows']} training text(s) are very {kind} ({bound})")
    for split, mix in (checks.get("class_mix") or {}).items():
        absent = [label for label, (a, b) in mix["proportions"].items() if a > 0 and b == 0]
        if absent:
            names = ", ".join(map(repr, absent))
            out.append(
                f"the {split} split has no row of {names} ({len(mix['proportions']) - len(absent)} of "
                f"{len(mix['proportions'])} classes present): its per-class figures there are 0, macro averages on "
                f"{split} count {'it' if len(absent) == 1 else 'them'} as 0, and ROC AUC is not computed; give "
                f"{split} rows of every class"
            )
        if mix["shift"]:
            moved = sorted(mix["proportions"].items(), key=lambda item: -abs(item[1][1] - item[1][0]))[:3]
            shown = ", ".join(f"{label} {a:.1%} in training, {b:.1%} in {split}" for label, (a, b) in moved)
            p_value = "p < 0.001" if mix["p_value"] < 0.001 else f"p = {mix['p_value']:.3f}"
            out.append(
                f"the class mix of {split} differs from training's (total variation {mix['total_variation']:.2f}, "
                f"chi-square {p_value}): {shown}. Calibration and tuned thresholds are fitted on validation, "
                f"drawn like training; on {split}'s mix they may not hold (its ECE and F1 can be worse)"
            )
    for rare in checks["rare_classes"]:
        out.append(
            f"class '{rare['label']}' has {rare['rows']} training row(s), too few to learn reliably "
            f"(fewer than {checks['min_rows']})"
        )
    return out


def check_prepared(predict: PredictSection, task: Task, data, where: Callable[..., str]) -> dict:
    """The checks of a run's prepared data (for its summary's `checks`), each warning said. A tuned
    threshold asked of data with more than two classes is refused here (labels may be inferred), at the
    place `where` gives (`spec.where`)."""
    from runner.console import warn
    from runner.errors import SpecError

    if data.labels and predict.tune_thresholds and not task.can_tune_thresholds(len(data.labels)):
        raise SpecError(
            f"predict.tune_thresholds is for multi-label or two classes; the data has {len(data.labels)} classes",
            "remove predict.tune_thresholds (with more classes the prediction is the most probable class)",
            where("predict", "tune_thresholds"),
        )
    from runner.evaluate.classprior import check_data

    check_data(predict, data.labels, data.splits, where)  # predict.class_prior against the classes found (#34)
    distributions = data.summary["label_distribution"] if task.has_labels else {}
    checks = check(data.splits, data.labels, task, distributions.get("train"), distributions)
    for line in checks["warnings"]:
        warn(line)
    return checks
