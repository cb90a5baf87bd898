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

import time
from pathlib import Path

from runner.console import say
from runner.errors import RunError
from runner.spec.document import Spec
from runner.spec.searchspace import PLACES, WHOLE_NUMBERS, space_of
from runner.spec.tasks import lower_is_better

RESUMABLE = False  # the trials run in a temporary folder that is not kept


def search_space(spec: Spec) -> dict:
    return space_of(spec.values)


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
    sections: dict = {}
    for key, value in values.items():
        (section, name), _ = PLACES[key]
        sections.setdefault(section, {})[name] = value
    return spec.replace(drop=("search",) if drop_search else (), **sections)


def search_settings(spec: Spec) -> Spec:
    """The spec a trial trains with: no checkpoints, no best-model reload, no early stopping, no trackers."""
    return spec.replace(
        train={"save_strategy": "no", "load_best_model_at_end": False, "early_stopping_patience": None,
               "report_to": []}
    )


def describe(spec: Spec) -> str:
    return f"a search of {spec.search.trials} trial(s) over {', '.join(search_space(spec))}, then"


def best_spec(spec: Spec, record: dict, destination: Path) -> Spec:
    """The spec the run trains with after a search: the best trial's values (3 significant figures), no
    `search`; its text is best-spec.yaml, a minimal edit of the user's spec valid at `destination`."""
    from runner.flows.bestspec import best_spec_text, rounded

    best = with_values(spec, rounded(record["best"]["params"]), drop_search=True)
    return best.replace(text=best_spec_text(spec, record["best"]["params"], record, destination))


def search(spec: Spec, rerun: str = "") -> dict:
    """Run the trials in a temporary folder; the record that run.json keeps: settings, every trial, the
    best one, and the class weights every trial trained with. `rerun`: the command that repeats the run."""
    import optuna

    from runner.train import pipeline

    settings = spec.search
    metric = settings.metric or spec.train.metric_for_best_model
    direction = "minimize" if lower_is_better(metric) else "maximize"
    space = search_space(spec)
    data = pipeline.load_data(spec.data, spec.predict, spec.task, labels=spec.labels, seed=spec.seed,
                              resolve=spec.resolve, where=spec.where)
    tokenizer = pipeline.load_tokenizer(spec.model, spec.resolve, spec.where)
    parts = pipeline.prepare_parts(spec.model, spec.train, spec.task, spec.where, data,
                                   {name: data.splits[name] for name in ("train", "validation")}, tokenizer)
    def model_init(trial=None):
        trial_values = sample(trial, space) if trial is not None else {}
        chosen = with_values(spec, {k: v for k, v in trial_values.items() if PLACES[k][1] is None})
        return pipeline.build_model(chosen.model, chosen.lora, chosen.task, data.labels, parts.tokenizer,
                                    seed=chosen.seed, resolve=chosen.resolve, where=chosen.where)

    def hp_space(trial) -> dict:
        return {PLACES[k][1]: v for k, v in sample(trial, space).items() if PLACES[k][1]}

    pruner = optuna.pruners.MedianPruner(n_startup_trials=2) if settings.pruning else optuna.pruners.NopPruner()
    sampler = optuna.samplers.TPESampler(seed=spec.seed)
    storage, name = optuna.storages.InMemoryStorage(), f"runner-{spec.name}"
    say(
        f"search: {settings.trials} trial(s) over {', '.join(space)}; {direction} validation {metric} "
        f"(TPE sampler, seed {spec.seed}; {'median pruning' if settings.pruning else 'no pruning'})"
    )
    started = time.perf_counter()
    timeout = settings.timeout_minutes * 60 if settings.timeout_minutes else None
    with pipeline.scratch_folder("runner-search-") as scratch:
        each = search_settings(spec)  # every trial's settings
        trainer = pipeline.build_trainer(each.train, each.predict, each.task, seed=each.seed, where=each.where,
                                         model=None, parts=parts, output_dir=Path(scratch), model_init=model_init)
        for field in ("learning_rate", "num_train_epochs", "weight_decay", "warmup_steps"):
            setattr(trainer.args, field, float(getattr(trainer.args, field)))  # a trial's value is cast to its type
        try:
            pipeline.fit(
                trainer,
                Path(scratch),
                what="searching",
                resume_hint=rerun,
                run=lambda: trainer.hyperparameter_search(
                    hp_space=hp_space,
                    compute_objective=lambda metrics: metrics[f"eval_{metric}"],
                    n_trials=settings.trials,
                    direction=direction,
                    backend="optuna",
                    sampler=sampler,
                    pruner=pruner,
                    storage=storage,
                    study_name=name,
                    timeout=timeout,
                ),
            )
        except ValueError as exc:  # optuna: no trial completed (all pruned or failed)
            raise RunError(
                f"the search found no best trial: {str(exc).splitlines()[0]}",
                "raise search.trials, or set search.pruning: false",
            ) from None
    study = optuna.load_study(study_name=name, storage=storage)
    record = study_record(study, metric, direction, space, spec, round(time.perf_counter() - started, 3))
    record["class_weights"] = parts.class_weights
    return record


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
        "trials_asked": spec.search.trials,
        "sampler": f"TPE (seed {spec.seed})",
        "pruner": "median" if spec.search.pruning else "none",
        "space": space,
        "seconds": seconds,
        "trials": trials,
        "best": {"number": best.number, "value": round(float(best.value), 6), "params": dict(best.params)},
    }
