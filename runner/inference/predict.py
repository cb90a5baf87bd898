"""Prediction with a trained run: label, score and every class probability, batched by length."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from runner.console import say, shown
from runner.errors import DataError
from runner.evaluate.quality import extra_metrics, from_model_or_record
from runner.evaluate.strategies import strategy_of
from runner.files import text_lines
from runner.record.rundir import RunDir
from runner.record.runrecord import results_of
from runner.spec.tasks import task_of


def load_trained_model(model_dir: Path, labels: list[str] | None = None, task: str | None = None):
    """A full model, or base model + LoRA adapter when the folder holds adapter_config.json.

    An adapter's base model config does not know the run's labels, so they are passed in. Damaged
    or truncated files are a RunError (exit 1), not a library's traceback.
    """
    import pickle

    from safetensors import SafetensorError

    model_dir = Path(model_dir)
    try:
        return _load_trained_model(model_dir, labels, task)
    except (OSError, ValueError, RuntimeError, EOFError, pickle.UnpicklingError, SafetensorError) as exc:
        from runner.errors import RunError

        raise RunError(f"cannot load the trained model: {type(exc).__name__}, the files are damaged or incomplete",
                       "train the run again (runner run SPEC --overwrite), or restore model/ from a copy",
                       str(model_dir)) from None


def _load_trained_model(model_dir: Path, labels: list[str] | None, task: str | None):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if (model_dir / "adapter_config.json").exists():
        from peft import AutoPeftModelForSequenceClassification

        head = {"num_labels": len(labels) or 1}
        if labels:
            head.update(id2label=dict(enumerate(labels)), label2id={name: i for i, name in enumerate(labels)})
        if task:
            head["problem_type"] = task_of(task).problem_type
        model = AutoPeftModelForSequenceClassification.from_pretrained(model_dir, **head)
        if tokenizer.pad_token_id is not None:  # a decoder's base config has no pad token; the run's tokenizer has
            model.config.pad_token_id = tokenizer.pad_token_id  # set after load: it may be a token the run added
    else:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    model.eval()
    return model, tokenizer


def predict_logits(model, tokenizer, texts: list[str], pairs: list[str] | None, max_length: int, batch_size: int,
                   progress: bool = False) -> np.ndarray:
    """Logits in input order; texts are batched by length so little work goes to padding."""
    import torch

    device = next(model.parameters()).device
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = [None] * len(texts)
    batches = range(0, len(texts), batch_size)
    if progress and len(texts) > batch_size:
        from runner.train.progress import bar  # a bar on a terminal, else a line every 10%

        batches = bar(batches, "predict", "batch")
    with torch.inference_mode():
        for start in batches:
            index = order[start:start + batch_size]
            args = ([texts[i] for i in index],) + (([pairs[i] for i in index],) if pairs else ())
            encoded = tokenizer(*args, truncation=True, max_length=max_length, padding=True,
                                return_tensors="pt").to(device)
            logits = model(**encoded).logits.float().cpu().numpy()
            for row, i in enumerate(index):
                out[i] = logits[row]
    return np.stack(out) if out else np.zeros((0, 1))


def label_names_of(model) -> list[str]:
    config = model.config
    return [config.id2label[i] for i in range(len(config.id2label))] if getattr(config, "id2label", None) else []


def read_texts(input_file: Path, text_column: str, pair_column: str | None) -> tuple[list[str], list[str] | None,
                                                                                     object]:
    from runner.data.prepare import check_text_values, read_table

    if input_file.suffix.lower() == ".txt":
        if not input_file.is_file():
            raise DataError("input file not found" if not input_file.exists() else "the input path is a folder, not a "
                                                                                   "file",
                            "give a .txt file (one text a line), or a CSV/JSONL/Parquet file with the spec's text "
                            "column", str(input_file))
        try:
            content = input_file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"the file is not valid UTF-8 text (byte {exc.start} cannot be decoded)",
                            "re-save it as UTF-8", str(input_file)) from None
        except OSError as exc:
            raise DataError(f"cannot read the file: {exc.strerror}", "check the file's permissions",
                            str(input_file)) from None
        texts = [line for line in text_lines(content) if line.strip()]
        if not texts:  # as a table without rows: nothing written, not an empty output that looks like a result
            raise DataError("the file has no text (it is empty or holds only blank lines)", "put one text a line",
                            str(input_file))
        return texts, None, None
    frame = read_table(input_file)
    if text_column not in frame.columns:
        raise DataError(f"column '{text_column}' not found; the file has: "
                        f"{', '.join(c for c in frame.columns if c != '__row__')}",
                        "the input needs the spec's text column (or use a .txt file, one text a line)", str(input_file))
    check_text_values(frame, {"text_column": text_column, "text_pair_column": pair_column}, str(input_file))
    texts = frame[text_column].fillna("").astype(str).tolist()
    pairs = frame[pair_column].fillna("").astype(str).tolist() if pair_column and pair_column in frame.columns else None
    return texts, pairs, frame


def predict_command(
    run_dir: Path, texts: list[str], input_file: Path | None, output_file: Path | None, batch_size: int | None,
    backend: str = "torch", force: bool = False,
) -> None:
    """`runner predict`; backend "onnx" runs RUN_DIR/onnx/ (int8 when exported) without torch or transformers."""
    run = RunDir(run_dir)
    spec = run.load_spec()
    if not texts and not input_file:
        raise DataError("no texts to predict",
                        'give texts as arguments (runner predict RUN_DIR "some text") or --input FILE')
    pairs = None
    if output_file:  # before any work: never the input, never a run's own file, an existing file only with --force
        check_output_file(Path(output_file), input_file, force, run.path)
    if input_file:
        texts, pairs, _ = read_texts(Path(input_file), spec.data.text_column, spec.data.text_pair_column)
    elif spec.task.pair:
        if len(texts) % 2:
            raise DataError("text-pair models take texts in pairs",
                            'give an even number of texts: "premise" "hypothesis" ...')
        texts, pairs = texts[0::2], texts[1::2]
    if backend == "onnx":
        from runner.inference.ort import load_onnx, onnx_logits

        model, tokenizer = load_onnx(run.onnx_dir, spec.model.max_length)
        started = time.perf_counter()
        logits = onnx_logits(model, tokenizer, texts, pairs, batch_size or spec.predict.batch_size, progress=True)
    else:
        model, tokenizer = load_trained_model(run.model_dir, results_of(run.path).labels, spec.task.name)
        started = time.perf_counter()
        batch = batch_size or spec.predict.batch_size
        logits = predict_logits(model, tokenizer, texts, pairs, spec.model.max_length, batch, progress=True)
    elapsed = time.perf_counter() - started
    temperature, thresholds = from_model_or_record(model, results_of(run.path).to_dict())  # tuned on validation
    rows = strategy_of(spec.task).prediction_rows(
        logits, label_names_of(model), spec.predict.threshold, thresholds, temperature
    )
    for row, text in zip(rows, texts):
        row["text"] = text
    if output_file:
        write_predictions(Path(output_file), rows, force)
        say(f"wrote {len(rows)} predictions to {shown(output_file)} ({len(rows) / max(elapsed, 1e-9):.0f} texts/s)")
    else:
        for row in rows:
            say(json.dumps(row, ensure_ascii=False))
        if len(rows) > 1:
            import sys

            say(f"{len(rows)} texts in {elapsed:.2f}s ({len(rows) / max(elapsed, 1e-9):.0f} texts/s)",
                  file=sys.stderr)


def check_output_file(path: Path, input_file: Path | None = None, force: bool = False,
                      run_dir: Path | None = None) -> None:
    """Before any work: --output is a new file (or, with --force, an earlier one), in a folder that
    exists, neither the input, nor the run's data, nor inside a run folder (runner.record.guard)."""
    from runner.record.guard import check_file, run_inputs

    check_file(path, ([input_file] if input_file else []) + (run_inputs(run_dir)[1:] if run_dir else []), force,
               kind="predictions")


def write_predictions(path: Path, rows: list[dict], force: bool = False) -> None:
    """Written by the guarded writer (atomically, never over a file that appeared since the check), and its SHA-256
    kept in runner's ledger: what a later --force may replace."""
    from runner.record.guard import write_file

    if path.suffix.lower() == ".csv":
        import csv

        import pandas as pd

        flat = [{k: (json.dumps(v, ensure_ascii=False) if isinstance(v, (dict, list)) else v) for k,
                 v in row.items()} for row in rows]
        # every text quoted: one with a lone "\r" (or "\n") left bare would split its row when read back
        data = pd.DataFrame(flat).to_csv(index=False, quoting=csv.QUOTE_NONNUMERIC).encode("utf-8")
    else:
        data = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode("utf-8")
    write_file(path, data, kind="predictions", force=force)


def eval_command(run_dir: Path, data_file: Path) -> dict:
    """Metrics of a trained run on a new labelled file, with the run's label mapping."""
    from runner.data.prepare import prepare_frame, read_table

    run = RunDir(run_dir)
    spec = run.load_spec()
    d, task = spec.data, spec.task
    model, tokenizer = load_trained_model(run.model_dir, results_of(run.path).labels, task.name)
    labels = label_names_of(model)
    try:
        frame, _, _ = prepare_frame(read_table(Path(data_file), "auto", d.encoding), d, task, labels or None,
                                    str(data_file))
    except DataError as exc:  # the run is fixed: its spec is not for the user to edit, the file is
        if "spec" in exc.hint or "labels:" in exc.hint or "data." in exc.hint:
            columns = ", ".join(c for c in (d.text_column, d.text_pair_column, d.label_column) if c)
            exc.hint = (f"the file needs the run's columns ({columns})"
                        + (f" and labels ({', '.join(labels)})" if labels else "") + "; fix the file")
        raise
    target = np.asarray(list(frame["label"])) if task.multi_label else frame["label"].to_numpy()
    pairs = frame["text_pair"].tolist() if d.text_pair_column else None
    logits = predict_logits(model, tokenizer, frame["text"].tolist(), pairs, spec.model.max_length,
                            spec.predict.batch_size, progress=True)
    temperature, thresholds = from_model_or_record(model, results_of(run.path).to_dict())
    threshold = spec.predict.threshold
    return {
        "rows": len(frame),
        **strategy_of(task).compute_metrics(logits, target, labels, threshold),
        **extra_metrics(task, logits, target, labels, threshold, thresholds, temperature),
    }
