"""Benchmark data made from the shipped emotions sentences (examples/data), no downloads.

`mixed`: each row joins 1-4 sentences of one label with "and" (55/25/12/8 %), so lengths spread
out with a tail, as in real short-text data (tweets, reviews, tickets). `repeat`: the sentences
as they are, repeated: lengths 7-19 tokens, little for dynamic padding to save.
Training rows come from emotions.csv and validation rows from emotions_test.csv, so no sentence
is in both. Everything is seeded.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "data"
LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]
PARTS = (1, 2, 3, 4)
PART_WEIGHTS = (0.55, 0.25, 0.12, 0.08)


def sentences_by_label(path: Path) -> dict[str, list[str]]:
    with open(path, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    out: dict[str, list[str]] = {label: [] for label in LABELS}
    for row in rows:
        out[row["label"]].append(row["text"])
    return out


def make_rows(source: dict[str, list[str]], n: int, kind: str, seed: int) -> list[dict]:
    """n rows, labels balanced and shuffled."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        pool = source[label]
        if kind == "repeat":
            text = pool[(i // len(LABELS)) % len(pool)]
        else:
            k = rng.choices(PARTS, PART_WEIGHTS)[0]
            text = " and ".join(rng.sample(pool, k))
        rows.append({"text": text, "label": label})
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_benchmark_data(folder: Path, kind: str, rows: int, seed: int = 0) -> tuple[Path, Path]:
    """train.csv (80% of `rows`) and validation.csv (20%) in `folder`."""
    n_validation = rows // 5
    train = make_rows(sentences_by_label(EXAMPLES / "emotions.csv"), rows - n_validation, kind, seed)
    validation = make_rows(sentences_by_label(EXAMPLES / "emotions_test.csv"), n_validation, kind, seed + 1)
    return write_csv(folder / "train.csv", train), write_csv(folder / "validation.csv", validation)


def write_texts(path: Path, n: int, seed: int = 2) -> Path:
    """n unlabelled texts (mixed lengths) for `runner predict`, one a line."""
    source = sentences_by_label(EXAMPLES / "emotions_test.csv")
    rows = make_rows(source, n, "mixed", seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(row["text"] + "\n" for row in rows), encoding="utf-8")
    return path
