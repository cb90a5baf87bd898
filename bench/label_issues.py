"""Label issues on real text with flipped labels: this project's list against the TF-IDF + cleanlab anchor.

    python bench/label_issues.py [--seeds 0,1] [--flip 0.10] [--folds 3] [--epochs 2]

The six-emotions example (examples/data/emotions.csv, 900 real sentences) with `--flip` of its labels
changed on purpose (seeded; each flipped row gets another of the six labels). For each seed:

1. `runner run` with `data.cross_validation: {folds: K}` and the packaged all-MiniLM-L6-v2 (through the
   real CLI; the run folder is kept under bench/out/label_issues/ and reused when it is there);
2. the anchor on the same rows: the same TF-IDF (word 1-2-grams, character 2-5-grams) + logistic
   regression view the runner uses, 5-fold out of fold (seeded), then cleanlab's confident learning
   ranked by self-confidence (`cleanlab.filter` + `cleanlab.rank`), as a practitioner would in a few
   lines;
3. precision at k (k = the number of rows flipped, and 25, 50) of the list `runner run` writes to
   label_issues.csv (recomputed here from the run's out-of-fold probabilities with the same function,
   so that a run made before a change to the ranking is measured with the current one), of the
   anchor, of the fine-tuned model's out-of-fold probabilities alone, and of a plain anchor
   (`TfidfVectorizer()` + `LogisticRegression()` with sklearn's defaults, 5-fold).

Prints one table; no downloads.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from crossval import LABELS, flipped_copy, spec_text  # noqa: E402

OUT = ROOT / "bench" / "out" / "label_issues"


def cv_run(folder: Path, folds: int, epochs: int) -> tuple[Path, float | None]:
    run_dir = folder / "cv"
    if (run_dir / "run.json").is_file() and json.loads((run_dir / "run.json").read_text()).get("status") == "finished":
        return run_dir, None
    (folder / "cv.yaml").write_text(spec_text(epochs, f"  cross_validation: {{folds: {folds}}}\n"), encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false")
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "runner", "run", "cv.yaml", "--output", str(run_dir), "--overwrite"],
        cwd=folder, env=env, capture_output=True, text=True,
    )
    if done.returncode != 0:
        sys.exit(f"runner run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return run_dir, time.perf_counter() - started


def plain_anchor(texts: list[str], truth, seed: int):
    """The simplest anchor: TfidfVectorizer() + LogisticRegression() with sklearn's defaults, 5-fold out of fold."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    folds = StratifiedKFold(5, shuffle=True, random_state=seed)
    model = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000))
    return cross_val_predict(model, texts, truth, cv=folds, method="predict_proba")


def precision_at(ranked: list[int], flipped: set[int], k: int) -> float:
    return len(set(ranked[:k]) & flipped) / k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--flip", type=float, default=0.10)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--runs-only", action="store_true", help="train the runs, print nothing else")
    args = parser.parse_args()
    import numpy as np

    rows_out = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        folder = OUT / f"flip{args.flip:g}-seed{seed}-k{args.folds}-e{args.epochs}"
        source = ROOT / "examples" / "data" / "emotions.csv"
        flipped = flipped_copy(source, folder / "data" / "train.csv", args.flip, seed)
        run_dir, seconds = cv_run(folder, args.folds, args.epochs)
        if args.runs_only:
            continue
        import pandas as pd

        from runner.evaluate.labelissues import (
            anchor_ranking,
            combine,
            find_label_issues,
            ranking_from_probabilities,
            second_view,
        )

        records = [json.loads(line) for line in (run_dir / "predictions" / "validation.jsonl").read_text().splitlines()]
        line = np.array([r["row"] for r in records])
        texts = [r["text"] for r in records]
        truth = np.array([LABELS.index(r["true_label"]) for r in records])
        model = np.array([[r["probabilities"][n] for n in LABELS] for r in records])
        # runner's list: what crossval writes to label_issues.csv from these out-of-fold probabilities (then
        # the rows it does not flag, by the same score, so that precision at k is defined for every k)
        frame = pd.DataFrame({"text": texts, "__row__": line})
        started = time.perf_counter()
        found = find_label_issues(frame, truth, model, LABELS, seed=seed)
        view_seconds = time.perf_counter() - started
        combined = combine(model, second_view(texts, truth, len(LABELS), seed=seed))
        listed = [int(line[i]) for i in ranking_from_probabilities(truth, combined)]
        assert listed[: found["count"]] == [r["row"] for r in found["rows"]], "the bench ranks as the runner does"
        tfidf = second_view(texts, truth, len(LABELS), seed=seed)
        anchor = [int(line[i]) for i in anchor_ranking(truth, tfidf)]
        alone = [int(line[i]) for i in ranking_from_probabilities(truth, model)]
        plain = [int(line[i]) for i in anchor_ranking(truth, plain_anchor(texts, truth, seed))]
        if found.get("warning"):
            print(f"seed {seed}: warning: {found['warning']}")
        n = len(flipped)
        for k in (n, 25, 50):
            rows_out.append((seed, k, precision_at(listed, flipped, k), precision_at(anchor, flipped, k),
                             precision_at(alone, flipped, k), precision_at(plain, flipped, k)))
        f1 = json.loads((run_dir / "metrics.json").read_text())["validation"]["f1_macro"]
        print(f"seed {seed}: {n} of 900 flipped; out-of-fold f1_macro {f1:.4f}; runner list {found['count']} rows; "
              f"label issues with the TF-IDF view {view_seconds:.1f} s"
              + (f"; cross-validation run {seconds:.0f} s" if seconds else ""))
    if args.runs_only:
        return
    print(f"\n{'seed':>4} {'k':>4}  {'runner':>7}  {'anchor':>7}  {'model alone':>11}  {'plain anchor':>12}")
    for seed, k, ours, anchor, alone, plain in rows_out:
        print(f"{seed:>4} {k:>4}  {ours:>7.3f}  {anchor:>7.3f}  {alone:>11.3f}  {plain:>12.3f}")
    picked = [r for r in rows_out if r[1] not in (25, 50)]
    means = [np.mean([r[i] for r in picked]) for i in (2, 3, 4, 5)]
    print(f"mean at k = N: runner {means[0]:.3f}, anchor {means[1]:.3f}, model alone {means[2]:.3f}, "
          f"plain anchor {means[3]:.3f}")


if __name__ == "__main__":
    main()
