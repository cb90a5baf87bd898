"""Data: read the files (or a Hub dataset), check the columns, map labels, split.

Everything here works on pandas frames and returns plain values, so each step is easy to test.
Row numbers in messages are the ones a person sees in an editor: for CSV the header is line 1.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from runner.console import warn
from runner.data.labels import ROW, encode_multi_labels, encode_regression_targets, encode_single_labels
from runner.data.textfiles import first_bad_byte, json_kind, json_place
from runner.errors import DataError, RunError
from runner.spec.sections import DataHub, DataSection
from runner.spec.tasks import MANY_CLASSES, NUMBER, Task

FORMATS_BY_SUFFIX = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl",
                     ".json": "json", ".parquet": "parquet", ".pq": "parquet"}
FLAT_ROW_HINT = 'a row is one flat object like {"text": ..., "label": ...}'


@dataclass
class PreparedData:
    """The splits as frames with columns text, [text_pair], label (an id, a multi-hot list or a float)."""

    splits: dict[str, pd.DataFrame]
    labels: list[str]
    summary: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Reading


def detect_format(path: Path, declared: str = "auto") -> str:
    if declared != "auto":
        return declared
    fmt = FORMATS_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"cannot tell the format of '{path.name}' from its extension",
                        "set data.format to csv, tsv, jsonl, json or parquet", str(path))
    return fmt


def read_table(path: Path, fmt: str = "auto", encoding: str = "utf-8", max_rows: int | None = None) -> pd.DataFrame:
    """Read one data file into a frame with a ROW column holding each row's line (or row) number."""
    path = Path(path)
    if path.is_dir():
        raise DataError("the data path is a folder, not a file", "point it at a CSV, TSV, JSONL, JSON or Parquet file",
                        str(path))
    if not path.exists():
        raise DataError("data file not found", "paths in a spec are relative to the spec file's folder", str(path))
    fmt = detect_format(path, fmt)
    try:
        # UTF-8 with a byte-order mark is UTF-8 (Excel and Notepad write one): read as pandas reads a CSV
        readable = "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding
        if fmt in ("csv", "tsv"):
            sep = "," if fmt == "csv" else "\t"
            frame = pd.read_csv(path, sep=sep, encoding=encoding, nrows=max_rows,
                                dtype=str, keep_default_na=False, na_values=[""], on_bad_lines="error")
            _refuse_repeated_header_names(path, sep, encoding, fmt)
            first_row = 2
        elif fmt == "jsonl":
            frame = _read_jsonl(path, readable, max_rows)
            first_row = 1
        elif fmt == "json":
            frame = pd.read_json(path, encoding=readable, dtype=False)
            _refuse_repeated_json_keys(path, readable)
            first_row = 1
        else:
            frame = pd.read_parquet(path)
            first_row = 1
    except UnicodeDecodeError:
        offset, line = first_bad_byte(path, encoding)  # the exception's offset is within a reader's buffer
        raise DataError(f"the file is not valid {encoding} text (byte {offset} cannot be decoded)",
                        "set data.encoding to the file's encoding (e.g. latin-1, cp1252, utf-16; `runner init FILE` "
                        "detects it) "
                        "or re-save it as UTF-8", f"{path}:{line}" if line else str(path)) from None
    except pd.errors.EmptyDataError:
        raise DataError("the file is empty", "add a header line and data rows", str(path)) from None
    except pd.errors.ParserError as exc:
        detail = str(exc).strip().splitlines()[-1]
        line = re.search(r"line (\d+)", detail)
        where = f"{path}:{line.group(1)}" if line else str(path)
        raise DataError(f"cannot parse the {fmt.upper()} file: {detail}",
                        "check quoting and the number of fields on that line (a text with a comma must be in double "
                        "quotes)", where) from None
    except (ValueError, RecursionError) as exc:
        raise DataError(f"cannot parse the {fmt.upper()} file: {str(exc).splitlines()[0].split(';')[0]}",
                        f"check that the file really is {fmt.upper()}",
                        json_place(path, str(exc), encoding) if fmt == "json" else str(path)) from None
    except LookupError:
        raise DataError(f"unknown encoding '{encoding}'",
                        "set data.encoding to a Python codec name such as utf-8 or latin-1", str(path)) from None
    except (OSError, ImportError) as exc:
        raise DataError(f"cannot read the file: {exc}", f"check that the file really is {fmt.upper()}",
                        str(path)) from None
    if max_rows is not None:
        frame = frame.head(max_rows)
    if len(frame) == 0:
        raise DataError("the file has no data rows", "add rows below the header", str(path))
    frame = frame.reset_index(drop=True)
    if fmt != "jsonl":  # JSONL rows carry their own line numbers (blank lines are skipped)
        frame[ROW] = np.arange(first_row, first_row + len(frame))
    return frame


def _read_jsonl(path: Path, encoding: str, max_rows: int | None) -> pd.DataFrame:
    import json

    records, numbers = [], []
    with open(path, encoding=encoding) as stream:
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line, object_pairs_hook=_object)
            except json.JSONDecodeError as exc:
                raise DataError(f"line {number} is not valid JSON: {exc.msg}",
                                "each line of a JSONL file must be one JSON object", f"{path}:{number}") from None
            except RecursionError:  # json recurses once per level: [[[[...]]]] 100,000 deep
                raise DataError(f"line {number} is nested too deeply to read", FLAT_ROW_HINT,
                                f"{path}:{number}") from None
            except ValueError as exc:  # an integer of thousands of digits
                raise DataError(f"line {number} holds a value that cannot be read ({str(exc).split(':')[0]})",
                                FLAT_ROW_HINT, f"{path}:{number}") from None
            if not isinstance(record, dict):
                raise DataError(f"line {number} is {json_kind(record)}, not a JSON object",
                                "each line must be an object like {\"text\": ..., \"label\": ...}", f"{path}:{number}")
            if isinstance(record, _Repeated):
                raise DataError(f"line {number} names the key '{record.repeated}' twice; only one of its values would "
                                "be read", "give each key once a line (rename one if both are needed)",
                                f"{path}:{number}")
            records.append(record)
            numbers.append(number)
            if max_rows is not None and len(records) >= max_rows:
                break
    if not records:
        raise DataError("the file has no data rows", "add one JSON object per line", str(path))
    frame = pd.DataFrame.from_records(records)
    frame[ROW] = numbers
    return frame


class _Repeated(dict):
    """A JSON object that named a key twice (`repeated`): json.loads would keep the last value silently."""

    repeated = ""


def _object(pairs: list) -> dict:
    """json.loads' object_pairs_hook: the object, marked when a key comes twice (at any depth; a row's own
    keys are checked, a nested object only matters as a value that is not a text or a class name)."""
    record = dict(pairs)
    if len(record) == len(pairs):
        return record
    seen: set = set()
    marked = _Repeated(record)
    marked.repeated = next(key for key, _ in pairs if key in seen or seen.add(key))
    return marked


def _refuse_repeated_json_keys(path: Path, encoding: str) -> None:
    """A .json file whose row (or top-level object) names a key twice: pandas keeps one value silently."""
    import json

    try:
        with open(path, encoding=encoding) as stream:
            document = json.load(stream, object_pairs_hook=_object)
    except (ValueError, RecursionError, OSError):  # pandas read it; what the json module cannot is left as read
        return
    rows = document if isinstance(document, list) else [document]
    for number, row in enumerate(rows, start=1):
        if isinstance(row, _Repeated):
            at = f" (row {number})" if isinstance(document, list) else ""
            raise DataError(f"the key '{row.repeated}' is named twice in one object{at}; only one value would be read",
                            "give each key once per object (rename one if both are needed)", str(path))


def _refuse_repeated_header_names(path: Path, sep: str, encoding: str, fmt: str) -> None:
    """A header that names a column twice (`text,label,text`): pandas renames the second to `text.1` and a run
    would read one of them silently. Empty names (a trailing comma, an index column) are left alone."""
    header = pd.read_csv(path, sep=sep, encoding=encoding, header=None, nrows=1, dtype=str, keep_default_na=False)
    names = header.iloc[0].tolist() if len(header) else []
    for index, name in enumerate(names):
        if name.strip() and name in names[:index]:
            first = names.index(name) + 1
            raise DataError(f"the header names column '{name}' twice (columns {first} and {index + 1})",
                            f"rename or remove one of them: each column of a {fmt.upper()} file needs its own name",
                            f"{path}:1")


def read_hub_split(hub: DataHub, split: str) -> pd.DataFrame:
    """One split of a Hub dataset, through `datasets.load_dataset` (uses the local cache when offline)."""
    import datasets

    try:
        dataset = datasets.load_dataset(hub.id, hub.config, split=split, revision=hub.revision)
    except (ConnectionError, OSError) as exc:
        raise RunError(f"cannot load Hub dataset '{hub.id}' (split {split}): {str(exc).splitlines()[0]}",
                       "check the network, or export the data to a local file and set data.train; a cached copy is "
                       "used with HF_DATASETS_OFFLINE=1") from None
    except ValueError as exc:
        raise DataError(f"Hub dataset '{hub.id}': {str(exc).splitlines()[0]}",
                        "check data.hub.config and the split names", "data.hub") from None
    except Exception as exc:  # datasets raises many types (DatasetNotFoundError, ...)
        raise DataError(f"cannot load Hub dataset '{hub.id}': {type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}",
                        "check data.hub.id, config, split and revision", "data.hub") from None
    frame = dataset.to_pandas()
    frame[ROW] = np.arange(len(frame))
    return frame


# ---------------------------------------------------------------------------------------------
# Columns and texts


def check_columns(frame: pd.DataFrame, columns: dict[str, str], source: str) -> None:
    available = [c for c in frame.columns if c != ROW]
    for key, column in columns.items():
        if column and column not in frame.columns:
            import difflib

            close = difflib.get_close_matches(column, [str(c) for c in available], n=1)
            names = ", ".join(map(str, available))
            hint = (f"did you mean '{close[0]}'? " if close else "") + f"set data.{key} to one of: {names}"
            raise DataError(f"column '{column}' (data.{key}) not found; the file has: {names}", hint, source)


def check_text_values(frame: pd.DataFrame, columns: dict[str, str], source: str) -> None:
    """A text column holds strings: a number, true/false, an array (a Parquet list<string>) or an object would
    be trained on as Python writes it ("['a', 'b']", "True"). Missing values (null, NaN, an empty cell) are
    clean_texts' to handle. CSV and TSV cells are all strings, so a number there stays a text."""
    for key, column in columns.items():
        if not column or column not in frame.columns:
            continue
        values = frame[column]
        wrong = ~(values.isna() | values.map(lambda value: isinstance(value, str)))
        if wrong.any():
            first = wrong.to_numpy().argmax()
            row, kind = frame[ROW].iloc[first], json_kind(values.iloc[first])
            others = int(wrong.sum()) - 1
            more = f" ({others} more row(s) like it)" if others else ""
            fix = ('write each text as a string ("42", not 42)' if kind == "a number" else
                   "join each row's parts into one string")
            raise DataError(f"the text column '{column}' (data.{key}) holds {kind} in row {row}, not a string{more}",
                            f"point data.{key} at the column that holds the texts, or {fix}", f"{source}:{row}")


def clean_texts(frame: pd.DataFrame, text_columns: list[str], policy: str, source: str) -> tuple[pd.DataFrame, int]:
    """Drop (or refuse) rows whose text is missing or blank. Returns the frame and how many were dropped."""
    empty = np.zeros(len(frame), dtype=bool)
    for column in text_columns:
        values = frame[column]
        blank = values.isna() | values.astype(str).str.strip().eq("")
        empty |= blank.to_numpy()
    count = int(empty.sum())
    if count and policy == "fail":
        rows = ", ".join(str(r) for r in frame.loc[empty, ROW].head(5))
        raise DataError(f"{count} row(s) have an empty or missing text (rows {rows})",
                        "fill or remove them, or set data.empty_text: drop", source)
    if count and count == len(frame):
        raise DataError("every row has an empty text",
                        f"check data.text_column ('{text_columns[0]}') names the text column", source)
    frame = frame.loc[~empty].reset_index(drop=True)
    for column in text_columns:
        frame[column] = frame[column].astype(str)
    return frame, count


# ---------------------------------------------------------------------------------------------
# Splitting


def split_validation(frame: pd.DataFrame, fraction: float, seed: int, stratify_by: pd.Series | None,
                     source: str = "") -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """Seeded split; stratified when every class has at least two rows. Returns (train, validation, note)."""
    from sklearn.model_selection import train_test_split

    n_validation = max(1, round(len(frame) * fraction))
    if len(frame) < 4 or len(frame) - n_validation < 2:
        raise DataError(f"only {len(frame)} usable row(s): too few to hold out a validation split",
                        "add rows, or give a separate data.validation_file", source)
    note = f"random {round((1 - fraction) * 100)}/{round(fraction * 100)} split, seed {seed}"
    stratify = None
    if stratify_by is not None:
        counts = stratify_by.value_counts()
        if counts.min() < 2:
            rare = ", ".join(str(k) for k in counts[counts < 2].index[:5])
            note += f" (not stratified: class {rare} has only one row)"
        elif n_validation < len(counts) or len(frame) - n_validation < len(counts):
            note += (f" (not stratified: a validation split of {n_validation} rows cannot hold all "
                     f"{len(counts)} classes)")
        else:
            stratify = stratify_by
            note = note.replace("random", "stratified")
    train, validation = train_test_split(frame, test_size=n_validation, random_state=seed, shuffle=True,
                                         stratify=stratify)
    return train.reset_index(drop=True), validation.reset_index(drop=True), note


# ---------------------------------------------------------------------------------------------
# The whole data step


def prepare_frame(
    frame: pd.DataFrame, data: DataSection, task: Task, labels: list[str] | None, source: str
) -> tuple[pd.DataFrame, list[str] | None, int]:
    """One table as the run uses it, read as the spec's data section says: columns checked, empty texts
    handled, targets encoded for `task`.

    Returns (text, [text_pair], label and source-row columns; the labels, as given or inferred; rows dropped)."""
    columns = {"text_column": data.text_column, "text_pair_column": data.text_pair_column,
               "label_column": data.label_column}
    check_columns(frame, columns, source)
    text_columns = [data.text_column] + ([data.text_pair_column] if data.text_pair_column else [])
    check_text_values(frame, {"text_column": data.text_column, "text_pair_column": data.text_pair_column},
                      source)
    frame, n_dropped = clean_texts(frame, text_columns, data.empty_text, source)
    if n_dropped:
        warn(f"dropped {n_dropped} row(s) with an empty text from {source}")
    if task.target == NUMBER:
        target = encode_regression_targets(frame, data.label_column, source)
    elif task.target == MANY_CLASSES:
        target, labels = encode_multi_labels(frame, data.label_column, labels, data.label_delimiter, source)
    else:
        target, labels = encode_single_labels(frame, data.label_column, labels, source, source)
    out = pd.DataFrame({"text": frame[data.text_column].to_numpy(), ROW: frame[ROW].to_numpy()})
    if data.text_pair_column:
        out["text_pair"] = frame[data.text_pair_column].to_numpy()
    out["label"] = list(target) if task.multi_label else target.to_numpy()
    return out, labels, n_dropped


def prepare_data(data: DataSection, task: Task, labels: list[str] | None, seed: int,
                 resolve: Callable[[str], Path]) -> PreparedData:
    """The splits as the data section says: read (`resolve`: a path in the spec to the file, `spec.resolve`),
    labels mapped (`labels`: the spec's own list, else found in the data), a validation split drawn with `seed`
    where the data has none."""

    raw: dict[str, pd.DataFrame] = {}
    sources: dict[str, str] = {}
    files: dict = {}
    if data.hub:
        hub = data.hub
        files["hub"] = {k: getattr(hub, k) for k in ("id", "config", "revision")}
        for name, split in (("train", hub.split), ("validation", hub.validation_split), ("test",
                                                                                               hub.test_split)):
            if split:
                raw[name] = read_hub_split(hub, split)
                if name == "train" and data.max_rows:
                    raw[name] = raw[name].head(data.max_rows)
                sources[name] = f"{hub.id}[{split}]"
    else:
        for name, key in (("train", "train"), ("validation", "validation_file"), ("test", "test_file")):
            if getattr(data, key):
                path = resolve(getattr(data, key))
                raw[name] = read_table(path, data.format, data.encoding,
                                       data.max_rows if name == "train" else None)
                sources[name] = str(path)
                files[name] = str(path.resolve())

    dropped = []
    splits: dict[str, pd.DataFrame] = {}
    for name, frame in raw.items():
        splits[name], labels, n_dropped = prepare_frame(frame, data, task, labels, sources[name])
        if n_dropped:
            dropped.append({"split": name, "reason": "empty or missing text", "rows": n_dropped})

    labels = labels or []
    if task.has_labels:
        present = {i for v in splits["train"]["label"] for i,
                   x in enumerate(v) if x} if task.multi_label else set(splits["train"]["label"])
        if len(present) < 2:
            only = labels[next(iter(present))] if present else "none"
            raise DataError(f"the training data has a single class ('{only}'); a classifier needs at least two",
                            "check data.label_column, or add rows of the other classes", sources["train"])

    note = "separate validation data"
    if "validation" not in splits:
        stratify_by = splits["train"]["label"] if (task.one_label_per_row and data.stratify) else None
        splits["train"], splits["validation"], note = split_validation(splits["train"], data.validation_fraction,
                                                                       seed, stratify_by, sources["train"])

    summary = {
        "rows": {name: len(frame) for name, frame in splits.items()},
        "label_distribution": {name: label_distribution(frame["label"], labels, task.target) for name,
                               frame in splits.items()},
        "dropped": dropped,
        "split_note": note,
        "sources": sources,
    }
    return PreparedData(splits=splits, labels=labels, summary=summary, files=files)


def label_distribution(values: pd.Series, labels: list[str], target: str) -> dict:
    if target == NUMBER:
        array = values.to_numpy(dtype=float)
        return {"mean": float(array.mean()), "std": float(array.std()), "min": float(array.min()),
                "max": float(array.max())}
    if target == MANY_CLASSES:
        totals = np.asarray(list(values), dtype=float).sum(axis=0)
        return {label: int(totals[i]) for i, label in enumerate(labels)}
    counts = values.value_counts()
    return {label: int(counts.get(i, 0)) for i, label in enumerate(labels)}
