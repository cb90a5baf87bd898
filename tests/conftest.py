"""Shared fixtures: a tiny BERT built on the fly (config + WordPiece tokenizer trained here), small
labelled data files, and a helper that runs the real `runner` CLI."""

from __future__ import annotations

import csv
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
# The tokenization cache of the runs the tests make goes to a temporary folder, not ~/.cache.
os.environ.setdefault("RUNNER_CACHE_DIR", tempfile.mkdtemp(prefix="runner-test-cache-"))

ROOT = Path(__file__).resolve().parent.parent
# `python -m runner` in a subprocess runs this working tree, not a copy installed without -e.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
WORDS = {
    "pos": ["great", "lovely", "happy", "wonderful", "excellent", "sunny", "bright", "delight", "cheerful", "superb"],
    "neg": ["awful", "terrible", "sad", "gloomy", "horrible", "dreary", "bleak", "miserable", "dismal", "grim"],
    "neu": ["table", "chair", "window", "paper", "street", "number", "minute", "corner", "button", "sheet"],
}
INIT = 0.02
FILLER = ["the", "a", "day", "was", "really", "quite", "today", "felt", "and", "very", "it", "so", "this", "is", "my"]


def make_texts(label: str, n: int, rng: random.Random) -> list[str]:
    texts = []
    for _ in range(n):
        words = rng.sample(FILLER, 4) + rng.sample(WORDS[label], 2)
        rng.shuffle(words)
        texts.append(" ".join(words))
    return texts


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


def build_tiny_model(folder: Path, model_type: str = "bert") -> Path:
    """A 2-layer, 32-wide model and a WordPiece tokenizer trained on the fixture vocabulary."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertTokenizerFast,
        DistilBertConfig,
        DistilBertForSequenceClassification,
    )

    torch.manual_seed(0)  # the same tiny model every time, so tests that train it are repeatable
    folder.mkdir(parents=True, exist_ok=True)
    corpus = [" ".join(FILLER + sum(WORDS.values(), []))] * 4 + [w for ws in WORDS.values() for w in ws]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=200, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tokenizer.train_from_iterator(corpus, trainer)
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    fast = BertTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )
    fast.save_pretrained(folder)
    vocab = tokenizer.get_vocab_size()
    if model_type == "distilbert":
        config = DistilBertConfig(
            vocab_size=vocab,
            dim=32,
            n_layers=2,
            n_heads=2,
            hidden_dim=64,
            max_position_embeddings=128,
            pad_token_id=0,
            initializer_range=INIT,
        )
        model = DistilBertForSequenceClassification(config)
    else:
        config = BertConfig(
            vocab_size=vocab,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=128,
            pad_token_id=0,
            initializer_range=INIT,
        )
        model = BertForSequenceClassification(config)
    model.save_pretrained(folder)
    return folder


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
    return subprocess.run(
        [sys.executable, "-m", "runner", *args], cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout
    )
