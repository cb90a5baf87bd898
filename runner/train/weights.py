"""Class weights for imbalanced data (train.class_weights), and the weighted loss the Trainer applies
through its `compute_loss_func` hook.

Weights come from the training split only, which every process of a distributed run loads whole, so
every rank computes the same weights. The loss is the weighted per-row (per-label for multi-label)
loss summed and divided by the Trainer's `num_items_in_batch` (the rows of the whole accumulated
batch on this process), the normalisation the Trainer expects from this hook, so gradient
accumulation and DDP's averaging of gradients over processes give the same scale as without weights.
"""

from __future__ import annotations

from runner.errors import DataError


def class_weights(setting, frame_labels, label_names: list[str], task, source: str = "train.class_weights") -> dict:
    """{label: weight} for train.class_weights (null -> {}).

    `balanced`, one class per row: n_rows / (n_classes * rows_of_class), the inverse frequency
    scaled so that the average weight over the rows is 1. Many classes per row: each label's weight
    of its positive rows, negatives / positives (BCE's pos_weight). A class without training rows
    keeps weight 1. A mapping: the given weights, 1 for labels left out.
    """
    import numpy as np

    if not setting:
        return {}
    if isinstance(setting, dict):
        unknown = [name for name in setting if name not in label_names]
        if unknown:
            raise DataError(
                f"train.class_weights names {', '.join(map(repr, unknown))}, which the data does not have",
                f"use the data's labels: {', '.join(label_names)}",
                source,
            )
        return {name: float(setting.get(name, 1.0)) for name in label_names}
    if task.multi_label:
        hot = np.asarray(list(frame_labels), dtype=np.float64).reshape(-1, len(label_names))
        positives = hot.sum(axis=0)
        negatives = len(hot) - positives
        values = np.where(positives > 0, negatives / np.maximum(positives, 1), 1.0)
    else:
        ids = np.asarray(frame_labels, dtype=np.int64)
        counts = np.bincount(ids, minlength=len(label_names)).astype(np.float64)
        present = counts > 0
        values = np.where(present, len(ids) / (present.sum() * np.maximum(counts, 1)), 1.0)
    return {name: round(float(value), 6) for name, value in zip(label_names, values)}


def weighted_loss(weights: dict, label_names: list[str], task):
    """A `compute_loss_func(outputs, labels, num_items_in_batch)` for the Trainer: cross-entropy with
    class weights (one class per row) or BCE with per-label positive weights (many classes per row).
    Under torch.no_grad (evaluation) the loss is unweighted, so the validation loss stays the plain
    log loss and compares across runs with and without weights."""
    import torch
    import torch.nn.functional as F

    vector = torch.tensor([weights.get(name, 1.0) for name in label_names], dtype=torch.float32)
    multi = task.multi_label

    def compute_loss(outputs, labels, num_items_in_batch=None):
        logits = outputs["logits"] if isinstance(outputs, dict) else outputs[0]
        logits = logits.float()
        weight = vector.to(logits.device) if torch.is_grad_enabled() else None
        if multi:
            per_item = F.binary_cross_entropy_with_logits(
                logits, labels.to(logits.dtype), pos_weight=weight, reduction="none"
            )
        else:
            per_item = F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1), reduction="none")
            if weight is not None:
                per_item = per_item * weight[labels.view(-1)]
        if num_items_in_batch is None:
            return per_item.mean()
        if torch.is_tensor(num_items_in_batch):
            num_items_in_batch = num_items_in_batch.to(per_item.device)
        return per_item.sum() / num_items_in_batch

    return compute_loss
