"""Metric functions: plain numpy in, plain dicts out. Which of them a task uses is runner.spec.tasks' table;
runner.evaluate.strategies calls them."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


def single_label_metrics(probs: np.ndarray, labels: np.ndarray, n_classes: int, predicted=None) -> dict:
    """`predicted`: class ids decided otherwise than by argmax (a tuned two-class threshold)."""
    from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

    predicted = probs.argmax(axis=-1) if predicted is None else np.asarray(predicted)
    classes = list(range(n_classes))
    out = {
        "accuracy": accuracy_score(labels, predicted),
        "f1_macro": f1_score(labels, predicted, average="macro", labels=classes, zero_division=0),
        "f1_weighted": f1_score(labels, predicted, average="weighted", labels=classes, zero_division=0),
        "precision_macro": precision_score(labels, predicted, average="macro", labels=classes, zero_division=0),
        "recall_macro": recall_score(labels, predicted, average="macro", labels=classes, zero_division=0),
    }
    if n_classes == 2 and len(set(labels.tolist())) == 2:
        out["roc_auc"] = roc_auc_score(labels, probs[:, 1])
    return out


def multi_label_metrics(predicted: np.ndarray, labels: np.ndarray) -> dict:
    from sklearn.metrics import f1_score, precision_score, recall_score

    return {
        "f1_micro": f1_score(labels, predicted, average="micro", zero_division=0),
        "f1_macro": f1_score(labels, predicted, average="macro", zero_division=0),
        "subset_accuracy": float((predicted == labels).all(axis=1).mean()),
        "precision_macro": precision_score(labels, predicted, average="macro", zero_division=0),
        "recall_macro": recall_score(labels, predicted, average="macro", zero_division=0),
    }


def regression_metrics(predicted: np.ndarray, target: np.ndarray) -> dict:
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    constant = np.allclose(predicted, predicted[0]) or np.allclose(target, target[0])
    return {
        "mse": mean_squared_error(target, predicted),
        "mae": mean_absolute_error(target, predicted),
        "r2": r2_score(target, predicted) if len(target) > 1 else 0.0,
        "pearson": 0.0 if constant else pearsonr(predicted, target)[0],
        "spearman": 0.0 if constant else spearmanr(predicted, target)[0],
    }


def per_class_report(predicted: np.ndarray, truth: np.ndarray, label_names: list[str], multi_label: bool) -> dict:
    """Precision, recall, F1 and support of each class, from predicted and true class ids (or
    multi-hot rows)."""
    from sklearn.metrics import precision_recall_fscore_support

    classes = None if multi_label else list(range(len(label_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=classes, average=None, zero_division=0
    )
    return {
        name: {
            "precision": round(float(precision[i]), 6),
            "recall": round(float(recall[i]), 6),
            "f1": round(float(f1[i]), 6),
            "support": int(support[i]),
        }
        for i, name in enumerate(label_names)
    }


def confusion(logits: np.ndarray, labels: np.ndarray, n_classes: int) -> list[list[int]]:
    from sklearn.metrics import confusion_matrix

    predicted = np.asarray(logits).argmax(axis=-1)
    return confusion_matrix(np.asarray(labels).astype(int), predicted, labels=list(range(n_classes))).tolist()
