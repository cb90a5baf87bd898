"""The single run: train on the training split, choose the best checkpoint on validation, evaluate
validation (and test). A flow beside cross-validation; runner.flows.recipe runs either through the same
pipeline and run-folder lifecycle."""

from __future__ import annotations

from runner.console import shown
from runner.flows.lifecycle import RunFolder
from runner.spec.document import Spec
from runner.train import pipeline

RESUMABLE = True


def describe(spec: Spec) -> str:
    return "one training on the training split, the best checkpoint chosen on validation"


def load(spec: Spec, folder: RunFolder) -> pipeline.Inputs:
    """Data (checked), tokens, model and Trainer, before the folder is touched."""
    from runner.flows.preflight import check_fingerprint, input_inside_run

    data = pipeline.load_data(spec.data, spec.predict, spec.task, labels=spec.labels, seed=spec.seed,
                              resolve=spec.resolve, where=spec.where,
                              preflight=lambda files: input_inside_run(spec, files, folder.run_dir))
    fingerprint = check_fingerprint(
        folder.path, spec, data.files, resuming=folder.checkpoint is not None, force=folder.force_resume
    )
    tokenizer = pipeline.load_tokenizer(spec.model, spec.resolve, spec.where)
    inputs = pipeline.build_inputs(spec.model, spec.lora, spec.train, spec.predict, spec.task, seed=spec.seed,
                                   resolve=spec.resolve, where=spec.where, data=data, splits=data.splits,
                                   output_dir=folder.path, tokenizer=tokenizer)
    inputs.fingerprint, inputs.checkpoint = fingerprint, folder.checkpoint
    return inputs


def evaluate(spec: Spec, inputs: pipeline.Inputs, result) -> tuple[dict, dict]:
    """Validation and test with the best model; returns the logits and the truth by split."""
    task, labels, threshold = spec.task, inputs.data.labels, spec.predict.threshold
    logits, truth = {}, {}
    for split in ("validation", "test"):
        if split in inputs.tokenized:
            evaluation = pipeline.evaluate_split(
                inputs.trainer, inputs.tokenized[split], task, labels, threshold, split
            )
            pipeline.record_evaluation(result, split, evaluation)
            logits[split], truth[split] = evaluation.logits, evaluation.truth
    metric = spec.train.metric_for_best_model
    result.metrics["headline"] = {"split": "validation", "name": metric, "value": result.metrics["validation"][metric]}
    return logits, truth


def write_extras(run_dir, result) -> None:
    """Nothing beyond the record every flow writes."""


def done_line(result, run_dir) -> str:
    """The run's last line: the headline split's figure and, beside it, the test split's (the one no choice saw),
    with what the headline split chose."""
    headline = result.headline
    split, name = headline["split"], headline["name"]
    line = f"done: {split} {name} = {headline['value']:.4f}"
    test = (result.metrics.get("test") or {}).get(name)
    if split != "test" and isinstance(test, (int, float)):
        chose = ["the checkpoint"] + (["the thresholds"] if result.thresholds else []) + (
            ["the calibration"] if (result.calibration or {}).get("applied") or result.temperature else [])
        listed = ", ".join(chose[:-1]) + (" and " if len(chose) > 1 else "") + chose[-1]
        line += f" · test {name} = {test:.4f} ({split} chose {listed}; test is held out)"
    return f"{line}; run folder {shown(run_dir.path)}"
