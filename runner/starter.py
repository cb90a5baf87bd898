"""`runner init DATA_FILE`: a starter spec with the text and label columns guessed from the data."""

from __future__ import annotations

import os
from pathlib import Path

from runner.data import ROW, read_table
from runner.errors import DataError

TEXT_NAMES = ("text", "sentence", "review", "content", "body", "comment", "tweet", "message", "document", "question")
LABEL_NAMES = ("label", "labels", "target", "class", "category", "sentiment", "emotion", "intent", "y")


def guess_columns(frame) -> tuple[str, str]:
    """The text column: a known name, else the column with the longest strings. The label column:
    a known name, else the column with the fewest distinct values."""
    columns = [c for c in frame.columns if c != ROW]
    if len(columns) < 2:
        raise DataError(f"the file has {len(columns)} column(s); a labelled dataset needs a text and a label column", "add a label column")
    lowered = {str(c).lower(): c for c in columns}
    text = next((lowered[n] for n in TEXT_NAMES if n in lowered), None)
    if text is None:
        text = max(columns, key=lambda c: frame[c].astype(str).str.len().mean())
    rest = [c for c in columns if c != text]
    label = next((lowered[n] for n in LABEL_NAMES if n in lowered and lowered[n] != text), None)
    if label is None:
        label = min(rest, key=lambda c: frame[c].nunique())
    return str(text), str(label)


def starter_spec(data_file: Path, model: str, spec_path: Path | None = None) -> str:
    frame = read_table(Path(data_file), max_rows=5000)
    text, label = guess_columns(frame)
    n_labels = frame[label].nunique()
    spec_dir = (spec_path.parent if spec_path else Path.cwd()).resolve()
    relative = os.path.relpath(Path(data_file).resolve(), spec_dir)
    schema = os.path.relpath(Path(__file__).resolve().parent / "schemas" / "spec-v1.schema.json", spec_dir)
    name = Path(data_file).stem.replace(" ", "-")
    return f"""# yaml-language-server: $schema={schema}
# Starter spec written by `runner init`. Check it with `runner validate`, train with `runner run`.
version: 1
name: {name}
task: single_label_classification
seed: 42

data:
  train: {relative}
  text_column: {text}     # guessed: the text to classify
  label_column: {label}    # guessed: {n_labels} distinct values in the first {len(frame)} rows
  validation_fraction: 0.2

model:
  name: {model}
  max_length: 128

# Uncomment for LoRA instead of full fine-tuning:
# lora:
#   r: 8
#   alpha: 16

train:
  epochs: 3
  learning_rate: 5.0e-5
  batch_size: 16
  early_stopping_patience: 2

hub:
  push: false
  # repo_id: your-name/{name}
"""
