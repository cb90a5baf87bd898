"""The tokenization cache: an entry is used only when its recorded sha256 sums check out. A
truncated, emptied, edited (labels changed), missing or foreign entry is discarded and rebuilt with a
warning, never trusted and never fatal; the temporary `runner-tokenized-*` fallback is removed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import labelled_rows, run_cli, tiny_spec_text, write_csv, write_spec


@pytest.fixture
def splits():
    rows = labelled_rows(per_label=10)
    frame = pd.DataFrame({"text": [r["text"] for r in rows], "label": [int(r["label"] == "pos") for r in rows]})
    return {"train": frame.iloc[:15].reset_index(drop=True), "validation": frame.iloc[15:].reset_index(drop=True)}


@pytest.fixture
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def labels_of(tokenized) -> dict:
    return {name: np.asarray(ds["labels"]).tolist() for name, ds in tokenized.items()}


def _edit_labels(path):
    import pyarrow as pa

    with pa.OSFile(str(path), "rb") as source:
        table = pa.ipc.open_stream(source).read_all()
    flipped = pa.array([1 - v for v in table.column("labels").to_pylist()], pa.int64())
    table = table.set_column(table.schema.get_field_index("labels"), "labels", flipped)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)


DAMAGE = {
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "empty": lambda p: p.write_bytes(b""),
    "edited-labels": _edit_labels,
    "missing": lambda p: p.unlink(),
    "foreign-record": lambda p: (p.parent / "runner-cache.json").write_text(json.dumps({"key": "other", "format": 1})),
    "no-record": lambda p: (p.parent / "runner-cache.json").unlink(),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_entry_is_rebuilt_with_a_warning(damage, splits, tokenizer, tmp_path, capsys):
    from runner.train.model import tokenize_splits

    first = labels_of(tokenize_splits(splits, tokenizer, 32, False, cache_dir=tmp_path))
    (entry,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    DAMAGE[damage](entry / "train.arrow")
    capsys.readouterr()
    again = labels_of(tokenize_splits(splits, tokenizer, 32, False, cache_dir=tmp_path))
    err = capsys.readouterr().err
    assert "warning: the tokenization cache entry" in err and "rebuilt" in err
    assert again == first == {name: frame["label"].tolist() for name, frame in splits.items()}
    capsys.readouterr()
    tokenize_splits(splits, tokenizer, 32, False, cache_dir=tmp_path)  # the rebuilt entry is trusted again
    assert "warning" not in capsys.readouterr().err


def test_a_run_on_a_damaged_cache_trains_on_the_true_labels(tiny_model, tmp_path):
    write_csv(tmp_path / "data" / "train.csv", labelled_rows(per_label=20))
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    env = {"RUNNER_CACHE_DIR": str(tmp_path / "cache")}
    assert run_cli("run", str(spec), "--output", "first", cwd=tmp_path, env=env).returncode == 0
    for path in (tmp_path / "cache" / "tokenized").glob("*/*.arrow"):
        path.write_bytes(path.read_bytes()[:100])
    result = run_cli("run", str(spec), "--output", "second", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr
    assert "tokenization cache entry" in result.stderr and "discarded and rebuilt" in result.stderr
    first = json.loads((tmp_path / "first" / "metrics.json").read_text())["validation"]
    second = json.loads((tmp_path / "second" / "metrics.json").read_text())["validation"]
    assert first["accuracy"] == second["accuracy"]


def test_the_temporary_fallback_is_removed(tiny_model, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("x")
    temp = tmp_path / "tmp"
    temp.mkdir()
    code = (
        "import pandas as pd; from transformers import AutoTokenizer; from runner.train.model import tokenize_splits\n"
        f"t = AutoTokenizer.from_pretrained({str(tiny_model)!r})\n"
        "f = pd.DataFrame({'text': ['a day', 'the sun'], 'label': [0, 1]})\n"
        "out = tokenize_splits({'train': f}, t, 16, False)\n"
        "print('ROWS', len(out['train']))\n"
    )
    env = {**os.environ, "RUNNER_CACHE_DIR": str(blocked / "cache"), "TMPDIR": str(temp)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ROWS 2" in result.stdout and "temporary folder" in result.stderr  # a warning: on stderr
    assert not list(temp.glob("runner-tokenized-*"))
