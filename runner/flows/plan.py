"""`runner run --dry-run`: the resolved spec with every default filled in, and what the run will do."""

from __future__ import annotations

import yaml

from runner.spec.document import Spec


def describe_plan(spec: Spec) -> str:
    data, model, train, lora = spec.data, spec.model, spec.train, spec.lora
    if data.hub:
        source = f"Hub dataset {data.hub.id} (split {data.hub.split})"
    else:
        source = str(spec.resolve(data.train))
    folds = data.cross_validation.folds if data.cross_validation else None
    validation = (
        f"out of fold, every training row in one of {folds} folds (seed {spec.seed}"
        f"{', stratified' if data.stratify else ''})" if folds else None
    ) or (
        data.validation_file
        or (data.hub.validation_split if data.hub else None)
        or f"{data.validation_fraction:.0%} held out "
        f"(seed {spec.seed}{', stratified' if data.stratify else ''})"
    )
    method = (
        f"LoRA r={lora.r} alpha={lora.alpha} targets={lora.target_modules or 'architecture default'}"
        if lora
        else "full fine-tuning"
    )
    steps = f"{train.max_steps} steps" if train.max_steps else f"{train.epochs} epoch(s)"
    from runner.flows.recipe import flow_of

    trainings = flow_of(spec).describe(spec)
    if spec.search:
        from runner.flows.search import describe as describe_search

        trainings = f"{describe_search(spec)} {trainings}"
    plan = [
        f"0. flow: {trainings}",
        f"1. data: {source}; text column '{data.text_column}', label column '{data.label_column}'; validation: "
        f"{validation}"
        + (
            f"; test: {data.test_file or (data.hub.test_split if data.hub else None)}"
            if data.test_file or (data.hub and data.hub.test_split)
            else ""
        ),
        f"2. model: {model.name} ({spec.task.name}), {method}; max_length {model.max_length}",
        f"3. train: {steps}, lr {train.learning_rate}, batch {train.batch_size} x "
        f"{train.gradient_accumulation_steps}, "
        f"precision {train.precision}, device {train.device}, best model by {train.metric_for_best_model}"
        + (
            f", early stopping after {train.early_stopping_patience} evaluation(s) without improvement"
            if train.early_stopping_patience
            else ""
        ),
        f"4. evaluate and record into {spec.output_dir}/ (model, metrics.json, report.md, run.json)",
        f"5. publish: push to {spec.hub.repo_id}" + (f", tag {spec.hub.tag}" if spec.hub.tag else "")
        if spec.hub.push
        else "5. publish: no (hub.push is false)",
    ]
    from runner.redact import redact_text  # a token pasted into a spec or a --set is not printed

    resolved = yaml.safe_dump(spec.values, sort_keys=False, allow_unicode=True)
    return redact_text("# resolved spec (every default filled in)\n" + resolved + "\n# plan\n" + "\n".join(plan) + "\n")
