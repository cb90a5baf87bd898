"""Hyperparameter search (`search: {trials: N, ...}`): a flow above the single run.

The trials run through transformers' `Trainer.hyperparameter_search` with the Optuna backend: a
TPE sampler seeded with the spec's seed (the same spec, data and seed give the same trials), and
median pruning on the evaluations made during training. Each trial trains on the training split
and is judged on the validation split by `search.metric` at its last evaluation, in a temporary
folder, without checkpoints or early stopping. Then the run proper (the recipe, or
cross-validation) trains with the best trial's values; every trial goes into run.json and the
report, and `best-spec.yaml` in the run folder is the spec with those values, ready to commit.

Optuna is imported only here, when a search runs (`runner validate` checks it is installed).
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

from runner.distributed import say
from runner.errors import RunError, SpecError
from runner.spec import Spec
from runner.tasks import lower_is_better, task_of

DEFAULT_SPACE = {
    "learning_rate": {"low": 1e-5, "high": 1e-3, "log": True},
    "batch_size": {"choices": [8, 16, 32]},
    "epochs": {"low": 1, "high": 5},
    "weight_decay": {"low": 0.0, "high": 0.1},
    "warmup_ratio": {"low": 0.0, "high": 0.2},
    "lora_r": {"choices": [4, 8, 16, 32]},
}
WHOLE_NUMBERS = ("batch_size", "epochs", "lora_r")
# search key -> (the spec's place for it, the TrainingArguments field a trial sets; None: the model's)
PLACES = {
    "learning_rate": (("train", "learning_rate"), "learning_rate"),
    "batch_size": (("train", "batch_size"), "per_device_train_batch_size"),
    "epochs": (("train", "epochs"), "num_train_epochs"),
    "weight_decay": (("train", "weight_decay"), "weight_decay"),
    "warmup_ratio": (("train", "warmup_ratio"), "warmup_steps"),  # below 1: a share of the steps
    "lora_r": (("lora", "r"), None),
}


def search_space(spec: Spec) -> dict:
    """The space searched: the spec's own, or the default (the LoRA rank only with LoRA)."""
    given = spec["search"]["space"]
    if given:
        return {key: bounds for key, bounds in given.items() if bounds}
    return {key: bounds for key, bounds in DEFAULT_SPACE.items() if key != "lora_r" or spec["lora"]}


def sample(trial, space: dict) -> dict:
    """One trial's values. Optuna gives the same value again when a trial asks twice for a name."""
    values = {}
    for key, bounds in space.items():
        if bounds.get("choices"):
            choices = [int(c) if key in WHOLE_NUMBERS else float(c) for c in bounds["choices"]]
            values[key] = trial.suggest_categorical(key, choices)
        elif key in WHOLE_NUMBERS:
            values[key] = trial.suggest_int(key, int(bounds["low"]), int(bounds["high"]), log=bool(bounds.get("log")))
        else:
            values[key] = trial.suggest_float(key, bounds["low"], bounds["high"], log=bool(bounds.get("log")))
    return values


def with_values(spec: Spec, values: dict, drop_search: bool = False) -> Spec:
    """A copy of the spec with search values in their places (positions kept: errors point at the spec)."""
    copied = copy.deepcopy(spec.values)
    for key, value in values.items():
        (section, name), _ = PLACES[key]
        copied[section][name] = value
    if drop_search:
        copied.pop("search", None)
    return Spec(values=copied, path=spec.path, text=spec.text, positions=spec.positions)


def search_settings(spec: Spec) -> Spec:
    """The spec a trial trains with: no checkpoints, no best-model reload, no early stopping, no trackers."""
    values = copy.deepcopy(spec.values)
    values["train"].update(save_strategy="no", load_best_model_at_end=False, early_stopping_patience=None, report_to=[])
    return Spec(values=values, path=spec.path, text=spec.text, positions=spec.positions)


def run_search(spec: Spec, overwrite: bool = False, resume: bool = False, argv=()) -> Path:
    """Search, then the run with the best trial's values. Returns the run folder."""
    from runner.doctor import check_gpu_usable
    from runner.preflight import prepare
    from runner.rundir import RunDir

    if resume:
        raise SpecError("a search cannot be resumed", "run it again with --overwrite", spec.where("search"))
    check_gpu_usable(spec["train"]["device"])
    prepare(
        RunDir(spec.output_dir), overwrite=overwrite, resume=False
    )  # a finished run there stops it now, not after the trials
    record = search(spec)
    from runner.bestspec import best_spec_text, rounded  # 3 significant figures: best-spec.yaml reproduces the run

    best = with_values(spec, rounded(record["best"]["params"]), drop_search=True)
    best.text = best_spec_text(spec, record["best"]["params"], record, RunDir(spec.output_dir).best_spec_file)

    def before_record(run_dir, result) -> None:
        from runner.files import atomic_write_text

        result.search = record
        atomic_write_text(run_dir.best_spec_file, best.text)

    if best["data"]["cross_validation"]:
        from runner.crossval import run_crossval

        return run_crossval(best, overwrite=overwrite, argv=argv, before_record=before_record)
    from runner.recipe import run_spec

    return run_spec(best, overwrite=overwrite, argv=argv, before_record=before_record)


def search(spec: Spec) -> dict:
    """Run the trials; the record that run.json keeps: settings, every trial, the best one."""
    import optuna
    from transformers import set_seed

    from runner import data as data_step
    from runner import model as model_step
    from runner import train as train_step
    from runner.metrics import trainer_metrics_function

    task, settings = task_of(spec["task"]), spec["search"]
    metric = settings["metric"] or spec["train"]["metric_for_best_model"]
    direction = "minimize" if lower_is_better(metric) else "maximize"
    space = search_space(spec)
    set_seed(spec["seed"])
    data = data_step.prepare_data(spec)
    tokenizer = model_step.load_tokenizer(spec)
    tokenized = model_step.tokenize_splits(
        {name: data.splits[name] for name in ("train", "validation")},
        tokenizer,
        spec["model"]["max_length"],
        has_pair=bool(spec["data"]["text_pair_column"]),
    )
    device = train_step.choose_device(spec["train"]["device"])
    precision = train_step.choose_precision(spec["train"]["precision"], device)
    trial_spec = search_settings(spec)

    def model_init(trial=None):
        trial_values = sample(trial, space) if trial is not None else {}
        chosen = with_values(spec, {k: v for k, v in trial_values.items() if PLACES[k][1] is None})
        model = model_step.load_model(chosen, data.labels, tokenizer)
        return model_step.apply_lora(model, chosen) if chosen["lora"] else model

    def hp_space(trial) -> dict:
        return {PLACES[k][1]: v for k, v in sample(trial, space).items() if PLACES[k][1]}

    pruner = optuna.pruners.MedianPruner(n_startup_trials=2) if settings["pruning"] else optuna.pruners.NopPruner()
    sampler = optuna.samplers.TPESampler(seed=spec["seed"])
    storage, name = optuna.storages.InMemoryStorage(), f"runner-{spec['name']}"
    say(
        f"search: {settings['trials']} trial(s) over {', '.join(space)}; {direction} validation {metric} "
        f"(TPE sampler, seed {spec['seed']}; {'median pruning' if settings['pruning'] else 'no pruning'})"
    )
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="runner-search-") as scratch:
        args = train_step.training_arguments(trial_spec, Path(scratch), device, precision)
        for field in ("learning_rate", "num_train_epochs", "weight_decay", "warmup_steps"):
            setattr(args, field, float(getattr(args, field)))  # a trial's value is cast to the field's type
        trainer = train_step.length_ordered_trainer()(
            model_init=model_init,
            args=args,
            train_dataset=tokenized["train"],
            eval_dataset=train_step.sorted_by_length(tokenized["validation"]),
            processing_class=tokenizer,
            data_collator=train_step.PadBatch(tokenizer),
            compute_metrics=trainer_metrics_function(task, data.labels, spec["predict"]["threshold"]),
        )
        timeout = settings["timeout_minutes"] * 60 if settings["timeout_minutes"] else None
        try:
            trainer.hyperparameter_search(
                hp_space=hp_space,
                compute_objective=lambda metrics: metrics[f"eval_{metric}"],
                n_trials=settings["trials"],
                direction=direction,
                backend="optuna",
                sampler=sampler,
                pruner=pruner,
                storage=storage,
                study_name=name,
                timeout=timeout,
            )
        except ValueError as exc:  # optuna: no trial completed (all pruned or failed)
            raise RunError(
                f"the search found no best trial: {str(exc).splitlines()[0]}",
                "raise search.trials, or set search.pruning: false",
            ) from None
    study = optuna.load_study(study_name=name, storage=storage)
    return study_record(study, metric, direction, space, spec, round(time.perf_counter() - started, 3))


def study_record(study, metric: str, direction: str, space: dict, spec: Spec, seconds: float) -> dict:
    trials = []
    for trial in study.trials:
        duration = trial.duration.total_seconds() if trial.duration else None
        trials.append(
            {
                "number": trial.number,
                "state": trial.state.name.lower(),
                "value": None if trial.value is None else round(float(trial.value), 6),
                "params": {k: (round(v, 8) if isinstance(v, float) else v) for k, v in trial.params.items()},
                "seconds": None if duration is None else round(duration, 3),
                "intermediate": {
                    str(step): round(float(v), 6) for step, v in sorted(trial.intermediate_values.items())
                },
            }
        )
    best = study.best_trial
    say(f"search: best trial {best.number}, validation {metric} {best.value:.4f}, {best.params} ({seconds:.0f} s)")
    return {
        "metric": metric,
        "split": "validation",
        "direction": direction,
        "trials_asked": spec["search"]["trials"],
        "sampler": f"TPE (seed {spec['seed']})",
        "pruner": "median" if spec["search"]["pruning"] else "none",
        "space": space,
        "seconds": seconds,
        "trials": trials,
        "best": {"number": best.number, "value": round(float(best.value), 6), "params": dict(best.params)},
    }
