"""Error analysis of the final predictions (with the calibration and decision rule the run applies,
as `runner predict` gives them): the most confident mistakes, metrics by text-length bucket, and the
confusion pairs that cost the most. For report.md and the pull-request comment's details; `applied`
says which calibration and rule were used."""

from __future__ import annotations

import numpy as np

from runner.evaluate.strategies import strategy_of

TOP = 10
PAIRS = 5
BUCKETS = 4
SHOWN_CHARS = 200


def _shown(text) -> str:
    text = str(text)
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 1] + "…"


def _names(row, labels: list[str]) -> list[str]:
    return [labels[i] for i, x in enumerate(row) if x]


def confident_mistakes(task, frame, probs: np.ndarray, decided, labels: list[str]) -> list[dict]:
    """The wrong predictions the model was surest of (regression: the largest errors)."""
    texts, rows = frame["text"].tolist(), frame["__row__"].tolist()
    if not task.has_labels:
        truth = frame["label"].to_numpy(dtype=np.float64)
        error = np.abs(probs - truth)
        order = np.argsort(-error, kind="stable")[:TOP]
        return [
            {
                "row": int(rows[i]),
                "text": _shown(texts[i]),
                "truth": round(float(truth[i]), 6),
                "prediction": round(float(probs[i]), 6),
                "error": round(float(error[i]), 6),
            }
            for i in order
        ]
    if task.multi_label:
        truth = np.asarray(list(frame["label"]), dtype=np.float64).astype(bool)
        wrong = decided.astype(bool) != truth
        confidence = np.where(decided.astype(bool), probs, 1.0 - probs)  # how sure the wrong decision was
        cells = np.argwhere(wrong)
        order = np.argsort(-confidence[wrong], kind="stable")[:TOP]
        out = []
        for i, j in cells[order]:
            out.append(
                {
                    "row": int(rows[i]),
                    "text": _shown(texts[i]),
                    "truth": ", ".join(_names(truth[i], labels)) or "(none)",
                    "prediction": ", ".join(_names(decided[i], labels)) or "(none)",
                    "label": labels[j],
                    "kind": "false positive" if decided[i, j] else "false negative",
                    "score": round(float(probs[i, j]), 6),
                }
            )
        return out
    truth = frame["label"].to_numpy(dtype=np.int64)
    wrong = np.flatnonzero(decided != truth)
    score = probs[wrong, decided[wrong]]
    order = wrong[np.argsort(-score, kind="stable")][:TOP]
    return [
        {
            "row": int(rows[i]),
            "text": _shown(texts[i]),
            "truth": labels[truth[i]],
            "prediction": labels[decided[i]],
            "score": round(float(probs[i, decided[i]]), 6),
        }
        for i in order
    ]


def length_buckets(
    task, frame, scaled_logits: np.ndarray, labels: list[str], threshold: float, thresholds
) -> list[dict]:
    """The rows cut into (up to) four buckets of equal size by word count, with each bucket's metrics."""
    words = frame["text"].astype(str).str.split().str.len().to_numpy()
    if len(words) < 2 * BUCKETS:
        return []
    edges = np.unique(np.quantile(words, np.linspace(0, 1, BUCKETS + 1)).round().astype(int))
    if len(edges) < 2:
        return []
    index = np.clip(np.searchsorted(edges, words, side="right") - 1, 0, len(edges) - 2)
    truth = np.asarray(list(frame["label"])) if task.multi_label else frame["label"].to_numpy()
    out = []
    for b in range(len(edges) - 1):
        inside = index == b
        if not inside.any():
            continue
        low, high = int(words[inside].min()), int(words[inside].max())
        values = strategy_of(task).compute_metrics(scaled_logits[inside], truth[inside], labels, threshold, thresholds)
        out.append(
            {
                "words": f"{low}" if low == high else f"{low}-{high}",
                "rows": int(inside.sum()),
                **{name: values[name] for name in task.bucket_metrics if name in values},
            }
        )
    return out


def costly_pairs(task, frame, decided, labels: list[str]) -> list[dict]:
    """One class per row: the (truth, prediction) pairs with the most mistakes. Many classes per row:
    the labels with the most wrong decisions (false positives and negatives)."""
    if not task.has_labels:
        return []
    if task.multi_label:
        truth = np.asarray(list(frame["label"]), dtype=np.float64).astype(bool)
        predicted = decided.astype(bool)
        fp, fn = (predicted & ~truth).sum(axis=0), (~predicted & truth).sum(axis=0)
        order = np.argsort(-(fp + fn), kind="stable")[:PAIRS]
        return [
            {"label": labels[j], "false_positives": int(fp[j]), "false_negatives": int(fn[j])}
            for j in order
            if fp[j] + fn[j]
        ]
    truth = frame["label"].to_numpy(dtype=np.int64)
    wrong = decided != truth
    total = int(wrong.sum())
    if not total:
        return []
    pairs, counts = np.unique(np.stack([truth[wrong], decided[wrong]], axis=1), axis=0, return_counts=True)
    support = np.bincount(truth, minlength=len(labels))
    order = np.argsort(-counts, kind="stable")[:PAIRS]
    return [
        {
            "truth": labels[pairs[k, 0]],
            "prediction": labels[pairs[k, 1]],
            "rows": int(counts[k]),
            "share_of_truth": round(float(counts[k] / max(support[pairs[k, 0]], 1)), 4),
            "share_of_errors": round(float(counts[k] / total), 4),
        }
        for k in order
    ]


def analyse(
    task,
    splits: dict,
    logits_by_split: dict,
    labels: list[str],
    threshold: float,
    thresholds: dict | None = None,
    temperature: float | None = None,
) -> dict:
    """{split: {rows, errors, mistakes, length_buckets, costly_pairs}} for validation and test, and `applied`:
    the calibration and decision rule used (`temperature`: a number, or vector scaling's {scale, bias})."""
    from runner.evaluate.calibration import scale_logits

    out = {}
    if task.has_labels:
        out["applied"] = applied_text(task, threshold, thresholds, temperature)
    for split, logits in logits_by_split.items():
        frame = splits[split]
        scaled = scale_logits(logits, temperature)
        probs = strategy_of(task).probabilities(scaled)
        decided = strategy_of(task).decide(probs, labels, threshold, thresholds) if task.has_labels else None
        entry = {
            "rows": len(frame),
            "mistakes": confident_mistakes(task, frame, probs, decided, labels),
            "length_buckets": length_buckets(task, frame, scaled, labels, threshold, thresholds),
            "costly_pairs": costly_pairs(task, frame, decided, labels),
        }
        if task.has_labels:
            truth = np.asarray(list(frame["label"])) if task.multi_label else frame["label"].to_numpy()
            entry["errors"] = int(
                (decided != truth).any(axis=-1).sum() if task.multi_label else (decided != truth).sum()
            )
        out[split] = entry
    return out


def applied_text(task, threshold: float, thresholds, temperature) -> str:
    """"temperature 1.32, tuned threshold (...)": what the predictions analysed apply to the raw scores."""
    if isinstance(temperature, dict) and temperature.get("class_prior"):  # predict.class_prior (classprior.fold)
        scores = f"{temperature.get('calibration') or 'no'} calibration, then the class prior"
    elif isinstance(temperature, dict):
        scores = "vector scaling"
    elif temperature and float(temperature) != 1.0:
        scores = f"temperature {float(temperature):.3f}"
    else:
        scores = "no calibration"
    return f"{scores}; decision: {strategy_of(task).decision_rule(thresholds, temperature, threshold)}"
