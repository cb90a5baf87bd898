"""The run, top to bottom: spec -> data -> model -> train -> evaluate -> record -> publish.

`run_spec` reads as the list of phases. Every input is loaded and every check made before the run
folder is touched; only then is an earlier run set aside (renamed, not deleted), and it comes back
if the new run fails or is interrupted before it finishes. Only rank 0 writes and prints.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from runner.checkpoints import finish_checkpoints
from runner.distributed import as_launched, is_main_process, say
from runner.doctor import check_gpu_usable
from runner.errors import Interrupted, RunError, RunnerError, SpecError
from runner.files import atomic_write_json, atomic_write_text
from runner.preflight import check_fingerprint, input_inside_run, prepare
from runner.result import RunResult
from runner.rundir import ENTRIES, RECORDING, RESUME_ENTRIES, RunDir, remove_entry
from runner.spec import Spec
from runner.tasks import task_of


@dataclass
class Inputs:
    """Everything a run needs, loaded and checked before its folder is touched."""

    data: object  # runner.data.PreparedData
    tokenized: dict
    tokenizer: object
    model: object
    trainer: object
    device: str
    precision: str
    fingerprint: dict
    checkpoint: Path | None
    class_weights: dict | None = None


def run_spec(
    spec: Spec, overwrite: bool = False, resume: bool = False, force_resume: bool = False, argv=(), before_record=None
) -> Path:
    """Run the whole flow for a loaded spec. Returns the run folder. `before_record(run_dir, result)`,
    when given (a search), adds to the result and the folder once the run is evaluated.

    Raises SpecError/DataError (bad input, nothing touched), RunError (a failure at run time; an
    earlier run is restored) or Interrupted (SIGINT/SIGTERM: a checkpoint was saved).
    """
    started_at, started = now(), time.perf_counter()
    argv = list(as_launched(spec, argv)) or sys.argv  # a `--nproc N` worker records what the user ran
    check_gpu_usable(spec["train"]["device"])  # a GPU that torch cannot use stops the run before anything is read
    run_dir = RunDir(spec.output_dir)
    main = is_main_process()
    if resume and main and run_dir.status() == RECORDING:
        rewrite_record(spec, run_dir)
        publish(spec, run_dir)
        return run_dir.path
    checkpoint = prepare(run_dir, overwrite=overwrite, resume=resume)
    with run_dir.lock() if main else nullcontext():
        recover_earlier_run(run_dir) if main else None
        earlier = run_dir.written_entries()  # before the Trainer is built: it makes its output folder
        inputs = load_inputs(spec, run_dir, checkpoint, force_resume)
        with earlier_run_set_aside(run_dir, earlier, resuming=checkpoint is not None, active=main):
            result = train(spec, run_dir, inputs, argv, started_at)
            logits = evaluate(spec, inputs, result)
            if not main:
                return run_dir.path
            if before_record:
                before_record(run_dir, result)
            save(spec, run_dir, inputs, result, logits, started)
        say(
            f"done: {result.headline['split']} {result.headline['name']} = {result.headline['value']:.4f}; run folder "
            f"{run_dir.path}"
        )
    publish(spec, run_dir)
    return run_dir.path


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# 0. The run folder: recovery, and setting an earlier run aside


def recover_earlier_run(run_dir: RunDir) -> None:
    """A run killed (SIGKILL, power loss) while an earlier run was set aside left it in .previous/: put it back."""
    if run_dir.restore():
        say(f"restored the earlier run in {run_dir.path}, set aside by a run that did not finish")


@contextmanager
def earlier_run_set_aside(run_dir: RunDir, earlier: list[str], resuming: bool, active: bool = True):
    """Set the earlier run's entries (those in `earlier`) aside for the body; put them back if the body fails."""
    if not active:
        yield
        return
    try:
        moved = run_dir.set_aside([entry for entry in (RESUME_ENTRIES if resuming else ENTRIES) if entry in earlier])
    except OSError as exc:
        run_dir.restore()
        raise RunError(
            f"could not set the earlier run aside: {exc.strerror or exc}",
            "check the folder's permissions and free space",
            str(run_dir.path),
        ) from None
    try:
        yield
    except BaseException as failure:
        if moved and run_dir.restore():
            message = f"the earlier run in {run_dir.path} was restored"
            if isinstance(failure, Interrupted):
                failure.hint = f"{message}; the interrupted run was discarded"
            elif isinstance(failure, RunnerError):
                failure.hint = (
                    f"{message}, so this run's checkpoints are gone: fix the cause and run again (not --resume)"
                )
            else:
                print(f"note: {message}", file=sys.stderr)
        raise


# ---------------------------------------------------------------------------------------------
# 1-2. Data, tokens, model, trainer: everything is loaded before the folder is touched


def load_inputs(spec: Spec, run_dir: RunDir, checkpoint: Path | None, force_resume: bool) -> Inputs:
    from transformers import set_seed

    from runner import data as data_step
    from runner import model as model_step
    from runner import train as train_step

    set_seed(spec["seed"])
    data = data_step.prepare_data(spec)
    say(f"data: {', '.join(f'{n} {r} rows' for n, r in data.summary['rows'].items())}; {data.summary['split_note']}")
    input_inside_run(spec, data.files, run_dir)
    from runner.datachecks import check_prepared

    check_prepared(spec, data)  # duplicates, leakage, short/long texts, rare classes: warned, and in the summary
    current_fingerprint = check_fingerprint(
        run_dir.path, spec, data.files, resuming=checkpoint is not None, force=force_resume
    )

    device = train_step.choose_device(spec["train"]["device"])
    precision = train_step.choose_precision(spec["train"]["precision"], device)
    tokenizer = model_step.load_tokenizer(spec)
    try:
        tokenized = model_step.tokenize_splits(
            data.splits, tokenizer, spec["model"]["max_length"], has_pair=bool(spec["data"]["text_pair_column"])
        )
    except OSError as exc:  # the tokenization cache could not be written: disk full, permissions
        raise RunError(
            f"could not write the tokenized data: {exc.strerror or exc}",
            "free disk space, or point RUNNER_CACHE_DIR at a folder with room",
            str(exc.filename or model_step.cache_root()),
        ) from None
    data.summary.update(model_step.token_stats(tokenized, spec["model"]["max_length"]))
    truncated = data.summary["truncated"]
    say(
        f"tokens: median {data.summary['token_lengths']['p50']}, p95 {data.summary['token_lengths']['p95']}; "
        f"{truncated['rows']} training row(s) truncated at {truncated['max_length']}"
    )
    model = model_step.load_model(spec, data.labels, tokenizer)
    if spec["lora"]:
        model = model_step.apply_lora(model, spec)
    trainable, total = model_step.count_parameters(model)
    say(
        f"model: {spec['model']['name']} ({'LoRA' if spec['lora'] else 'full fine-tuning'}), "
        f"{trainable:,} trainable of {total:,} parameters ({100 * trainable / total:.2f}%); device {device}, "
        f"{precision}"
    )
    # The Trainer is built here too: a tracker that is not installed fails now, not after the folder is cleared.
    from runner.weights import weights_for

    weights = weights_for(spec, data)  # train.class_weights, from the training split; {} without
    try:
        trainer = train_step.build_trainer(
            spec, model, tokenizer, tokenized, data.labels, run_dir.path, device, precision, class_weights=weights
        )
    except (ImportError, RuntimeError, ValueError) as exc:
        raise SpecError(
            f"the Trainer refused the settings: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            "check train.report_to (is the tracker installed?) and the other train settings",
            spec.where("train"),
        ) from None
    return Inputs(
        data=data,
        tokenized=tokenized,
        tokenizer=tokenizer,
        model=model,
        trainer=trainer,
        device=device,
        precision=precision,
        fingerprint=current_fingerprint,
        checkpoint=checkpoint,
        class_weights=weights,
    )


# ---------------------------------------------------------------------------------------------
# 3. Train


def train(spec: Spec, run_dir: RunDir, inputs: Inputs, argv: list, started_at: str) -> RunResult:
    from runner import model as model_step
    from runner import train as train_step

    if is_main_process():
        atomic_write_json(run_dir.fingerprint_file, inputs.fingerprint)
    trainer = inputs.trainer
    with train_step.GracefulStop() as stop:
        trainer.add_callback(stop.callback())
        try:
            output = trainer.train(resume_from_checkpoint=str(inputs.checkpoint) if inputs.checkpoint else None)
        except RuntimeError as exc:
            if "out of memory" in str(exc).lower():
                raise RunError(
                    f"out of memory while training: {str(exc).splitlines()[0]}",
                    "lower train.batch_size (raise gradient_accumulation_steps to keep the effective size), "
                    "lower model.max_length, or set train.auto_find_batch_size: true",
                ) from None
            if "inline_container" in str(exc) or "unexpected pos" in str(exc):  # torch.save on a full disk
                raise RunError(
                    "a checkpoint could not be written (is the disk full?)",
                    "free disk space, then `runner run SPEC --resume` continues from the last complete checkpoint",
                    str(run_dir.checkpoints),
                ) from None
            raise
        except OSError as exc:  # a checkpoint or log that could not be written: disk full, permissions
            raise RunError(
                f"a write failed while training: {exc.strerror or exc}",
                "free disk space (or fix the folder's permissions), then `runner run SPEC --resume` continues from the "
                "last complete checkpoint",
                str(exc.filename or run_dir.checkpoints),
            ) from None
    trainable, total = model_step.count_parameters(trainer.model)
    result = RunResult(
        status="training",
        task=spec["task"],
        labels=inputs.data.labels,
        data_summary=inputs.data.summary,
        data_files=inputs.data.files,
        log_history=trainer.state.log_history,
        model=model_step.provenance(spec, trainer.model, trainable, total),
        device=train_step.describe_device(inputs.device),
        precision=inputs.precision,
        **train_step.recorded_choices(spec, inputs.device, inputs.precision),
        class_weights=inputs.class_weights or {},
        data_checks=inputs.data.summary.get("checks", {}),
        argv=[str(a) for a in argv],
        timing={
            "started_at": started_at,
            "train_seconds": round(output.metrics.get("train_runtime", 0.0), 3),
            "train_samples_per_second": round(output.metrics.get("train_samples_per_second", 0.0), 3),
            "global_step": trainer.state.global_step,
        },
    )
    if stop.signal_number is not None:
        if is_main_process():
            from runner.record.manifest import write_manifest

            result.status = "interrupted"
            result.timing["finished_at"] = now()
            write_manifest(run_dir, spec, result)
        raise Interrupted(
            f"interrupted at step {trainer.state.global_step}",
            f"continue with: runner run {spec.path} --resume",
            exit_code=stop.exit_code,
        )
    return result


# ---------------------------------------------------------------------------------------------
# 4. Evaluate the best model on validation (and test)


def evaluate(spec: Spec, inputs: Inputs, result: RunResult) -> dict:
    """Fill in the result's metrics, per-class tables and confusion matrices; return the logits by split."""
    task, labels, threshold = task_of(spec["task"]), inputs.data.labels, spec["predict"]["threshold"]
    logits_by_split, truth_by_split = {}, {}
    for split in ("validation", "test"):
        if split not in inputs.tokenized:
            continue
        prediction = inputs.trainer.predict(inputs.tokenized[split], metric_key_prefix=split)
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        metrics = task.compute_metrics(logits, prediction.label_ids, labels, threshold)
        metrics["loss"] = round(float(prediction.metrics.get(f"{split}_loss", float("nan"))), 6)
        result.metrics[split] = metrics
        if task.has_labels:
            result.per_class[split] = task.per_class(logits, prediction.label_ids, labels, threshold)
        matrix = task.confusion(logits, prediction.label_ids, labels)
        if matrix is not None:
            result.confusion_matrix[split] = matrix
        logits_by_split[split], truth_by_split[split] = logits, prediction.label_ids
    metric = spec["train"]["metric_for_best_model"]
    result.metrics["headline"] = {"split": "validation", "name": metric, "value": result.metrics["validation"][metric]}
    from runner.quality import assess_run  # temperature, thresholds, error analysis

    assess_run(spec, inputs.trainer.model.config, inputs.data, result, logits_by_split, truth_by_split)
    return logits_by_split



# ---------------------------------------------------------------------------------------------
# 5-6. Save the model, metrics and predictions; record the run


def save(spec: Spec, run_dir: RunDir, inputs: Inputs, result: RunResult, logits_by_split: dict, started: float) -> None:
    from runner.record import write_run_record

    save_model(inputs.trainer, inputs.tokenizer, spec, run_dir)
    result.checkpoints = finish_checkpoints(run_dir.checkpoints, spec["train"]["keep_checkpoints"])
    try:
        run_dir.write_metrics(result.metrics)
        run_dir.write_spec(spec.values)
        if spec["output"]["save_predictions"]:
            write_split_predictions(
                run_dir, logits_by_split, inputs.data, task_of(spec["task"]), spec["predict"]["threshold"],
                result.thresholds, result.temperature,
            )
        result.timing.update(finished_at=now(), total_seconds=round(time.perf_counter() - started, 3))
        write_run_record(run_dir, spec, result)
    except OSError as exc:
        raise RunError(
            f"could not write the run record: {exc.strerror or exc}",
            f"free disk space; the model in {run_dir.model_dir} and the checkpoints are kept, so `runner run SPEC "
            "--resume` finishes the run",
            str(exc.filename or run_dir.path),
        ) from None


def save_model(trainer, tokenizer, spec: Spec, run_dir: RunDir) -> None:
    """Save the best model (or adapter) and tokenizer; written to a temporary folder, then renamed."""

    def save(model, folder: Path) -> None:
        temporary = run_dir / f".{folder.name}.tmp"
        remove_entry(temporary)
        try:
            model.save_pretrained(temporary)
            tokenizer.save_pretrained(temporary)
        except (OSError, RuntimeError) as exc:  # RuntimeError: torch's writer on a full disk
            remove_entry(temporary)
            raise RunError(
                f"could not save the model: {getattr(exc, 'strerror', None) or str(exc).splitlines()[0]}",
                f"free disk space; the checkpoints in {run_dir.checkpoints} are kept, so `runner run SPEC --resume` "
                "finishes the run",
                str(folder),
            ) from None
        remove_entry(folder)
        temporary.rename(folder)

    model = trainer.model
    save(model, run_dir.model_dir)
    if spec["lora"] and spec["lora"]["merge"]:
        import copy

        save(copy.deepcopy(model).merge_and_unload(), run_dir.merged_dir)


def write_split_predictions(
    run_dir: RunDir, logits_by_split: dict, data, task, threshold: float, thresholds=None, temperature=None
) -> None:
    """predictions/<split>.jsonl: source row, text, true label and the prediction with probabilities."""
    for split, logits in logits_by_split.items():
        frame = data.splits[split]
        rows = task.prediction_rows(logits, data.labels, threshold, thresholds, temperature or 1.0)
        lines = []
        for row, (_, source) in zip(rows, frame.iterrows()):
            record = {"row": int(source["__row__"]), "text": source["text"]}
            if "text_pair" in frame.columns:
                record["text_pair"] = source["text_pair"]
            record.update(task.truth_record(source["label"], data.labels))
            record.update(row)
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        atomic_write_text(run_dir.predictions_dir / f"{split}.jsonl", "".join(lines))


def rewrite_record(spec: Spec, run_dir: RunDir) -> None:
    """Write a record that was cut short (killed, or a full disk, after the model and metrics were
    saved) again from run.json's copy of the result: the card, the report and its pictures. No training."""
    from runner.record import write_run_record

    with run_dir.lock():
        result = RunResult.from_dict(run_dir.read_manifest(required=True).get("results") or {})
        if not result.metrics or not run_dir.model_dir.is_dir():
            raise SpecError(
                "the run's record was cut short before its model and metrics were saved",
                "run again with --overwrite",
                str(run_dir.path),
            )
        say("the run's record was cut short; writing it again from its manifest (no training)")
        try:
            write_run_record(run_dir, spec, result)
        except OSError as exc:
            raise RunError(
                f"could not write the run record: {exc.strerror or exc}",
                "free disk space, then run --resume again",
                str(exc.filename or run_dir.path),
            ) from None
    say(
        f"done: {result.headline['split']} {result.headline['name']} = {result.headline['value']:.4f}; run folder "
        f"{run_dir.path}"
    )


# ---------------------------------------------------------------------------------------------
# 7. Publish


def publish(spec: Spec, run_dir: RunDir) -> None:
    if spec["hub"]["push"] and is_main_process():
        from runner.hub import push_run

        push_run(run_dir.path)
