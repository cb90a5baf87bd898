"""The task table: what the runner knows about each task as data: what a row's target is (one class,
many classes or a number), which metrics are computed and which way they improve, which settings the task
can use, and how it is named to people and to the Hub. Other modules ask `task_of(name)` instead of
branching on the task's name; what a task does with a model's outputs (scores, decisions, metrics,
prediction rows) is its target type's strategy, runner.evaluate.strategies.strategy_of(task).

This module stays light (no numpy at import, nothing of runner): `runner validate` reads it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# What one row's target is: one class id, a multi-hot vector of classes, or a number.
ONE_CLASS, MANY_CLASSES, NUMBER = "one_class", "many_classes", "number"


@dataclass(frozen=True)
class Metric:
    display: str
    """How a report or model card names it."""
    lower_is_better: bool = False
    hub_type: str | None = None
    """The model-index metric type on the Hub (default: the runner's own name)."""
    hub_config: str | None = None


METRICS = {
    "loss": Metric("Loss", lower_is_better=True),
    "accuracy": Metric("Accuracy"),
    "f1_macro": Metric("F1 (macro)", hub_type="f1", hub_config="macro"),
    "f1_weighted": Metric("F1 (weighted)", hub_type="f1", hub_config="weighted"),
    "f1_micro": Metric("F1 (micro)", hub_type="f1", hub_config="micro"),
    "precision_macro": Metric("Precision (macro)", hub_type="precision", hub_config="macro"),
    "recall_macro": Metric("Recall (macro)", hub_type="recall", hub_config="macro"),
    "roc_auc": Metric("ROC AUC"),
    "subset_accuracy": Metric("Subset accuracy", hub_type="accuracy", hub_config="subset"),
    "mse": Metric("MSE", lower_is_better=True),
    "mae": Metric("MAE", lower_is_better=True),
    "r2": Metric("R²", hub_type="r_squared"),
    "pearson": Metric("Pearson r", hub_type="pearsonr"),
    "spearman": Metric("Spearman ρ", hub_type="spearmanr"),
    "ece": Metric("ECE", lower_is_better=True, hub_config="15 bins"),
    "ece_calibrated": Metric("ECE (calibrated)", lower_is_better=True, hub_type="ece", hub_config="calibrated"),
    "ece_prior_adjusted": Metric("ECE (prior-adjusted)", lower_is_better=True, hub_type="ece",
                                 hub_config="prior-adjusted"),
}
# Metrics that depend on the decision rule. When a run decides otherwise than the argmax of its raw scores
# (tuned thresholds, or a vector scaling), `<name>` is the figure of the rule it outputs and `<name>_argmax`
# the argmax (multi-label: predict.threshold) figure of the raw scores beside it (runner.evaluate.quality).
THRESHOLD_METRICS = (
    "accuracy", "f1_macro", "f1_weighted", "f1_micro", "precision_macro", "recall_macro", "subset_accuracy"
)
METRICS.update(
    {
        f"{name}_argmax": Metric(
            f"{METRICS[name].display} (argmax)",
            hub_type=METRICS[name].hub_type or name,
            hub_config=f"{METRICS[name].hub_config or ''} argmax".strip(),
        )
        for name in THRESHOLD_METRICS
    }
)
LOWER_IS_BETTER = frozenset(name for name, metric in METRICS.items() if metric.lower_is_better)


# Keys of a metrics dict that measure the machine, not the model: never compared, never shown.
_NOT_METRICS = re.compile(r"(runtime|_per_second|^epoch$|^step$)")


def metric_items(values: dict | None) -> list[tuple[str, float]]:
    """The model's numeric metrics in a metrics dict, in order, without runtimes and throughputs."""
    if not isinstance(values, dict):
        return []
    return [
        (name, value)
        for name, value in values.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not _NOT_METRICS.search(name)
    ]


def lower_is_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER


def metric_display(name: str) -> str:
    return METRICS[name].display if name in METRICS else name


def hub_metric(name: str) -> tuple[str, str | None]:
    """(metric type, config) as the Hub's model-index knows them."""
    metric = METRICS.get(name)
    return (metric.hub_type or name, metric.hub_config) if metric else (name, None)


@dataclass(frozen=True)
class Task:
    name: str
    display: str
    """How a report and a model card name it: "single-label text classification"."""
    target: str
    """ONE_CLASS, MANY_CLASSES or NUMBER."""
    metrics: tuple[str, ...]
    """Metrics computed for this task (any of them may be train.metric_for_best_model)."""
    default_metric: str
    pair: bool = False
    """Two text columns per row."""

    @property
    def problem_type(self) -> str:
        """transformers' `config.problem_type`, which picks the loss."""
        return {
            ONE_CLASS: "single_label_classification",
            MANY_CLASSES: "multi_label_classification",
            NUMBER: "regression",
        }[self.target]

    @property
    def has_labels(self) -> bool:
        return self.target != NUMBER

    @property
    def one_label_per_row(self) -> bool:
        """Every row has exactly one class: stratified splits, a confusion matrix, argmax predictions."""
        return self.target == ONE_CLASS

    @property
    def multi_label(self) -> bool:
        return self.target == MANY_CLASSES

    def num_labels(self, labels: list[str]) -> int:
        return len(labels) if self.has_labels else 1

    @property
    def bucket_metrics(self) -> tuple[str, ...]:
        """Metrics that stay meaningful on a small slice of the rows (error analysis by text length)."""
        return {ONE_CLASS: ("accuracy",), MANY_CLASSES: ("f1_micro", "subset_accuracy"), NUMBER: ("mae", "mse")}[
            self.target
        ]

    def can_tune_thresholds(self, n_labels: int | None) -> bool:
        """Multi-label (one threshold per label) or two classes (the second class's threshold)."""
        return self.multi_label or (self.one_label_per_row and n_labels in (None, 2))

    def setting_problems(self, values: dict) -> list[tuple[tuple, str, str]]:
        """(spec path, message, hint) for the spec's class-weight, threshold and calibration settings
        that this task cannot use; labels named in train.class_weights must be in `labels:`."""
        out = []
        weights, predict, labels = values["train"]["class_weights"], values["predict"], values.get("labels")
        if not self.has_labels:
            for path, on in (
                (("train", "class_weights"), weights is not None),
                (("predict", "tune_thresholds"), predict["tune_thresholds"]),
                (("predict", "calibration"), predict["calibration"] not in (None, "none")),
            ):
                if on:
                    out.append((path, f"{'.'.join(path)} is for classification, not {self.display}", "remove it"))
            return out
        if predict["tune_thresholds"] and not self.can_tune_thresholds(len(labels) if labels else None):
            out.append(
                (
                    ("predict", "tune_thresholds"),
                    f"thresholds are tuned for multi-label or two classes; `labels:` has {len(labels)}",
                    "remove predict.tune_thresholds (with more classes the prediction is the most probable class)",
                )
            )
        if isinstance(weights, dict) and labels:
            for name in weights:
                if name not in labels:
                    message, fix = f"'{name}' is not one of the labels", f"use: {', '.join(labels)}"
                    out.append((("train", "class_weights", name), message, fix))
        return out


_CLASSIFICATION = ("loss", "accuracy", "f1_macro", "f1_weighted", "precision_macro", "recall_macro", "roc_auc")
TASKS = {
    task.name: task
    for task in (
        Task("single_label_classification", "single-label text classification", ONE_CLASS, _CLASSIFICATION, "f1_macro"),
        Task("text_pair_classification", "text-pair classification", ONE_CLASS, _CLASSIFICATION, "f1_macro", pair=True),
        Task(
            "multi_label_classification",
            "multi-label text classification",
            MANY_CLASSES,
            ("loss", "f1_micro", "f1_macro", "subset_accuracy", "precision_macro", "recall_macro"),
            "f1_micro",
        ),
        Task("regression", "text regression", NUMBER, ("loss", "mse", "mae", "r2", "pearson", "spearman"), "mse"),
    )
}


def task_of(name: str) -> Task:
    return TASKS[name]
