"""Inference benchmark: `runner predict` with PyTorch against ONNX Runtime fp32 and int8, whole commands.

    python bench/inference.py --run runs/emotions            # a finished run (exported here when needed)
    python bench/inference.py --run runs/emotions --repeat 3 # every side 3 times, interleaved; medians

Texts: `bench/texts.py` `mixed` rows built from examples/data/emotions_test.csv (real short
sentences, 1 to 4 joined with "and"), 2,000 by default, one a line. Each side is the real CLI in a
subprocess: texts/s as the command prints it (model time), the whole command's wall time (imports,
loading, tokenizing, writing), peak RSS, the model's size on disk, and label agreement with PyTorch.
Writes bench/out/inference/results.json and report.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from measure import run_measured  # noqa: E402
from texts import write_texts  # noqa: E402

ROOT = BENCH.parent
SIDES = ("pytorch", "onnx-fp32", "onnx-int8")


def fp32_run_view(run: Path, folder: Path) -> Path:
    """A run folder whose onnx/ holds only the fp32 model (links), so --backend onnx runs fp32."""
    view = folder / "run-fp32"
    (view / "onnx").mkdir(parents=True, exist_ok=True)
    for name in ("spec.yaml", "run.json", "model"):
        link = view / name
        if not link.exists():
            link.symlink_to((run / name).resolve())
    for item in (run / "onnx").iterdir():
        if item.name != "model_int8.onnx" and not (view / "onnx" / item.name).exists():
            (view / "onnx" / item.name).symlink_to(item.resolve())
    return view


def predict(side: str, run: Path, view: Path, texts: Path, out: Path, n: int) -> dict:
    output = out / f"{side}-{n}.jsonl"
    backend = [] if side == "pytorch" else ["--backend", "onnx"]
    folder = view if side == "onnx-fp32" else run
    command = [
        sys.executable,
        "-m",
        "runner",
        "predict",
        str(folder),
        "--input",
        str(texts),
        "--output",
        str(output),
        *backend,
    ]
    result = run_measured(command, out / "logs" / f"{side}-{n}.log", env={"PYTHONPATH": str(ROOT)})
    log = Path(result["log"]).read_text(encoding="utf-8", errors="replace")
    match = re.search(r"\(([\d.]+) texts/s\)", log)
    if result["returncode"] != 0 or not match:
        raise SystemExit(f"{side} failed; see {result['log']}")
    return {
        "texts_per_second": float(match.group(1)),
        "wall_seconds": result["wall_seconds"],
        "peak_rss_mb": result["peak_rss_mb"],
        "load_average": result["load_average"],
        "labels": [json.loads(line)["label"] for line in output.read_text(encoding="utf-8").splitlines()],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="a finished single-label run folder")
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--out", type=Path, default=BENCH / "out" / "inference")
    args = parser.parse_args()
    run, out = args.run.resolve(), args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {"PYTHONPATH": str(ROOT)}
    if not (run / "onnx" / "model_int8.onnx").is_file():
        exported = run_measured(
            [sys.executable, "-m", "runner", "export", str(run), "--int8", "--min-agreement", "0"],
            out / "logs" / "export.log",
            env=env,
        )
        if exported["returncode"] != 0:
            raise SystemExit(f"export failed; see {exported['log']}")
    view = fp32_run_view(run, out)
    texts = write_texts(out / "texts.txt", args.texts)
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    for n in range(args.repeat):
        for side in SIDES:
            runs[side].append(predict(side, run, view, texts, out, n))
            print(
                f"{side:10s} run {n + 1}: {runs[side][-1]['texts_per_second']:.0f} texts/s, "
                f"{runs[side][-1]['wall_seconds']:.1f} s whole command",
                flush=True,
            )
    sizes = {
        "pytorch": sum(p.stat().st_size for p in (run / "model").glob("*.safetensors")),
        "onnx-fp32": (run / "onnx" / "model.onnx").stat().st_size,
        "onnx-int8": (run / "onnx" / "model_int8.onnx").stat().st_size,
    }
    reference = runs["pytorch"][0]["labels"]
    results = {
        "texts": args.texts,
        "source": "bench/texts.py mixed rows from examples/data/emotions_test.csv",
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "sides": {},
    }
    for side in SIDES:
        labels = runs[side][0]["labels"]
        results["sides"][side] = {
            "texts_per_second": statistics.median(r["texts_per_second"] for r in runs[side]),
            "wall_seconds": statistics.median(r["wall_seconds"] for r in runs[side]),
            "peak_rss_mb": statistics.median(r["peak_rss_mb"] for r in runs[side]),
            "model_mb": round(sizes[side] / 1e6, 1),
            "agreement": sum(a == b for a, b in zip(labels, reference)) / len(reference),
            "every_run": [{k: r[k] for k in ("texts_per_second", "wall_seconds", "load_average")} for r in runs[side]],
        }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    report = render(results)
    (out / "report.txt").write_text(report, encoding="utf-8")
    print(report)


def render(results: dict) -> str:
    sides = results["sides"]
    base = sides["pytorch"]
    rows = [
        ("texts/s (model time)", lambda s: f"{s['texts_per_second']:,.0f}"),
        ("whole command (s)", lambda s: f"{s['wall_seconds']:.1f}"),
        ("whole command, x PyTorch", lambda s: f"{base['wall_seconds'] / s['wall_seconds']:.2f}"),
        ("peak RSS (MB)", lambda s: f"{s['peak_rss_mb']:,.0f}"),
        ("model on disk (MB)", lambda s: f"{s['model_mb']:.1f}"),
        ("labels agree with PyTorch", lambda s: f"{s['agreement']:.2%}"),
    ]
    lines = [
        f"{results['texts']:,} texts ({results['source']}); {results['cpu']}, {results['cores']} cores",
        "",
        f"{'':28s}" + "".join(f"{side:>14s}" for side in SIDES),
    ]
    lines += [f"{name:28s}" + "".join(f"{cell(sides[side]):>14s}" for side in SIDES) for name, cell in rows]
    loads = [r["load_average"] for side in SIDES for r in sides[side]["every_run"]]
    lines += ["", f"load average before/after each command: {loads}"]
    return "\n".join(lines) + "\n"


def cpu_name() -> str:
    try:
        output = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        return "?"
    found = re.search(r"Model name:\s*(.+)", output)
    return found.group(1).strip() if found else "?"


if __name__ == "__main__":
    main()
