"""The run, top to bottom: spec -> data -> model -> train -> evaluate -> record -> publish."""

from __future__ import annotations

import json
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import yaml

from runner.distributed import as_launched, is_main_process
from runner.errors import RunError, SpecError
from runner.files import atomic_write_json, atomic_write_text, read_json, sha256_file
from runner.spec import Spec

# What a run writes into its folder; --overwrite removes these and nothing else.
RUN_ENTRIES = ("model", "merged", "checkpoints", "logs", "predictions", "metrics.json", "run.json", "spec.yaml",
               "report.md", "confusion_matrix.png", "training_curves.png", ".model.tmp", ".merged.tmp")


def run_spec(spec: Spec, overwrite: bool = False, resume: bool = False, force_resume: bool = False, argv=()) -> Path:
    """Run the whole flow for a loaded spec. Returns the run folder."""
    from transformers import set_seed

    from runner import data as data_step
    from runner import model as model_step
    from runner import train as train_step

    started_at, started = now(), time.perf_counter()
    argv = as_launched(spec, argv)  # a `--nproc N` worker records what the user ran, not its own argv
    run_dir = Path(spec["output"]["dir"])
    checkpoint = prepare_run_dir(run_dir, overwrite=overwrite, resume=resume)
    set_seed(spec["seed"])

    # 1. Data
    data = data_step.prepare_data(spec)
    print(f"data: {', '.join(f'{n} {r} rows' for n, r in data.summary['rows'].items())}; {data.summary['split_note']}")
    current_fingerprint = check_fingerprint(run_dir, spec, data.files, resuming=checkpoint is not None, force=force_resume)

    # 2. Model and tokens
    device = train_step.choose_device(spec["train"]["device"])
    precision = train_step.choose_precision(spec["train"]["precision"], device)
    tokenizer = model_step.load_tokenizer(spec)
    try:
        tokenized = model_step.tokenize_splits(data.splits, tokenizer, spec["model"]["max_length"], has_pair=bool(spec["data"]["text_pair_column"]))
    except OSError as exc:  # the tokenization cache could not be written: disk full, permissions
        raise RunError(f"could not write the tokenized data: {exc.strerror or exc}",
                       "free disk space, or point RUNNER_CACHE_DIR at a folder with room", str(exc.filename or model_step.cache_root())) from None
    data.summary.update(model_step.token_stats(tokenized, spec["model"]["max_length"]))
    truncated = data.summary["truncated"]
    print(f"tokens: median {data.summary['token_lengths']['p50']}, p95 {data.summary['token_lengths']['p95']}; "
          f"{truncated['rows']} training row(s) truncated at {truncated['max_length']}")
    model = model_step.load_model(spec, data.labels)
    if spec["lora"]:
        model = model_step.apply_lora(model, spec)
    trainable, total = model_step.count_parameters(model)
    print(f"model: {spec['model']['name']} ({'LoRA' if spec['lora'] else 'full fine-tuning'}), "
          f"{trainable:,} trainable of {total:,} parameters ({100 * trainable / total:.2f}%); device {device}, {precision}")

    # Every input has loaded: only now may an earlier run in the folder go, so a bad input costs nothing.
    if is_main_process():  # one process clears and writes; the others write nothing before training
        clear_run_dir(run_dir, resuming=checkpoint is not None)
        atomic_write_json(run_dir / "checkpoints" / "fingerprint.json", current_fingerprint)

    # 3. Train
    with train_step.GracefulStop() as stop:
        trainer = train_step.build_trainer(spec, model, tokenizer, tokenized, data.labels, run_dir, device, precision, [stop.callback()])
        try:
            output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        except RuntimeError as exc:
            if "out of memory" in str(exc).lower():
                raise RunError(f"out of memory while training: {str(exc).splitlines()[0]}",
                               "lower train.batch_size (raise gradient_accumulation_steps to keep the effective size), "
                               "lower model.max_length, or set train.auto_find_batch_size: true") from None
            raise
        except OSError as exc:  # a checkpoint or log that could not be written: disk full, permissions
            raise RunError(f"a write failed while training: {exc.strerror or exc}",
                           "free disk space (or fix the folder's permissions), then `runner run SPEC --resume` continues from the last complete checkpoint",
                           str(exc.filename or run_dir / "checkpoints")) from None
    is_main = trainer.is_world_process_zero()
    result = {
        "status": "finished",
        "task": spec["task"],
        "labels": data.labels,
        "data_summary": data.summary,
        "data_files": data.files,
        "log_history": trainer.state.log_history,
        "model": model_step.provenance(spec, model, trainable, total),
        "device": train_step.describe_device(device),
        "precision": precision,
        "argv": list(argv) or sys.argv,
        "timing": {"started_at": started_at, "train_seconds": round(output.metrics.get("train_runtime", 0.0), 3),
                   "train_samples_per_second": round(output.metrics.get("train_samples_per_second", 0.0), 3),
                   "global_step": trainer.state.global_step},
    }
    if stop.signal_number is not None:
        if is_main:
            result["status"] = "interrupted"
            result["timing"].update(finished_at=now(), total_seconds=round(time.perf_counter() - started, 3))
            from runner.record import write_manifest

            write_manifest(run_dir, spec, result)
            print(f"interrupted at step {trainer.state.global_step}; continue with: runner run {spec.path} --resume", file=sys.stderr)
        sys.exit(stop.exit_code)

    # 4. Evaluate the best model on validation (and test)
    evaluation = evaluate_splits(trainer, spec, tokenized, data)
    logits_by_split = evaluation.pop("predictions")
    result.update(evaluation)

    if not is_main:
        return run_dir
    # 5. Save: model, metrics, predictions, spec
    save_model(trainer, tokenizer, spec, run_dir)
    try:
        atomic_write_json(run_dir / "metrics.json", result["metrics"])
        atomic_write_text(run_dir / "spec.yaml", yaml.safe_dump(spec.values, sort_keys=False, allow_unicode=True))
        if spec["output"]["save_predictions"]:
            write_split_predictions(run_dir, logits_by_split, data, spec["task"], spec["predict"]["threshold"])
        result["timing"].update(finished_at=now(), total_seconds=round(time.perf_counter() - started, 3))

        # 6. Record: report, plots, model card, manifest
        from runner.record import write_run_record

        write_run_record(run_dir, spec, result)
    except OSError as exc:
        raise RunError(f"could not write the run record: {exc.strerror or exc}",
                       f"free disk space; the model in {run_dir / 'model'} and the checkpoints are kept",
                       str(exc.filename or run_dir)) from None
    headline = result["metrics"]["headline"]
    print(f"done: {headline['split']} {headline['name']} = {headline['value']:.4f}; run folder {run_dir}")

    # 7. Publish
    if spec["hub"]["push"]:
        from runner.hub import push_run

        push_run(run_dir)
    return run_dir


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def prepare_run_dir(run_dir: Path, overwrite: bool, resume: bool) -> Path | None:
    """Check the run folder (and make it) before any input is read. Returns the checkpoint to resume from, if any.

    Nothing is removed here: clear_run_dir does that once every input has loaded. A finished run is
    never replaced without --overwrite, nor resumed, and --overwrite removes only what a run writes
    (RUN_ENTRIES) in a folder that a run wrote, never other files.
    """
    if not is_main_process():  # rank 0 checks and makes the folder (it may already be writing to it)
        from runner.train import latest_checkpoint

        return latest_checkpoint(run_dir) if resume else None
    if run_dir.exists() and not run_dir.is_dir():
        raise SpecError(f"output folder '{run_dir}' is a file", "set output.dir to a folder path", "output.dir")
    finished = run_status(run_dir) == "finished"
    if resume:
        from runner.train import latest_checkpoint

        if finished:
            raise SpecError(f"output folder '{run_dir}' holds a finished run: there is nothing to resume",
                            "pass --overwrite to train it again from scratch, or set output.dir (--output) to a new folder", "output.dir")
        checkpoint = latest_checkpoint(run_dir)
        if checkpoint is None:
            raise SpecError(f"nothing to resume: '{run_dir}/checkpoints' holds no checkpoint", "run without --resume to start from scratch", "output.dir")
        print(f"resuming from {checkpoint}")
        return checkpoint
    existing = [e for e in RUN_ENTRIES if (run_dir / e).exists()]
    if existing and not overwrite:
        what = "a finished run" if finished else "an unfinished run"
        raise SpecError(f"output folder '{run_dir}' already holds {what}", "pass --overwrite to replace it, --resume to continue it, or set output.dir (--output) to a new folder", "output.dir")
    if existing and not ((run_dir / "run.json").exists() or (run_dir / "checkpoints" / "fingerprint.json").exists()):
        raise SpecError(f"output folder '{run_dir}' holds {', '.join(existing)} but no run record, so no run wrote them",
                        "set output.dir (--output) to a new or empty folder; --overwrite only replaces a run's own files", "output.dir")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise SpecError(f"cannot write to output folder '{run_dir}': {exc.strerror}", "set output.dir (or --output) to a folder you can write", "output.dir") from None
    return None


def run_status(run_dir: Path) -> str | None:
    """The status in run.json ("finished", "interrupted"); None when there is no readable run.json."""
    try:
        manifest = read_json(run_dir / "run.json")
    except (OSError, ValueError):
        return None
    return manifest.get("status") if isinstance(manifest, dict) else None


def clear_run_dir(run_dir: Path, resuming: bool) -> None:
    """Remove an earlier run's outputs (prepare_run_dir has checked that they may go). A resumed run
    keeps its checkpoints and run.json and loses only what it writes again."""
    entries = ("model", "merged", "metrics.json", "report.md", ".model.tmp", ".merged.tmp") if resuming else RUN_ENTRIES
    for entry in entries:
        remove_entry(run_dir / entry)


def remove_entry(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def fingerprint(spec: Spec, files: dict) -> dict:
    """What must not change between a checkpoint and a resumed run: the spec (less output) and the data."""
    import hashlib

    values = {k: v for k, v in spec.values.items() if k not in ("output", "hub")}
    return {
        "spec_sha256": hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest(),
        "data_sha256": {role: sha256_file(path) for role, path in files.items() if role != "hub"},
    }


def check_fingerprint(run_dir: Path, spec: Spec, files: dict, resuming: bool, force: bool) -> dict:
    """Refuse to resume when the spec or data changed since the checkpoint. Returns the current
    fingerprint; the recipe writes it once the earlier run is cleared."""
    path = run_dir / "checkpoints" / "fingerprint.json"
    current = fingerprint(spec, files)
    if resuming and path.exists() and not force:
        saved = read_json(path)
        if saved.get("spec_sha256") != current["spec_sha256"]:
            raise SpecError("the spec changed since the checkpoint was saved", "resume with the same spec, or pass --force-resume to continue anyway", str(spec.path))
        for role, digest in current["data_sha256"].items():
            if saved.get("data_sha256", {}).get(role) != digest:
                raise SpecError(f"the {role} data file changed since the checkpoint was saved", "resume with the same data, or pass --force-resume", files[role])
    return current


def evaluate_splits(trainer, spec: Spec, tokenized: dict, data) -> dict:
    """Metrics, per-class report, confusion matrix and predictions for validation and test."""
    from runner.metrics import compute_metrics, confusion, per_class_report

    task, labels, threshold = spec["task"], data.labels, spec["predict"]["threshold"]
    out = {"metrics": {}, "per_class": {}, "confusion_matrix": {}, "predictions": {}}
    for split in ("validation", "test"):
        if split not in tokenized:
            continue
        prediction = trainer.predict(tokenized[split], metric_key_prefix=split)
        logits = prediction.predictions[0] if isinstance(prediction.predictions, tuple) else prediction.predictions
        metrics = compute_metrics(task, logits, prediction.label_ids, labels, threshold)
        metrics["loss"] = round(float(prediction.metrics.get(f"{split}_loss", float("nan"))), 6)
        out["metrics"][split] = metrics
        if task != "regression":
            out["per_class"][split] = per_class_report(task, logits, prediction.label_ids, labels, threshold)
        if task in ("single_label_classification", "text_pair_classification"):
            out["confusion_matrix"][split] = confusion(logits, prediction.label_ids, len(labels))
        out["predictions"][split] = logits
    metric = spec["train"]["metric_for_best_model"]
    out["metrics"]["headline"] = {"split": "validation", "name": metric, "value": out["metrics"]["validation"][metric]}
    return out


def save_model(trainer, tokenizer, spec: Spec, run_dir: Path) -> None:
    """Save the best model (or adapter) and tokenizer; written to a temporary folder, then renamed."""
    def save(model, folder: Path) -> None:
        temporary = run_dir / f".{folder.name}.tmp"
        remove_entry(temporary)
        try:
            model.save_pretrained(temporary)
            tokenizer.save_pretrained(temporary)
        except OSError as exc:
            remove_entry(temporary)
            raise RunError(f"could not save the model: {exc.strerror or exc}",
                           f"free disk space; the checkpoints in {run_dir / 'checkpoints'} are kept, so `runner run SPEC --resume` finishes the run", str(folder)) from None
        remove_entry(folder)
        temporary.rename(folder)

    model = trainer.model
    save(model, run_dir / "model")
    if spec["lora"] and spec["lora"]["merge"]:
        import copy

        save(copy.deepcopy(model).merge_and_unload(), run_dir / "merged")


def write_split_predictions(run_dir: Path, logits_by_split: dict, data, task: str, threshold: float) -> None:
    """predictions/<split>.jsonl: source row, text, true label and the prediction with probabilities."""
    from runner.predict import rows_from_logits

    for split, logits in logits_by_split.items():
        frame = data.splits[split]
        rows = rows_from_logits(task, logits, data.labels, threshold)
        lines = []
        for row, (_, source) in zip(rows, frame.iterrows()):
            truth = source["label"]
            record = {"row": int(source["__row__"]), "text": source["text"]}
            if "text_pair" in frame.columns:
                record["text_pair"] = source["text_pair"]
            if isinstance(truth, (list, np.ndarray)):
                record["true_labels"] = [data.labels[i] for i, x in enumerate(truth) if x]
            elif data.labels:
                record["true_label"] = data.labels[int(truth)]
            else:
                record["true_value"] = float(truth)
            record.update(row)
            lines.append(json.dumps(record, ensure_ascii=False) + "\n")
        atomic_write_text(run_dir / "predictions" / f"{split}.jsonl", "".join(lines))
