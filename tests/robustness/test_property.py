"""Property tests: the spec loader and the data loader, fed random documents and random tables,
return a result or raise the runner's own error (a clean message, exit 2), never anything else."""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from runner.errors import RunnerError, SpecError
from runner.spec.document import Spec, load_schema, load_spec, load_spec_text

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def schema_keys(schema: dict) -> set[str]:
    keys = set()
    for name, prop in schema.get("properties", {}).items():
        keys.add(name)
        keys |= schema_keys(prop)
    return keys


AUTOTRAIN_KEYS = [
    "base_model",
    "project_name",
    "params",
    "column_mapping",
    "text_column",
    "target_column",
    "path",
    "train_split",
    "valid_split",
    "lr",
    "epochs",
    "max_seq_length",
    "push_to_hub",
    "username",
    "token",
    "backend",
]
KEYS = sorted(schema_keys(load_schema())) + AUTOTRAIN_KEYS
ENUM_WORDS = [
    "single_label_classification",
    "multi_label_classification",
    "regression",
    "text_pair_classification",
    "text_classification",
    "steps",
    "epoch",
    "no",
    "auto",
    "csv",
    "jsonl",
    "parquet",
    "fp16",
    "bf16",
    "cpu",
    "f1_macro",
    "roc_auc",
    "mse",
    "drop",
    "fail",
    "data/train.csv",
    "a/b",
    "./model",
    "~",
    "/",
    "..",
    "package:x",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(ENUM_WORDS),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)
documents = st.one_of(
    values,
    st.dictionaries(keys, values, max_size=8),
    st.fixed_dictionaries(
        {"version": st.one_of(st.just(1), scalars), "data": values},
        optional={k: values for k in KEYS[:40] if k not in ("version", "data")},
    ),
)


def dump(document) -> str:
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


def base_spec() -> dict:
    return {
        "version": 1,
        "name": "prop",
        "data": {"train": "data/train.csv"},
        "model": {"name": "bert-base-uncased", "max_length": 32},
        "train": {"epochs": 1, "batch_size": 8, "early_stopping_patience": None},
        "output": {"dir": "run"},
    }


def leaf_paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + (key,)
            yield from leaf_paths(value, prefix + (key,))


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        (root / "data").mkdir()
        (root / "data" / "train.csv").write_text("text,label\na,b\n", encoding="utf-8")
        yield root


def load_or_error(load):
    """Call the loader: a result or a RunnerError with a message and a hint is fine; anything else fails."""
    try:
        return load()
    except RunnerError as error:
        lines = error.lines()
        assert lines and lines[0].startswith("error: ") and all("\n" not in line for line in lines), lines
        return error


@SETTINGS
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200).map(lambda b: b.decode("latin-1"))))
def test_any_text_is_a_spec_or_a_clean_error(text, folder):
    result = load_or_error(lambda: load_spec_text(text, folder / "spec.yaml"))
    assert isinstance(result, (Spec, SpecError))


@SETTINGS
@given(document=documents, check_files=st.booleans())
def test_any_yaml_document_is_a_spec_or_a_clean_error(document, check_files, folder):
    result = load_or_error(lambda: load_spec_text(dump(document), folder / "spec.yaml", check_files=check_files))
    assert isinstance(result, (Spec, SpecError))


@SETTINGS
@given(data=st.data())
def test_a_spec_with_one_value_replaced_is_a_spec_or_a_clean_error(data, folder):
    document = base_spec()
    path = data.draw(st.sampled_from(list(leaf_paths(document))))
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = data.draw(values)
    overrides = data.draw(
        st.lists(
            st.builds(
                lambda k, v: f"{k}={v}",
                st.sampled_from(["train.epochs", "model", "data.train", "labels", "x.y", ""]),
                st.text(max_size=10),
            ),
            max_size=2,
        )
    )
    result = load_or_error(lambda: load_spec_text(dump(document), folder / "spec.yaml", overrides))
    assert isinstance(result, (Spec, SpecError))


def test_the_base_spec_of_these_properties_is_valid(folder):
    assert isinstance(load_spec_text(dump(base_spec()), folder / "spec.yaml"), Spec)


# ---------------------------------------------------------------------------------------------
# The data loader


cells = st.one_of(
    st.none(),
    st.just(float("nan")),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=12),
    st.sampled_from(["pos", "neg", "neu", "", " ", "1", "0", "pos,neg", "NaN", "null", '"', "a\nb", "a,b"]),
)
wild_rows = st.fixed_dictionaries(
    {"text": cells, "label": st.one_of(cells, st.lists(st.sampled_from(["pos", "neg", "neu", ""]), max_size=3))},
    optional={"extra": cells, "pair": cells},
)
words = st.lists(
    st.sampled_from(["a", "good", "bad", "day", "très", "的", "x" * 40, ",", '"quoted"', "tab\there"]),
    min_size=1,
    max_size=6,
).map(" ".join)
GOOD_LABELS = {
    "single_label_classification": st.sampled_from(["pos", "neg", "neu"]),
    "text_pair_classification": st.sampled_from(["pos", "neg"]),
    "multi_label_classification": st.one_of(
        st.lists(st.sampled_from(["pos", "neg", "neu"]), max_size=3, unique=True),
        st.sampled_from(["pos", "neg,pos", "neu|pos", ""]),
    ),
    "regression": st.one_of(st.floats(-10, 10, width=32), st.integers(-3, 3)),
}
TASKS = list(GOOD_LABELS)


def table(task: str):
    """Mostly plausible rows for the task, with a few wild ones mixed in."""
    good = st.fixed_dictionaries({"text": words, "label": GOOD_LABELS[task], "pair": words})
    return st.tuples(st.lists(good, max_size=40), st.lists(wild_rows, max_size=3), st.randoms()).map(
        lambda parts: parts[2].sample(parts[0] + parts[1], len(parts[0]) + len(parts[1]))
    )


def write_frame(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif fmt == "jsonl":
        path.write_text(
            "".join(json.dumps(record, default=str) + "\n" for record in frame.to_dict(orient="records")),
            encoding="utf-8",
        )
    elif fmt == "json":
        frame.to_json(path, orient="records", default_handler=str)
    else:
        frame.to_parquet(path)


def data_spec(root: Path, train: str, task: str, labels, empty_text: str, extra: dict) -> Spec:
    document = base_spec()
    document["task"] = task
    document["data"] = {"train": train, "empty_text": empty_text, **extra}
    if task == "text_pair_classification":
        document["data"]["text_pair_column"] = "pair"
    if labels and task != "regression":
        document["labels"] = labels
    if task == "multi_label_classification":
        document["train"]["metric_for_best_model"] = "f1_micro"
    if task == "regression":
        document["train"]["metric_for_best_model"] = "mse"
    (root / "spec.yaml").write_text(dump(document), encoding="utf-8")
    return load_spec(root / "spec.yaml")


@SETTINGS
@given(
    data=st.data(),
    fmt=st.sampled_from(["csv", "tsv", "jsonl", "json", "parquet"]),
    task=st.sampled_from(TASKS),
    labels=st.one_of(st.none(), st.just(["neg", "pos"]), st.just(["neg", "neu", "pos"])),
    empty_text=st.sampled_from(["drop", "fail"]),
    extra=st.fixed_dictionaries(
        {},
        optional={
            "max_rows": st.integers(1, 40),
            "validation_fraction": st.sampled_from([0.1, 0.5, 0.9]),
            "stratify": st.booleans(),
            "label_delimiter": st.sampled_from([",", "|"]),
        },
    ),
)
def test_any_table_is_prepared_or_a_clean_error(data, fmt, task, labels, empty_text, extra):
    from runner.data.prepare import prepare_data

    records = data.draw(table(task))
    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        frame = pd.DataFrame.from_records(records) if records else pd.DataFrame({"text": [], "label": []})
        try:
            write_frame(frame, root / f"train.{fmt}", fmt)
        except (
            ValueError,
            TypeError,
            OverflowError,
            ImportError,
        ) as exc:  # e.g. pyarrow refuses a column of mixed types
            event(f"not writable as {fmt}: {type(exc).__name__}")
            return
        spec = data_spec(root, f"train.{fmt}", task, labels, empty_text, extra)
        result = load_or_error(lambda: prepare_data(spec.data, spec.task, spec.labels, spec.seed, spec.resolve))
    event(type(result).__name__ + (f": {result.message[:40]}" if isinstance(result, RunnerError) else ""))
    if isinstance(result, RunnerError):
        return
    splits = result.splits
    assert set(splits) >= {"train", "validation"} and len(splits["train"]) > 0 and len(splits["validation"]) > 0
    for split in splits.values():
        assert split["text"].map(lambda t: isinstance(t, str) and t.strip() != "").all()
        if task == "regression":
            assert split["label"].map(lambda v: math.isfinite(v)).all()
        elif task == "multi_label_classification":
            assert split["label"].map(len).eq(len(result.labels)).all()
        else:
            assert split["label"].between(0, len(result.labels) - 1).all()


@SETTINGS
@given(
    content=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda t: t.encode("utf-8"))),
    suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".json", ".parquet"]),
    encoding=st.sampled_from(["utf-8", "latin-1", "utf-16", "ascii"]),
)
def test_any_bytes_in_a_data_file_are_read_or_a_clean_error(content, suffix, encoding):
    from runner.data.prepare import read_table

    with tempfile.TemporaryDirectory() as name:
        path = Path(name) / f"train{suffix}"
        path.write_bytes(content)
        result = load_or_error(lambda: read_table(path, "auto", encoding))
    event(type(result).__name__ + (f": {result.message[:30]}" if isinstance(result, RunnerError) else ""))
    assert isinstance(result, (pd.DataFrame, RunnerError))
