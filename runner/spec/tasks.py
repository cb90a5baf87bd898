"""Everything the runner knows about a task, in one table: how a row's target is encoded, which
activation turns logits into scores, which metrics are computed and which way they improve, and
how the task is named to people and to the Hub. Other modules ask `task_of(name)` instead of
branching on the task's name.

This module stays light (no numpy at import): `runner validate` reads it.
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

    def probabilities(self, logits, temperature: float = 1.0):
        """Scores from logits (divided by the temperature): softmax, sigmoid per label, or the number itself."""
        from runner.evaluate import metrics

        if self.target == NUMBER:
            return logits.reshape(-1)
        from runner.evaluate.calibration import scale_logits

        scaled = scale_logits(logits, temperature)  # a temperature, or vector scaling's {scale, bias}
        return (metrics.softmax if self.target == ONE_CLASS else metrics.sigmoid)(scaled)

    def threshold_vector(self, label_names: list[str], threshold: float, thresholds: dict | None):
        """Multi-label: each label's threshold; two classes with tuned thresholds: the second class's; else None."""
        import numpy as np

        if self.multi_label:
            return np.asarray([(thresholds or {}).get(name, threshold) for name in label_names], dtype=np.float64)
        if thresholds and len(label_names) == 2 and label_names[1] in thresholds:
            return float(thresholds[label_names[1]])
        return None

    def decision_rule(self, thresholds: dict | None, calibration=None, threshold: float = 0.5) -> str:
        """How the run's decisions are made, as headings and run.json name it."""
        if thresholds and self.multi_label:
            return "tuned thresholds (one per label, tuned on validation)"
        if thresholds:
            (label, value), = thresholds.items()
            return f"tuned threshold ({label} when its probability is at least {value:.2f}, tuned on validation)"
        if isinstance(calibration, dict) and calibration.get("class_prior"):  # predict.class_prior
            mix = ", ".join(f"{name} {share:.1%}" for name, share in calibration["class_prior"].items())
            return f"argmax of the probabilities adjusted to the class mix {mix}"
        if isinstance(calibration, dict):
            return "argmax of the vector-scaled probabilities"
        return f"predict.threshold {threshold:g} per label" if self.multi_label else "argmax"

    def decide(self, probabilities, label_names: list[str], threshold: float = 0.5, thresholds: dict | None = None):
        """Predicted class ids (one class) or multi-hot rows (many classes) from probabilities."""
        cut = self.threshold_vector(label_names, threshold, thresholds)
        if self.multi_label:
            return (probabilities >= cut).astype(int)
        if cut is not None:
            return (probabilities[:, 1] >= cut).astype(int)
        return probabilities.argmax(axis=-1)

    def compute_metrics(
        self, logits, labels, label_names: list[str], threshold: float = 0.5, thresholds: dict | None = None
    ) -> dict:
        """The metrics of one split (floats rounded for stable JSON); `thresholds`: tuned ones, by label."""
        import numpy as np

        from runner.evaluate import metrics

        logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
        if self.target == NUMBER:
            values = metrics.regression_metrics(logits.reshape(-1), labels.astype(np.float64).reshape(-1))
        elif self.target == MANY_CLASSES:
            values = metrics.multi_label_metrics(
                self.decide(metrics.sigmoid(logits), label_names, threshold, thresholds), labels.astype(int)
            )
        else:
            probabilities = metrics.softmax(logits)
            predicted = self.decide(probabilities, label_names, threshold, thresholds)
            values = metrics.single_label_metrics(probabilities, labels.astype(int), len(label_names), predicted)
        return {k: round(float(v), 6) for k, v in values.items()}

    def per_class(self, logits, labels, label_names: list[str], threshold: float = 0.5) -> dict:
        """Precision, recall, F1 and support of each class; {} for a number target."""
        import numpy as np

        from runner.evaluate import metrics

        if self.target == NUMBER:
            return {}
        logits, truth = np.asarray(logits, dtype=np.float64), np.asarray(labels).astype(int)
        if self.target == MANY_CLASSES:
            return metrics.per_class_report(
                (metrics.sigmoid(logits) >= threshold).astype(int), truth, label_names, multi_label=True
            )
        return metrics.per_class_report(logits.argmax(axis=-1), truth, label_names, multi_label=False)

    def confusion(self, logits, labels, label_names: list[str]) -> list[list[int]] | None:
        """The confusion matrix (rows: truth) when every row has one class; None otherwise."""
        from runner.evaluate import metrics

        return metrics.confusion(logits, labels, len(label_names)) if self.one_label_per_row else None

    def agreement(self, reference, other, label_names: list[str], threshold: float = 0.5) -> dict:
        """How two models' outputs on the same texts agree (an exported model against PyTorch): the share
        of rows with the same decision (class, label set, or a number within 1% of the reference's range)
        and the largest difference of a probability (or of the number)."""
        import numpy as np

        a = self.probabilities(np.asarray(reference, dtype=np.float64))
        b = self.probabilities(np.asarray(other, dtype=np.float64))
        if not len(a):
            return {"agreement": 1.0, "max_probability_difference": 0.0}
        if self.target == NUMBER:
            same = np.abs(a - b) <= 0.01 * max(float(np.ptp(a)), 1e-6)
        elif self.target == MANY_CLASSES:
            same = ((a >= threshold) == (b >= threshold)).all(axis=-1)
        else:
            same = a.argmax(axis=-1) == b.argmax(axis=-1)
        largest = float(np.abs(a - b).max())
        return {"agreement": round(float(same.mean()), 6), "max_probability_difference": round(largest, 6)}

    def prediction_rows(
        self, logits, label_names: list[str], threshold: float, thresholds: dict | None = None, temperature: float = 1.0
    ) -> list[dict]:
        """One result per text: label (or labels, or value), its score, and every class probability,
        with the temperature and tuned thresholds applied when given."""
        import numpy as np

        probabilities = self.probabilities(np.asarray(logits, dtype=np.float64), temperature)
        if self.target == NUMBER:
            return [{"value": float(p)} for p in probabilities]
        decided = self.decide(probabilities, label_names, threshold, thresholds)
        rows = []
        for p, choice in zip(probabilities, decided):
            scores = {n: round(float(v), 6) for n, v in zip(label_names, p)}
            if self.target == MANY_CLASSES:
                rows.append({"labels": [label_names[i] for i in np.flatnonzero(choice)], "probabilities": scores})
            else:
                score = round(float(p[choice]), 6)
                rows.append({"label": label_names[int(choice)], "score": score, "probabilities": scores})
        return rows

    def from_prediction_records(self, records: list[dict], label_names: list[str]):
        """(scores, truth) from predictions/<split>.jsonl rows, such that compute_metrics(scores, truth)
        gives the run's metrics again: log-probabilities (softmax gives them back), logits of sigmoid
        scores, or the predicted numbers."""
        import numpy as np

        if self.target == NUMBER:
            return np.array([r["value"] for r in records], float), np.array([r["true_value"] for r in records], float)
        p = np.clip(np.array([[r["probabilities"][n] for n in label_names] for r in records], float), 1e-12, 1 - 1e-12)
        if self.target == MANY_CLASSES:
            truth = np.array([[float(n in r["true_labels"]) for n in label_names] for r in records])
            return np.log(p) - np.log1p(-p), truth
        return np.log(p), np.array([label_names.index(r["true_label"]) for r in records])

    def truth_record(self, truth, label_names: list[str]) -> dict:
        """The true target of one row as a predictions file shows it."""
        if self.target == NUMBER:
            return {"true_value": float(truth)}
        if self.target == MANY_CLASSES:
            return {"true_labels": [label_names[i] for i, x in enumerate(truth) if x]}
        return {"true_label": label_names[int(truth)]}

    def usage_lines(
        self,
        example: str,
        threshold: float,
        thresholds: dict | None = None,
        temperature: float | None = None,
        inline: bool = False,
    ) -> list[str]:
        """How to call a pipeline() on this task, for the model card; with a temperature or tuned
        thresholds, how to apply them (read from the model's config.json, or `inline` as numbers)."""
        if (thresholds or temperature) and self.has_labels and not self.pair:
            return self._calibrated_usage(example, threshold, thresholds, temperature, inline)
        if self.pair:
            return [f'classifier({{"text": "{example}", "text_pair": "the staff were helpful"}})']
        if self.target == MANY_CLASSES:
            return [
                f'scores = classifier("{example}", top_k=None)  # every label with its probability',
                f'labels = [s["label"] for s in scores if s["score"] >= {threshold}]',
            ]
        if self.target == NUMBER:
            return [f'classifier("{example}", function_to_apply="none")  # score = the predicted number']
        return [f'classifier("{example}")']

    def _calibrated_usage(
        self, example: str, threshold: float, thresholds: dict | None, temperature, inline: bool
    ) -> list[str]:
        """`temperature`: a number, or vector scaling's {scale, bias} (one of each per label id)."""
        vector = isinstance(temperature, dict)
        out = ["import math"]
        if inline:  # a LoRA adapter: the base model's config does not carry them
            if vector:
                out += [
                    f"w, b = {list(temperature['scale'])!r}, {list(temperature['bias'])!r}  # vector scaling, by id",
                    "label2id = classifier.model.config.label2id",
                ]
            else:
                out.append(f"T = {float(temperature or 1.0)!r}  # temperature fitted on validation")
            out.append(f"thresholds = {dict(thresholds or {})!r}  # tuned on validation, by label")
        else:
            out.append("config = classifier.model.config  # runner saved its calibration there")
            if vector:
                out += [
                    'w, b = config.runner_calibration["scale"], config.runner_calibration["bias"]  # by label id',
                    "label2id = config.label2id",
                ]
            else:
                out.append('T = getattr(config, "runner_temperature", 1.0)  # temperature fitted on validation')
            out.append('thresholds = getattr(config, "runner_thresholds", None) or {}  # tuned on validation, by label')
        out.append(f'logits = classifier("{example}", top_k=None, function_to_apply="none")  # raw scores')
        if vector:
            out.append(
                "z = {s['label']: s['score'] * w[label2id[s['label']]] + b[label2id[s['label']]] for s in logits}"
            )
        else:
            out.append("z = {s['label']: s['score'] / T for s in logits}")
        if self.multi_label:
            out.append("scores = {name: 1 / (1 + math.exp(-v)) for name, v in z.items()}  # calibrated probabilities")
            out.append(f"labels = [name for name, p in scores.items() if p >= thresholds.get(name, {threshold})]")
            return out
        out += [
            "total = sum(math.exp(v) for v in z.values())",
            "scores = {name: math.exp(v) / total for name, v in z.items()}  # calibrated probabilities",
        ]
        if thresholds:
            positive, = list(thresholds)
            out += [
                f'positive, negative = "{positive}", next(name for name in scores if name != "{positive}")',
                "label = positive if scores[positive] >= thresholds[positive] else negative",
            ]
        else:
            out.append("label = max(scores, key=scores.get)")
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
