"""How to call a pipeline() on a task, for the model card: the code lines, with the run's temperature (or
vector scaling) and tuned thresholds applied when it has them."""

from __future__ import annotations

from runner.spec.tasks import MANY_CLASSES, NUMBER, Task


def usage_lines(
    task: Task,
    example: str,
    threshold: float,
    thresholds: dict | None = None,
    temperature: float | None = None,
    inline: bool = False,
) -> list[str]:
    """How to call a pipeline() on this task, for the model card; with a temperature or tuned
    thresholds, how to apply them (read from the model's config.json, or `inline` as numbers)."""
    if (thresholds or temperature) and task.has_labels and not task.pair:
        return _calibrated_usage(task, example, threshold, thresholds, temperature, inline)
    if task.pair:
        return [f'classifier({{"text": "{example}", "text_pair": "the staff were helpful"}})']
    if task.target == MANY_CLASSES:
        return [
            f'scores = classifier("{example}", top_k=None)  # every label with its probability',
            f'labels = [s["label"] for s in scores if s["score"] >= {threshold}]',
        ]
    if task.target == NUMBER:
        return [f'classifier("{example}", function_to_apply="none")  # score = the predicted number']
    return [f'classifier("{example}")']


def _calibrated_usage(
    task: Task, example: str, threshold: float, thresholds: dict | None, temperature, inline: bool
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
    if task.multi_label:
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
