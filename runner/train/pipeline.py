"""The pipeline's pieces, written once and used by every flow (the single run, each cross-validation
fold and its final model, each search trial): data with its checks, hardware, tokens, the model (with
LoRA), the Trainer (with class weights), `fit` (Trainer.train with the stop-signal, out-of-memory and
full-disk translation) and `evaluate_split`. A feature added here reaches every flow by construction.
"""

from __future__ import annotations

import dataclasses
import logging
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from runner.console import say
from runner.errors import Interrupted, RunError, SpecError
from runner.files import cache_root
from runner.spec.sections import DataSection, LoraSection, ModelSection, PredictSection, TrainSection
from runner.spec.tasks import Task

if TYPE_CHECKING:
    from runner.train.model import Resolve, Where


@dataclass
class Inputs:
    """Everything a training needs, loaded and checked before a run folder is touched."""

    data: object  # runner.data.prepare.PreparedData
    tokenized: dict
    tokenizer: object
    model: object
    trainer: object
    device: str
    precision: str
    class_weights: dict = field(default_factory=dict)
    token_stats: dict = field(default_factory=dict)
    """Token lengths and truncation of the tokenized splits (runner.train.model.token_stats)."""
    fingerprint: dict = field(default_factory=dict)
    checkpoint: Path | None = None
    out_of_fold: dict | None = None
    """Cross-validation: the folds' out-of-fold logits and records."""


@dataclass
class Evaluation:
    """One split evaluated: its metrics, per-class table, confusion matrix, logits and truth."""

    metrics: dict
    per_class: dict | None
    confusion: list | None
    logits: object
    truth: object


def seed_everything(seed: int) -> None:
    from transformers import set_seed

    set_seed(seed)


def load_data(data: DataSection, predict: PredictSection, task: Task, *, labels: list[str] | None, seed: int,
              resolve: Resolve, where: Where, preflight=None, check: bool = True):
    """The prepared splits (`labels`: the spec's own, else found in the data; `resolve`: a path in the spec,
    `spec.resolve`), checked (duplicates, leakage, short/long texts, rare classes, and the settings the labels
    found in the data refuse, such as tuned thresholds on three classes, told at `where`). `preflight`: the flow's
    check of the data files ({role: path}) before anything else is said (a file inside the run folder's
    outputs). A flow that trains on other splits of these rows (cross-validation) checks and describes those
    itself (`check=False`)."""
    from runner.data import prepare as data_step
    from runner.data.datachecks import check_prepared

    seed_everything(seed)
    prepared = data_step.prepare_data(data, task, labels, seed, resolve)
    if preflight is not None:
        preflight(prepared.files)
    if not check:
        return prepared
    summary = prepared.summary
    say(f"data: {', '.join(f'{n} {r} rows' for n, r in summary['rows'].items())}; {summary['split_note']}")
    checks = check_prepared(predict, task, prepared, where)
    return dataclasses.replace(prepared, summary={**summary, "checks": checks})


def hardware(train: TrainSection) -> tuple[str, str]:
    """(device, precision) for train.device and train.precision on this machine."""
    from runner.train import trainer as train_step

    device = train_step.choose_device(train.device)
    return device, train_step.choose_precision(train.precision, device)


def load_tokenizer(model: ModelSection, resolve: Resolve, where: Where):
    """The tokenizer of model.name (`resolve`: a path in the spec, `spec.resolve`; `where`: `spec.where`)."""
    from runner.train import model as model_step

    return model_step.load_tokenizer(model, model_step.resolve_model_source(model, resolve, where), where)


def tokenize(splits: dict, tokenizer, max_length: int, has_pair: bool) -> dict:
    """The splits tokenized (cached by content); a cache that cannot be written is a RunError."""
    from runner.train import model as model_step

    try:
        return model_step.tokenize_splits(splits, tokenizer, max_length, has_pair=has_pair)
    except OSError as exc:  # the tokenization cache could not be written: disk full, permissions
        raise RunError(
            f"could not write the tokenized data: {exc.strerror or exc}",
            "free disk space, or point RUNNER_CACHE_DIR at a folder with room",
            str(exc.filename or cache_root()),
        ) from None


def build_model(model: ModelSection, lora: LoraSection | None, task: Task, labels: list[str], tokenizer, *, seed: int,
                resolve: Resolve, where: Where):
    """The model to train, seeded (its new head is initialised from `seed`), with LoRA when asked."""
    from runner.train import model as model_step

    seed_everything(seed)
    found = model_step.resolve_model_source(model, resolve, where)
    loaded, new = model_step.load_model(model, found, task, labels, where, tokenizer)
    return model_step.apply_lora(loaded, lora, where("lora", "target_modules"), new) if lora else loaded


def class_weights_for(train: TrainSection, task: Task, where: Where, train_labels, labels: list[str]) -> dict:
    """train.class_weights from these training labels ({} without)."""
    from runner.train.weights import class_weights

    return class_weights(train.class_weights, train_labels, labels, task, where("train", "class_weights"))


@dataclass
class Parts:
    """What a Trainer is built from besides its model: the tokens, the labels, the hardware, the class weights."""

    tokenizer: object
    tokenized: dict
    labels: list[str]
    device: str
    precision: str
    class_weights: dict
    token_stats: dict


def prepare_parts(model: ModelSection, train: TrainSection, task: Task, where: Where, data, splits: dict, tokenizer,
                  hardware_=None, quiet: bool = False) -> Parts:
    """Tokens of `splits` (with their text pairs where the prepared rows have them), the hardware and the class
    weights (from `splits["train"]`), said unless `quiet`."""
    from runner.train import model as model_step

    device, precision = hardware_ or hardware(train)
    has_pair = "text_pair" in splits["train"].columns  # the data step adds it for data.text_pair_column
    tokenized = tokenize(splits, tokenizer, model.max_length, has_pair=has_pair)
    stats = model_step.token_stats(tokenized, model.max_length)
    weights = class_weights_for(train, task, where, splits["train"]["label"], data.labels)
    if not quiet:
        truncated = stats["truncated"]
        say(
            f"tokens: median {stats['token_lengths']['p50']}, p95 {stats['token_lengths']['p95']}; "
            f"{truncated['rows']} training row(s) truncated at {truncated['max_length']}"
        )
        if weights:
            say("class weights: " + ", ".join(f"{name} {value:.3g}" for name, value in weights.items()))
    return Parts(tokenizer, tokenized, data.labels, device, precision, weights, stats)


def build_trainer(train: TrainSection, predict: PredictSection, task: Task, *, seed: int, where: Where, model,
                  parts: Parts, output_dir: Path, model_init=None):
    """The Trainer for `model` (or `model_init`, a search), with the settings refused now, not mid-run."""
    from runner.train import trainer as train_step

    try:
        return train_step.build_trainer(
            train,
            task,
            predict.threshold,
            seed,
            model,
            parts.tokenizer,
            parts.tokenized,
            parts.labels,
            output_dir,
            parts.device,
            parts.precision,
            class_weights=parts.class_weights,
            model_init=model_init,
        )
    except (ImportError, RuntimeError, ValueError) as exc:
        raise SpecError(
            f"the Trainer refused the settings: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            "check train.report_to (is the tracker installed?) and the other train settings",
            where("train"),
        ) from None


def build_inputs(
    model: ModelSection, lora: LoraSection | None, train: TrainSection, predict: PredictSection, task: Task, *,
    seed: int, resolve: Resolve, where: Where, data, splits: dict, output_dir: Path, tokenizer, hardware_=None,
    quiet: bool = False,
) -> Inputs:
    """Tokens, model, class weights (from `splits["train"]`) and the Trainer for one training of `splits`, with
    these sections (a flow passes the spec's) and the tokenizer loaded once (load_tokenizer)."""
    from runner.train import model as model_step

    parts = prepare_parts(model, train, task, where, data, splits, tokenizer, hardware_, quiet)
    built = build_model(model, lora, task, data.labels, parts.tokenizer, seed=seed, resolve=resolve, where=where)
    if not quiet:
        trainable, total = model_step.count_parameters(built)
        say(
            f"model: {model.name} ({'LoRA' if lora else 'full fine-tuning'}), "
            f"{trainable:,} trainable of {total:,} parameters ({100 * trainable / total:.2f}%); device "
            f"{parts.device}, {parts.precision}"
        )
    return Inputs(
        data=data,
        tokenized=parts.tokenized,
        tokenizer=parts.tokenizer,
        model=built,
        trainer=build_trainer(train, predict, task, seed=seed, where=where, model=built, parts=parts,
                              output_dir=output_dir),
        device=parts.device,
        precision=parts.precision,
        class_weights=parts.class_weights,
        token_stats=parts.token_stats,
    )


@contextmanager
def scratch_folder(prefix: str):
    """A temporary folder for trainings whose files are not kept (folds, trials): removed at the end, and a
    stop signal that arrives while it is being removed waits until it is gone (it is never left half-removed)."""
    import signal

    from runner.files import remove, temporary_folder

    folder = temporary_folder(prefix=prefix)
    try:
        yield folder
    finally:
        stops = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stops)
        try:
            remove(folder, ignore_errors=True)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, stops)


class _Stopped(Exception):
    """Raised inside a training that cannot be resumed (a fold, a search trial) when a stop signal came."""


def _not_a_stop(record) -> bool:
    """A logging filter: a trial that failed because it was stopped is not logged with its traceback."""
    return not (record.exc_info and isinstance(record.exc_info[1], _Stopped))


def after_failed_write(checkpoints: Path, resume_hint: str) -> str:
    """What to do once there is space again. The checkpoints newer than the last complete one are what the failed
    write left (they hold the space, and --resume would skip them): removed. --resume is offered only when a
    complete checkpoint remains."""
    from runner.files import remove
    from runner.train.checkpoints import checkpoint_folders
    from runner.train.trainer import checkpoint_problem

    found = checkpoint_folders(checkpoints)
    newest = max((step for step, path in found.items() if checkpoint_problem(path) is None), default=-1)
    for step, path in found.items():
        if step > newest:
            remove(path, ignore_errors=True)
    if newest >= 0 and resume_hint:
        return resume_hint
    return "run the command again with --overwrite (no complete checkpoint was written: nothing to resume)"


FULL_DISK = ("inline_container", "unexpected pos", "No space left", "os error 28", "Disk quota")


def safetensors_error() -> type:
    from safetensors import SafetensorError  # what safetensors raises when a weights file cannot be written

    return SafetensorError


def fit(
    trainer,
    checkpoints: Path,
    checkpoint: Path | None = None,
    what: str = "training",
    resume_hint: str = "",
    run=None,
    resumable: bool = True,
):
    """Trainer.train (or `run()`, a search's trials) with a clean stop on SIGINT/SIGTERM and the failures a
    user can fix told as such. Returns what the training returned.

    A stop signal raises Interrupted with `resume_hint`, the command that continues (`resumable`: a
    checkpoint is saved first) or repeats the run (a fold, a search: it stops at once, nothing kept).
    """
    from transformers import TrainerCallback

    from runner.train import trainer as train_step

    resumable = resumable and run is None
    with train_step.GracefulStop(saves=resumable) as stop:
        if resumable:
            trainer.add_callback(stop.callback())
        else:

            class AbortOnSignal(TrainerCallback):
                def on_step_end(self, args, state, control, **kwargs):
                    if stop.signal_number is not None:
                        raise _Stopped

            trainer.add_callback(AbortOnSignal())
            logging.getLogger("optuna.study._optimize").addFilter(_not_a_stop)
        try:
            output = run() if run else trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        except _Stopped:
            pass
        except (RuntimeError, safetensors_error()) as exc:
            if "out of memory" in str(exc).lower():
                raise RunError(
                    f"out of memory while {what}: {str(exc).splitlines()[0]}",
                    "lower train.batch_size (raise gradient_accumulation_steps to keep the effective size), "
                    "lower model.max_length, or set train.auto_find_batch_size: true",
                ) from None
            if any(sign in str(exc) for sign in FULL_DISK):  # torch.save or safetensors on a full disk
                raise RunError(
                    f"a checkpoint could not be written while {what} (is the disk full?)",
                    f"free disk space, then {after_failed_write(checkpoints, resume_hint)}",
                    str(checkpoints),
                ) from None
            raise
        except OSError as exc:  # a checkpoint or log that could not be written: disk full, permissions
            raise RunError(
                f"a write failed while {what}: {exc.strerror or exc}",
                "free disk space (or fix the folder's permissions), then "
                + after_failed_write(checkpoints, resume_hint),
                str(exc.filename or checkpoints),
            ) from None
    if stop.signal_number is not None:
        if resumable:
            message, hint = f"interrupted at step {trainer.state.global_step}", f"continue with: {resume_hint}"
        else:
            message = f"interrupted while {what} (step {trainer.state.global_step}); nothing was kept"
            hint = f"start again with: {resume_hint}" if resume_hint else "run the same command again"
        raise Interrupted(message, hint, exit_code=stop.exit_code)
    if run is None:  # a model sharded over the processes is gathered now, while every process is here to help
        from runner.train.sharded import keep_full_weights

        keep_full_weights(trainer)
    return output


def evaluate_split(trainer, dataset, task, labels: list[str], threshold: float, prefix: str) -> Evaluation:
    """Predict one tokenized split and compute its metrics (loss included)."""
    prediction = trainer.predict(dataset, metric_key_prefix=prefix)
    logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
    return evaluation_of(
        logits, prediction.label_ids, task, labels, threshold, prediction.metrics.get(f"{prefix}_loss")
    )


def evaluation_of(logits, truth, task, labels: list[str], threshold: float, loss=None) -> Evaluation:
    """Metrics, per-class table and confusion matrix of given logits (out-of-fold ones, too)."""
    from runner.evaluate.strategies import strategy_of

    strategy = strategy_of(task)
    metrics = strategy.compute_metrics(logits, truth, labels, threshold)
    metrics["loss"] = round(float(loss if loss is not None else float("nan")), 6)
    return Evaluation(
        metrics=metrics,
        per_class=strategy.per_class(logits, truth, labels, threshold) if task.has_labels else None,
        confusion=strategy.confusion(logits, truth, labels),
        logits=logits,
        truth=truth,
    )


def record_evaluation(result, split: str, evaluation: Evaluation) -> None:
    """Put one split's evaluation into the run's result."""
    result.metrics[split] = evaluation.metrics
    if evaluation.per_class is not None:
        result.per_class[split] = evaluation.per_class
    if evaluation.confusion is not None:
        result.confusion_matrix[split] = evaluation.confusion
