"""Labels: the label column turned into class ids (one per row, or a multi-hot row) or numbers,
with the checks that keep a class list honest: mixed kinds, values that are not class names,
labels that differ only in case or spaces, and free text in a label column."""

from __future__ import annotations

import math
import re
import unicodedata

import numpy as np
import pandas as pd

from runner.console import warn
from runner.errors import DataError

ROW = "__row__"  # the column holding each row's source line, for messages


def _label_strings(values: pd.Series, source: str, rows: pd.Series | None = None, inferring: bool = False) -> pd.Series:
    """Class names as strings; a column that mixes numbers and words is an error.

    CSV and TSV cells are all strings, so while the labels are inferred a cell like "1" among class
    names counts as a number too. `rows` holds each value's row number for the message.
    """
    rows = rows if rows is not None else pd.Series(np.arange(len(values)), index=values.index)
    missing = values.isna() | values.astype(str).str.strip().eq("")
    if missing.any():
        at = rows[missing].head(5).tolist()
        raise DataError(f"{int(missing.sum())} row(s) have no label (rows {', '.join(map(str, at))})",
                        "fill in the label or remove those rows", f"{source}:{at[0]}")

    def kind(value) -> str:
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            return "number"
        if inferring and isinstance(value, str) and re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", value):
            return "number"
        return "text" if isinstance(value, str) else type(value).__name__

    kinds = values.map(kind)
    structured = kinds.isin(NOT_A_CLASS)
    if structured.any():
        first = kinds.index[structured][0]
        what = NOT_A_CLASS[kinds[first]]
        raise DataError(
            f"{int(structured.sum())} row(s) have a label that is {what}, not a class name (first: row {rows[first]})",
            "a single-label task needs one class name per row; several labels per row: "
            "task: multi_label_classification; true/false: write them as class names in quotes",
            f"{source}:{rows[first]}",
        )
    if kinds.nunique() > 1 and (kinds == "number").any():
        rare = kinds.value_counts().index[-1]
        first = kinds.index[kinds == rare][0]
        other = kinds.index[kinds != rare][0]
        raise DataError(f"the label column mixes numbers and {', '.join(sorted(set(kinds) - {'number'}))}: "
                        f"row {rows[first]} has {_shown(values[first])}, row {rows[other]} has {_shown(values[other])}",
                        "use one kind of label throughout (all class names, or all class ids)",
                        f"{source}:{rows[first]}")
    names = values.map(_label_to_string)
    report_label_variants(values[kinds == "text"], source)
    return names


NOT_A_CLASS = {"list": "an array", "tuple": "an array", "ndarray": "an array", "dict": "an object",
               "bool": "true or false", "bool_": "true or false"}  # JSON's words, as in textfiles.json_kind


def report_label_variants(raw: pd.Series, source: str) -> list[str]:
    """Warn about class names that differ only in case or surrounding spaces ('Pos', 'pos', ' pos'):
    spaces are removed, so ' pos' joins 'pos', but 'Pos' stays a class of its own. Returns the lines."""
    counts = raw.astype(str).value_counts()
    groups: dict[str, list] = {}
    for value, count in counts.items():
        groups.setdefault(value.strip().casefold(), []).append((value, int(count)))
    lines = []
    for forms in groups.values():
        if len(forms) > 1:
            shown = ", ".join(f"{value!r} ({count} rows)" for value, count in sorted(forms))
            classes = sorted({value.strip() for value, _ in forms})
            lines.append(f"labels that differ only in case or surrounding spaces in {source}: {shown}; "
                         f"they become {len(classes)} class(es): {', '.join(classes)}. "
                         "Fix the data if they are the same class")
    for line in lines:
        warn(line)
    return lines


def looks(name: str) -> str:
    """What a label looks like: NFKC-normalised (a no-break space is a space, `ﬁ` is `fi`, an accent
    composed or not is the same), without format characters (zero-width spaces and joiners, direction marks)."""
    return "".join(c for c in unicodedata.normalize("NFKC", name) if unicodedata.category(c) != "Cf")


def code_points(name: str) -> str:
    """A label quoted with every character outside printable ASCII as its code point: 'neg\\u200b'."""
    return "'" + "".join(c if " " <= c <= "~" and c not in "'\\" else f"\\u{ord(c):04x}" if ord(c) <= 0xFFFF
                         else f"\\U{ord(c):08x}" for c in name) + "'"


def check_look_alike_labels(labels, names: pd.Series, rows: pd.Series, source: str) -> None:
    """DataError when two different labels look the same (looks): they would train as two classes and show as
    one word. `labels`: the class names (given and found); `names`, `rows`: each row's label and its row."""
    seen: dict[str, str] = {}
    for label in dict.fromkeys(labels):
        twin = seen.setdefault(looks(label), label)
        if twin == label:
            continue
        first, second = sorted((twin, label), key=lambda name: (name != looks(name), name))
        at = rows[names.eq(second).to_numpy()].head(1).tolist()
        raise DataError(
            f"labels {code_points(first)} and {code_points(second)} look the same but are different classes "
            "(they differ only in invisible characters, spaces or Unicode form)",
            "write the label one way in every row (and in `labels:`): remove the invisible characters and "
            "no-break spaces, and save the file in one Unicode form (NFC)",
            f"{source}:{at[0]}" if at else source,
        )


def _shown(value) -> str:
    return repr(value) if isinstance(value, str) else str(value)


def _label_to_string(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _same_number(name: str, labels: list[str]) -> str:
    """The class name that is the same number as `name` ("1" for "1.0"), else `name` itself."""
    try:
        value = float(name)
    except ValueError:
        return name
    for label in labels:
        try:
            if float(label) == value:
                return label
        except ValueError:
            continue
    return name


def infer_labels(values) -> list[str]:
    """Sorted class names; numbers sort as numbers ("2" before "10")."""
    unique = sorted(set(values))
    if all(re.fullmatch(r"-?\d+", v) for v in unique):
        return sorted(unique, key=int)
    return unique


def encode_single_labels(frame: pd.DataFrame, column: str, labels: list[str] | None, source: str,
                         row_source: str) -> tuple[pd.Series, list[str]]:
    names = _label_strings(frame[column], source, frame[ROW], inferring=labels is None)
    if labels is None:
        labels = infer_labels(names)
        if len(labels) > 100 and len(labels) > 0.5 * len(names):
            raise DataError(f"the label column '{column}' has {len(labels)} distinct values in {len(names)} rows; it "
                            "looks like free text",
                            "check data.label_column, and that texts with commas are quoted in the CSV", source)
    check_look_alike_labels([*labels, *names.unique()], names, frame[ROW], source)
    index = {name: i for i, name in enumerate(labels)}
    names = names.map(lambda name: name if name in index else _same_number(name, labels))  # "1.0" is 1.0 is "1"
    unknown = ~names.isin(index)
    if unknown.any():
        bad = frame.loc[unknown, ROW].head(5).tolist()
        values = names[unknown].unique()[:5].tolist()
        raise DataError(f"{int(unknown.sum())} row(s) have labels outside the spec's labels: "
                        f"{', '.join(map(repr, values))} (rows {', '.join(map(str, bad))})",
                        f"add them to `labels:` or fix the rows; allowed: {', '.join(labels)}", row_source)
    return names.map(index).astype("int64"), labels


def encode_multi_labels(frame: pd.DataFrame, column: str, labels: list[str] | None, delimiter: str,
                        source: str) -> tuple[pd.Series, list[str]]:
    def split(value) -> list[str]:
        if isinstance(value, (list, tuple, np.ndarray)):
            return [str(v).strip() for v in value if str(v).strip()]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return []
        return [part.strip() for part in str(value).split(delimiter) if part.strip()]

    lists = frame[column].map(split)
    if labels is None:
        labels = infer_labels({name for names in lists for name in names})
    first_row = {}
    for row, names in zip(frame[ROW], lists):
        for name in names:
            first_row.setdefault(name, row)
    check_look_alike_labels([*labels, *first_row], pd.Series(list(first_row)), pd.Series(list(first_row.values())),
                            source)
    index = {name: i for i, name in enumerate(labels)}
    unknown_rows = [row for row, names in zip(frame[ROW], lists) if any(n not in index for n in names)]
    if unknown_rows:
        names = sorted({n for names in lists for n in names if n not in index})[:5]
        raise DataError(f"{len(unknown_rows)} row(s) have labels outside the spec's labels: "
                        f"{', '.join(map(repr, names))} (rows {', '.join(map(str, unknown_rows[:5]))})",
                        f"add them to `labels:`; allowed: {', '.join(labels)}", source)

    def multi_hot(names: list[str]) -> list[float]:
        vector = [0.0] * len(labels)
        for name in names:
            vector[index[name]] = 1.0
        return vector

    return lists.map(multi_hot), labels


def encode_regression_targets(frame: pd.DataFrame, column: str, source: str) -> pd.Series:
    numbers = pd.to_numeric(frame[column], errors="coerce")
    bad = numbers.isna() | ~np.isfinite(numbers.fillna(0))
    if bad.any():
        rows = frame.loc[bad, ROW].head(5).tolist()
        listed = ", ".join(map(str, rows))
        raise DataError(f"{int(bad.sum())} row(s) have a target that is not a number (rows {listed})",
                        "regression needs a number in the label column of every row", source)
    return numbers.astype("float32")
