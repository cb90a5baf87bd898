"""What a task does with a model's outputs, one strategy per target type (runner.spec.tasks' `target`): how
logits become scores and decisions, which metrics they give, how they are written as prediction rows and
read back. The task table (names, metrics, settings a task can use) stays in runner.spec.tasks;
`strategy_of(task)` gives its behaviour.
"""

from __future__ import annotations

import numpy as np

from runner.evaluate import metrics
from runner.evaluate.calibration import scale_logits
from runner.spec.tasks import MANY_CLASSES, NUMBER, ONE_CLASS, Task


class TaskStrategy:
    """The behaviour every target type has; SingleLabel, MultiLabel and Regression fill it in."""

    target: str

    def probabilities(self, logits, temperature: float = 1.0):
        """Scores from logits (divided by the temperature): softmax, sigmoid per label, or the number itself."""
        raise NotImplementedError

    def threshold_vector(self, label_names: list[str], threshold: float, thresholds: dict | None):
        """Multi-label: each label's threshold; two classes with tuned thresholds: the second class's; else None."""
        return None

    def decide(self, probabilities, label_names: list[str], threshold: float = 0.5, thresholds: dict | None = None):
        """Predicted class ids (one class) or multi-hot rows (many classes) from probabilities."""
        raise NotImplementedError

    def decision_rule(self, thresholds: dict | None, calibration=None, threshold: float = 0.5) -> str:
        """How the run's decisions are made, as headings and run.json name it."""
        return "the predicted number"

    def compute_metrics(
        self, logits, labels, label_names: list[str], threshold: float = 0.5, thresholds: dict | None = None
    ) -> dict:
        """The metrics of one split (floats rounded for stable JSON); `thresholds`: tuned ones, by label."""
        logits, labels = np.asarray(logits, dtype=np.float64), np.asarray(labels)
        values = self._metrics(logits, labels, label_names, threshold, thresholds)
        return {k: round(float(v), 6) for k, v in values.items()}

    def _metrics(self, logits, labels, label_names, threshold, thresholds) -> dict:
        raise NotImplementedError

    def per_class(self, logits, labels, label_names: list[str], threshold: float = 0.5) -> dict:
        """Precision, recall, F1 and support of each class; {} for a number target."""
        return {}

    def confusion(self, logits, labels, label_names: list[str]) -> list[list[int]] | None:
        """The confusion matrix (rows: truth) when every row has one class; None otherwise."""
        return None

    def agreement(self, reference, other, label_names: list[str], threshold: float = 0.5) -> dict:
        """How two models' outputs on the same texts agree (an exported model against PyTorch): the share
        of rows with the same decision (class, label set, or a number within 1% of the reference's range)
        and the largest difference of a probability (or of the number)."""
        a = self.probabilities(np.asarray(reference, dtype=np.float64))
        b = self.probabilities(np.asarray(other, dtype=np.float64))
        if not len(a):
            return {"agreement": 1.0, "max_probability_difference": 0.0}
        same = self._same_decision(a, b, threshold)
        largest = float(np.abs(a - b).max())
        return {"agreement": round(float(same.mean()), 6), "max_probability_difference": round(largest, 6)}

    def _same_decision(self, a, b, threshold: float):
        raise NotImplementedError

    def prediction_rows(
        self, logits, label_names: list[str], threshold: float, thresholds: dict | None = None, temperature: float = 1.0
    ) -> list[dict]:
        """One result per text: label (or labels, or value), its score, and every class probability,
        with the temperature and tuned thresholds applied when given."""
        probabilities = self.probabilities(np.asarray(logits, dtype=np.float64), temperature)
        decided = self.decide(probabilities, label_names, threshold, thresholds)
        return [
            self._row(p, choice, {n: round(float(v), 6) for n, v in zip(label_names, p)}, label_names)
            for p, choice in zip(probabilities, decided)
        ]

    def _row(self, p, choice, scores: dict, label_names: list[str]) -> dict:
        raise NotImplementedError

    def from_prediction_records(self, records: list[dict], label_names: list[str]):
        """(scores, truth) from predictions/<split>.jsonl rows, such that compute_metrics(scores, truth)
        gives the run's metrics again: log-probabilities (softmax gives them back), logits of sigmoid
        scores, or the predicted numbers."""
        raise NotImplementedError

    def truth_record(self, truth, label_names: list[str]) -> dict:
        """The true target of one row as a predictions file shows it."""
        raise NotImplementedError


class _Classes(TaskStrategy):
    """Targets made of classes: probabilities from (scaled) logits, and decisions from them."""

    def _activation(self, logits):
        raise NotImplementedError

    def probabilities(self, logits, temperature: float = 1.0):
        # a temperature, or vector scaling's {scale, bias}
        return self._activation(scale_logits(logits, temperature))

    def decision_rule(self, thresholds: dict | None, calibration=None, threshold: float = 0.5) -> str:
        if thresholds:
            return self._tuned_rule(thresholds)
        if isinstance(calibration, dict) and calibration.get("class_prior"):  # predict.class_prior
            mix = ", ".join(f"{name} {share:.1%}" for name, share in calibration["class_prior"].items())
            return f"argmax of the probabilities adjusted to the class mix {mix}"
        if isinstance(calibration, dict):
            return "argmax of the vector-scaled probabilities"
        return self._plain_rule(threshold)

    def _tuned_rule(self, thresholds: dict) -> str:
        raise NotImplementedError

    def _plain_rule(self, threshold: float) -> str:
        raise NotImplementedError

    @staticmethod
    def _clipped(records: list[dict], label_names: list[str]):
        p = np.array([[r["probabilities"][n] for n in label_names] for r in records], float)
        return np.clip(p, 1e-12, 1 - 1e-12)


class SingleLabel(_Classes):
    """One class per row (single-label and text-pair classification): softmax, argmax or a tuned two-class
    threshold."""

    target = ONE_CLASS

    def _activation(self, logits):
        return metrics.softmax(logits)

    def threshold_vector(self, label_names: list[str], threshold: float, thresholds: dict | None):
        if thresholds and len(label_names) == 2 and label_names[1] in thresholds:
            return float(thresholds[label_names[1]])
        return None

    def decide(self, probabilities, label_names: list[str], threshold: float = 0.5, thresholds: dict | None = None):
        cut = self.threshold_vector(label_names, threshold, thresholds)
        if cut is not None:
            return (probabilities[:, 1] >= cut).astype(int)
        return probabilities.argmax(axis=-1)

    def _tuned_rule(self, thresholds: dict) -> str:
        (label, value), = thresholds.items()
        return f"tuned threshold ({label} when its probability is at least {value:.2f}, tuned on validation)"

    def _plain_rule(self, threshold: float) -> str:
        return "argmax"

    def _metrics(self, logits, labels, label_names, threshold, thresholds) -> dict:
        probabilities = metrics.softmax(logits)
        predicted = self.decide(probabilities, label_names, threshold, thresholds)
        return metrics.single_label_metrics(probabilities, labels.astype(int), len(label_names), predicted)

    def per_class(self, logits, labels, label_names: list[str], threshold: float = 0.5) -> dict:
        logits, truth = np.asarray(logits, dtype=np.float64), np.asarray(labels).astype(int)
        return metrics.per_class_report(logits.argmax(axis=-1), truth, label_names, multi_label=False)

    def confusion(self, logits, labels, label_names: list[str]) -> list[list[int]] | None:
        return metrics.confusion(logits, labels, len(label_names))

    def _same_decision(self, a, b, threshold: float):
        return a.argmax(axis=-1) == b.argmax(axis=-1)

    def _row(self, p, choice, scores: dict, label_names: list[str]) -> dict:
        return {"label": label_names[int(choice)], "score": round(float(p[choice]), 6), "probabilities": scores}

    def from_prediction_records(self, records: list[dict], label_names: list[str]):
        p = self._clipped(records, label_names)
        return np.log(p), np.array([label_names.index(r["true_label"]) for r in records])

    def truth_record(self, truth, label_names: list[str]) -> dict:
        return {"true_label": label_names[int(truth)]}


class MultiLabel(_Classes):
    """Any number of classes per row: a sigmoid per label, each against its threshold."""

    target = MANY_CLASSES

    def _activation(self, logits):
        return metrics.sigmoid(logits)

    def threshold_vector(self, label_names: list[str], threshold: float, thresholds: dict | None):
        return np.asarray([(thresholds or {}).get(name, threshold) for name in label_names], dtype=np.float64)

    def decide(self, probabilities, label_names: list[str], threshold: float = 0.5, thresholds: dict | None = None):
        return (probabilities >= self.threshold_vector(label_names, threshold, thresholds)).astype(int)

    def _tuned_rule(self, thresholds: dict) -> str:
        return "tuned thresholds (one per label, tuned on validation)"

    def _plain_rule(self, threshold: float) -> str:
        return f"predict.threshold {threshold:g} per label"

    def _metrics(self, logits, labels, label_names, threshold, thresholds) -> dict:
        decided = self.decide(metrics.sigmoid(logits), label_names, threshold, thresholds)
        return metrics.multi_label_metrics(decided, labels.astype(int))

    def per_class(self, logits, labels, label_names: list[str], threshold: float = 0.5) -> dict:
        logits, truth = np.asarray(logits, dtype=np.float64), np.asarray(labels).astype(int)
        decided = (metrics.sigmoid(logits) >= threshold).astype(int)
        return metrics.per_class_report(decided, truth, label_names, multi_label=True)

    def _same_decision(self, a, b, threshold: float):
        return ((a >= threshold) == (b >= threshold)).all(axis=-1)

    def _row(self, p, choice, scores: dict, label_names: list[str]) -> dict:
        return {"labels": [label_names[i] for i in np.flatnonzero(choice)], "probabilities": scores}

    def from_prediction_records(self, records: list[dict], label_names: list[str]):
        p = self._clipped(records, label_names)
        truth = np.array([[float(n in r["true_labels"]) for n in label_names] for r in records])
        return np.log(p) - np.log1p(-p), truth

    def truth_record(self, truth, label_names: list[str]) -> dict:
        return {"true_labels": [label_names[i] for i, x in enumerate(truth) if x]}


class Regression(TaskStrategy):
    """A number per row: the model's output is the prediction (no activation, no calibration, no decision)."""

    target = NUMBER

    def probabilities(self, logits, temperature: float = 1.0):
        return logits.reshape(-1)

    def decide(self, probabilities, label_names: list[str], threshold: float = 0.5, thresholds: dict | None = None):
        return probabilities  # the number is the decision

    def _metrics(self, logits, labels, label_names, threshold, thresholds) -> dict:
        return metrics.regression_metrics(logits.reshape(-1), labels.astype(np.float64).reshape(-1))

    def _same_decision(self, a, b, threshold: float):
        return np.abs(a - b) <= 0.01 * max(float(np.ptp(a)), 1e-6)

    def prediction_rows(
        self, logits, label_names: list[str], threshold: float, thresholds: dict | None = None, temperature: float = 1.0
    ) -> list[dict]:
        return [{"value": float(p)} for p in self.probabilities(np.asarray(logits, dtype=np.float64), temperature)]

    def from_prediction_records(self, records: list[dict], label_names: list[str]):
        return np.array([r["value"] for r in records], float), np.array([r["true_value"] for r in records], float)

    def truth_record(self, truth, label_names: list[str]) -> dict:
        return {"true_value": float(truth)}


STRATEGIES: dict[str, TaskStrategy] = {strategy.target: strategy for strategy in (SingleLabel(), MultiLabel(),
                                                                                    Regression())}


def strategy_of(task: Task) -> TaskStrategy:
    """The behaviour of `task`'s target type."""
    return STRATEGIES[task.target]


def trainer_metrics_function(task: Task, label_names: list[str], threshold: float):
    """compute_metrics for transformers' Trainer."""
    strategy = strategy_of(task)

    def compute(eval_prediction) -> dict:
        logits = eval_prediction.predictions
        if isinstance(logits, tuple):
            logits = logits[0]
        return strategy.compute_metrics(logits, eval_prediction.label_ids, label_names, threshold)

    return compute
