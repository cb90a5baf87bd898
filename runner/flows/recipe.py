"""The run, top to bottom: spec -> data -> model -> train -> evaluate -> record -> publish.

`run_spec` is the one entry for every flow. A search (when the spec has one) picks the values first;
then the flow (the single run, or cross-validation: siblings in runner.flows.single and runner.flows.crossval)
loads its inputs through runner.train.pipeline inside the one run-folder lifecycle (runner.flows.lifecycle):
every input is loaded and every check made before the run folder is touched; only then is an earlier
run set aside (renamed, not deleted), and it comes back if the new run fails or is interrupted before
it finishes. Training, quality (calibration, thresholds, error analysis), the record and the push are
the same for every flow. Only rank 0 writes and prints.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

from runner.console import is_main_process, say
from runner.errors import Interrupted, RunError, SpecError
from runner.files import atomic_write_json, atomic_write_text, move, remove
from runner.flows.contract import TrainingFlow
from runner.flows.lifecycle import RunFolder, run_folder
from runner.record.result import RunResult
from runner.record.rundir import RECORDING, RunDir
from runner.spec.document import Spec
from runner.train import pipeline
from runner.train.checkpoints import finish_checkpoints
from runner.train.handoff import Launch


def flow_of(spec: Spec) -> TrainingFlow:
    """The flow that trains the spec: cross-validation or the single run."""
    if spec.data.cross_validation:
        from runner.flows import crossval

        return crossval
    from runner.flows import single

    return single


def run_spec(spec: Spec, overwrite: bool = False, resume: bool = False, force_resume: bool = False, *,
             argv: list[str], launched: Launch | None = None) -> Path:
    """Run the whole flow for a loaded spec. Returns the run folder. `argv`: the command line the caller ran,
    recorded and repeated in the hints (`runner run ...`, `runner reproduce ...`); `launched`: in a worker of
    `runner run --nproc N`, the launcher's handoff, whose command line and compute settings are recorded instead.

    Raises SpecError/DataError (bad input, nothing touched), RunError (a failure at run time; an
    earlier run is restored) or Interrupted (SIGINT/SIGTERM: where it stopped and what to run next).
    """
    started_at, started = now(), time.perf_counter()
    if launched is not None:  # the record shows what the user ran, not the worker's compute.nproc=1
        spec, argv = spec.replace(compute=launched.recorded_compute()), list(launched.argv)
    flow = flow_of(spec)
    if resume and is_main_process() and RunDir(spec.output_dir).status() == RECORDING:
        # a record cut short is written again from run.json, whatever the flow (no training): the hint that
        # names --resume for it (flows/preflight.py) holds for a cross-validation or search run too
        rewrite_record(spec, RunDir(spec.output_dir))
        publish(spec, RunDir(spec.output_dir))
        return RunDir(spec.output_dir).path
    if resume and not (flow.RESUMABLE and not spec.search):  # a search is not resumable (its RESUMABLE)
        what = "a search" if spec.search else "a cross-validation run"
        raise SpecError(f"{what} cannot be resumed", "run it again with --overwrite",
                        spec.where("search" if spec.search else "data"))
    with run_folder(spec, overwrite, resume, force_resume, argv) as folder:
        searched = {}
        if spec.search:  # the trials train in a temporary folder; this folder is untouched
            from runner.flows.search import best_spec, search

            searched = search(spec, rerun=folder.rerun)
            spec = best_spec(spec, searched, folder.run_dir.best_spec_file)
        inputs = flow.load(spec, folder)
        with folder.replacing():
            result = train(spec, folder, inputs, argv, started_at, flow, searched)
            logits, truth = flow.evaluate(spec, inputs, result)
            if not folder.main:
                return folder.path
            from runner.evaluate.quality import assess_run  # temperature, thresholds, error analysis

            assess_run(spec.predict, spec.task, spec.train.metric_for_best_model, inputs.trainer.model.config,
                       inputs.data, result, logits, truth)
            result.search = searched
            flow.write_extras(folder.run_dir, result)
            if searched:
                atomic_write_text(folder.run_dir.best_spec_file, spec.text)
            save(spec, folder.run_dir, inputs, result, logits, started)
        say(flow.done_line(result, folder.run_dir))
    publish(spec, folder.run_dir)
    return folder.path


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------------------------------------
# Train (every flow's final model)


def train(
    spec: Spec, folder: RunFolder, inputs: pipeline.Inputs, argv: list, started_at: str, flow: TrainingFlow,
    searched: dict
) -> RunResult:
    from runner.train import model as model_step
    from runner.train import trainer as train_step

    run_dir = folder.run_dir
    if folder.main:
        atomic_write_json(run_dir.fingerprint_file, inputs.fingerprint)
    trainer = inputs.trainer

    def result_so_far(output=None) -> RunResult:
        trainable, total = model_step.count_parameters(trainer.model)
        metrics = output.metrics if output is not None else {}
        return RunResult(
            status="training",
            task=spec.task.name,
            labels=inputs.data.labels,
            data_summary={**inputs.data.summary, **inputs.token_stats},
            data_files=inputs.data.files,
            log_history=trainer.state.log_history,
            model=model_step.provenance(
                spec.model, model_step.resolve_model_source(spec.model, spec.resolve, spec.where), bool(spec.lora),
                trainer.model, trainable, total,
            ),
            device=train_step.describe_device(inputs.device),
            precision=inputs.precision,
            **train_step.recorded_choices(spec.train, inputs.device, inputs.precision),
            class_weights=inputs.class_weights,
            data_checks=inputs.data.summary.get("checks", {}),
            argv=[str(a) for a in argv],
            timing={
                "started_at": started_at,
                "train_seconds": round(metrics.get("train_runtime", 0.0), 3),
                "train_samples_per_second": round(metrics.get("train_samples_per_second", 0.0), 3),
                "global_step": trainer.state.global_step,
            },
        )

    try:
        resumable = flow.RESUMABLE and not searched and folder.resumable  # a fold's work is not kept
        output = pipeline.fit(
            trainer,
            run_dir.checkpoints,
            inputs.checkpoint,
            resume_hint=folder.resume_command if resumable else folder.restart,
            resumable=resumable,
        )
    except Interrupted:
        if folder.main:
            from runner.record.manifest import write_manifest

            result = result_so_far()
            result.status = "interrupted"
            result.timing["finished_at"] = now()
            write_manifest(run_dir, spec, result)
        raise
    return result_so_far(output)


# ---------------------------------------------------------------------------------------------
# 5-6. Save the model, metrics and predictions; record the run


def save(
    spec: Spec, run_dir: RunDir, inputs: pipeline.Inputs, result: RunResult, logits_by_split: dict, started: float
) -> None:
    from runner.record import write_run_record

    save_model(inputs.trainer, inputs.tokenizer, spec, run_dir)
    result.checkpoints = finish_checkpoints(run_dir.checkpoints, spec.train.keep_checkpoints)
    try:
        run_dir.write_metrics(result.metrics)
        run_dir.write_spec(spec.values, spec.base_dir)
        if spec.output.save_predictions:
            from runner.evaluate.quality import output_calibration  # a temperature, or vector scaling's {scale, bias}

            write_split_predictions(
                run_dir, logits_by_split, inputs.data, spec.task, spec.predict.threshold,
                result.thresholds, output_calibration(result),
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
        remove(temporary)
        try:
            model.save_pretrained(temporary)
            tokenizer.save_pretrained(temporary)
        except (OSError, RuntimeError, pipeline.safetensors_error()) as exc:  # torch's writer, safetensors: a full disk
            remove(temporary)
            raise RunError(
                f"could not save the model: {getattr(exc, 'strerror', None) or str(exc).splitlines()[0]}",
                f"free disk space; the checkpoints in {run_dir.checkpoints} are kept, so `runner run SPEC --resume` "
                "finishes the run",
                str(folder),
            ) from None
        remove(folder)
        move(temporary, folder)

    model = trainer.model
    save(model, run_dir.model_dir)
    if spec.lora and spec.lora.merge:
        import copy

        save(copy.deepcopy(model).merge_and_unload(), run_dir.merged_dir)


def write_split_predictions(
    run_dir: RunDir, logits_by_split: dict, data, task, threshold: float, thresholds=None, temperature=None
) -> None:
    """predictions/<split>.jsonl: source row, text, true label and the prediction with probabilities."""
    from runner.evaluate.strategies import strategy_of

    strategy = strategy_of(task)
    for split, logits in logits_by_split.items():
        frame = data.splits[split]
        rows = strategy.prediction_rows(logits, data.labels, threshold, thresholds, temperature or 1.0)
        lines = []
        for row, (_, source) in zip(rows, frame.iterrows()):
            record = {"row": int(source["__row__"]), "text": source["text"]}
            if "text_pair" in frame.columns:
                record["text_pair"] = source["text_pair"]
            record.update(strategy.truth_record(source["label"], data.labels))
            record.update(row)
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        atomic_write_text(run_dir.predictions_dir / f"{split}.jsonl", "".join(lines))


def rewrite_record(spec: Spec, run_dir: RunDir) -> None:
    """Write a record that was cut short (killed, or a full disk, after the model and metrics were
    saved) again from run.json's copy of the result: the card, the report and its pictures. No training."""
    from runner.record import write_run_record

    with run_dir.lock():
        from runner.record.runrecord import RunRecord

        result = RunRecord.load(run_dir.path, finished=False).result
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
    if spec.hub.push and is_main_process():
        from runner.publish.hub import push_run

        push_run(run_dir.path)
