"""Shared fixtures: a tiny BERT built on the fly (support/tiny_models.py), small labelled data files,
and a helper that runs the real `runner` CLI."""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from support.tiny_models import FILLER, WORDS, build_tiny_model, make_texts  # noqa: F401 (the tests' shared words)

# Fixtures shared across folders: `act` (the act suite), `fake`, `workspace`, `no_proxy` (a loopback GitHub)
# and `fake_hub` (a loopback Hub).
pytest_plugins = ["support.github_fake", "support.hub_server", "support.act_runner"]

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
# The tokenization cache of the runs the tests make goes to a temporary folder, not ~/.cache.
os.environ.setdefault("RUNNER_CACHE_DIR", tempfile.mkdtemp(prefix="runner-test-cache-"))

ROOT = Path(__file__).resolve().parent.parent
# `python -m runner` in a subprocess runs this working tree, not a copy installed without -e.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def labelled_rows(labels=("pos", "neg"), per_label: int = 40, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = [{"text": text, "label": label} for label in labels for text in make_texts(label, per_label, rng)]
    rng.shuffle(rows)
    return rows


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="session")
def tiny_distilbert(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-distilbert"), "distilbert")


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    """A CSV of 80 short texts, two classes that the tiny model can learn."""
    return write_csv(tmp_path / "data" / "train.csv", labelled_rows())


def write_spec(folder: Path, text: str, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def tiny_spec_text(model: Path, train: str = "data/train.csv", extra: str = "", output: str = "run") -> str:
    """A spec that trains the tiny model for one epoch; `extra` is appended YAML."""
    return f"""version: 1
name: tiny
seed: 7
data:
  train: {train}
model:
  name: {model}
  max_length: 32
train:
  epochs: 1
  learning_rate: 0.003
  batch_size: 8
  logging_steps: 5
  early_stopping_patience: null
output:
  dir: {output}
{extra}"""


def run_cli(
    *args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run the real `runner` command in a subprocess and capture its output."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env = {key: value for key, value in full_env.items() if value is not None}  # None: unset it
    return subprocess.run(
        [sys.executable, "-m", "runner", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def refused(result, code: int, *words: str) -> None:
    """A command refused as the house says: exit `code`, no traceback or internal error, exactly one `error:`
    line and one `hint:` line on stderr, and each of `words` in it."""
    output = result.stdout + result.stderr
    assert result.returncode == code, output[-3000:]
    assert "Traceback" not in output and "internal error" not in output, output[-3000:]
    lines = result.stderr.splitlines()
    assert len([x for x in lines if x.startswith("error:")]) == 1, result.stderr
    assert len([x for x in lines if x.startswith("hint:")]) == 1, result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)
