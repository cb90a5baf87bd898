"""`runner export RUN_DIR [--int8] [-o DIR]`: the trained model (LoRA merged) to ONNX with its tokenizer
and config, an optional int8 model (the quantisation that agrees most; runner.inference.quantize), and a parity
check against PyTorch on the run's validation texts, recorded in run.json and the model card. An int8
model below --min-agreement is left out with a warning and the fp32 one written (--require-int8: exit 1).

The exporter is torch.onnx's (torch.export based, dynamic batch and sequence axes). The Hugging Face
exporter (optimum-onnx) is not used: its newest release (0.1.0) requires transformers < 4.58 and fails
to import with transformers 5.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
import warnings
from contextlib import ExitStack, contextmanager
from pathlib import Path

from runner import stopping
from runner.console import warn
from runner.errors import DataError, Interrupted, RunError, RunnerError, Terminated
from runner.files import atomic_write_json, remove, sha256_file
from runner.inference.ort import FP32, INT8, OnnxClassifier, load_tokenizer, onnx_logits, require
from runner.record import guard
from runner.record.rundir import RunDir
from runner.record.runrecord import results_of
from runner.spec.sections import PredictSection
from runner.spec.tasks import Task

DEFAULT_MIN_AGREEMENT = 0.99
PARITY_ROWS = 2000


def export_command(run_dir: Path, output: Path | None, int8: bool, min_agreement: float, parity_rows: int,
                   require_int8: bool = False, typed: list[str] | None = None) -> dict:
    """`typed`: the command's arguments as the user typed them (the CLI's), for the hint after a signal; by default
    they are written out from the values."""
    given = ["runner", "export", str(run_dir), *(["-o", str(output)] if output else []), *(["--int8"] * int8),
             *(["--require-int8"] * require_int8), *([f"--min-agreement={min_agreement}"] * (min_agreement !=
             DEFAULT_MIN_AGREEMENT)), *([f"--parity-rows={parity_rows}"] * (parity_rows != PARITY_ROWS))]
    with _stopped_by_signal(["runner", *typed] if typed else given) as placed:
        run = RunDir(run_dir)
        spec = run.load_spec()
        require("onnx", "onnxscript", "onnxruntime")
        # RUN/onnx is the export's own; -o elsewhere: never the run or a folder in it, only an earlier export's
        folder = guard.check_folder(output or run.onnx_dir, inputs=guard.run_inputs(run.path), own=run.onnx_dir,
                                    foreign=foreign_files, named=None if output else "the run's export folder")
        elsewhere = bool(output) and folder != guard.resolved(run.onnx_dir)
        # The run's lock: a `runner run --overwrite` of the same folder cannot swap the model mid-export; the
        # target's: a second export to the same -o refuses instead of putting its model under the first's record.
        with run.lock("an export"), ExitStack() as locks:
            if elsewhere:
                locks.enter_context(guard.target_lock(folder))
            return _export(run, spec.task, spec.model.max_length, spec.predict, spec.hub.repo_id, folder, elsewhere,
                           int8, min_agreement, parity_rows, require_int8, placed)


EXPORT_FILES = {FP32, INT8, "config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                "vocab.txt", "vocab.json", "merges.txt", "added_tokens.json", "sentencepiece.bpe.model",
                "spiece.model", "tokenizer.model", "chat_template.jinja", guard.FOLDER_MARK}


def foreign_files(folder: Path) -> list[str]:
    """What in `folder` keeps it from being an earlier `runner export`'s, unchanged (nothing: replaced without
    --force). Its mark (.runner: {"made_by": "runner export", "files": {name: {"sha256", "bytes"}}}) lists what
    export wrote; a file not listed (a note of the user's), or listed but changed since, is named; without a valid
    mark every file is (a user's folder holding model.onnx and config.json is not an export's)."""
    names = sorted(p.name for p in folder.iterdir())
    try:
        mark = json.loads((folder / guard.FOLDER_MARK).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        mark = None
    written = mark.get("files") if isinstance(mark, dict) and mark.get("made_by") == "runner export" else None
    mark_file = folder / guard.FOLDER_MARK
    if not isinstance(written, dict) or mark_file.is_symlink() or not mark_file.is_file():
        return names
    found = []
    for name in names:
        path, entry = folder / name, written.get(name)
        if name == guard.FOLDER_MARK:
            continue
        if name not in EXPORT_FILES or not isinstance(entry, dict) or path.is_symlink() or not path.is_file():
            found.append(name)
        elif path.stat().st_size != entry.get("bytes") or sha256_file(path) != entry.get("sha256"):
            found.append(f"{name} (changed)")
    return found


def _mark(folder: Path, run: RunDir) -> None:
    """The export's mark, written last: each file's SHA-256 and size as written (what foreign_files checks)."""
    written = {p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
               for p in sorted(folder.iterdir()) if p.name != guard.FOLDER_MARK and p.is_file()}
    atomic_write_json(folder / guard.FOLDER_MARK, {"made_by": "runner export", "run": run.path.name, "files": written})


class Stopped(Interrupted):
    """An export stopped by a signal: the error line and the hint line, as every refusal of export's."""

    def lines(self) -> list[str]:
        return RunnerError.lines(self)


@contextmanager
def _stopped_by_signal(given: list[str]):
    """SIGINT or SIGTERM (raised at a safe point: runner.stopping) stops the export: the temporary folder has
    gone as the exception unwound; the hint repeats the command as given (`-o` and all). Yields a list the export
    puts its folder in once that is in place (in the same shielded step): a signal that lands from then on (as the
    shield ends, as the locks are released) says the export is whole, never "nothing was written"."""
    placed: list[Path] = []
    try:
        yield placed
    except KeyboardInterrupt as stop:
        name = "SIGTERM" if isinstance(stop, Terminated) else "SIGINT"
        code = 143 if isinstance(stop, Terminated) else 130
        if placed:
            raise Stopped(f"{name} arrived as the export finished; it is whole in {placed[0]}",
                          "nothing to run again", exit_code=code) from None
        raise Stopped(f"export stopped by {name}; nothing was written",
                      f"run the same command again to export: {shlex.join(given)}",
                      exit_code=code) from None


def _export(run: RunDir, task: Task, max_length: int, predict: PredictSection, repo_id: str | None, folder: Path,
            elsewhere: bool, int8: bool, min_agreement: float, parity_rows: int, require_int8: bool = False,
            placed: list[Path] | None = None) -> dict:
    """The export of `run` into `folder`: `max_length` is the spec's model.max_length, `repo_id` its hub.repo_id
    (the model card's); `folder` goes into `placed` once the export is in place."""
    texts, pairs = parity_texts(run, parity_rows)
    model, tokenizer, source = merged_model(run, task)
    temporary = guard.temporary_folder(folder, fixed=not elsewhere)  # RUN/.onnx.tmp: set aside by run --overwrite
    try:
        started = time.perf_counter()
        export_onnx(model, tokenizer, temporary / FP32, texts[:2] if len(texts) >= 2 else None)
        model.config.save_pretrained(temporary)  # labels, problem type and any saved thresholds/temperature
        _carry_calibration(temporary, run)
        tokenizer.save_pretrained(temporary)
        # tokenizer.json as onnxruntime users load it: truncation at max_length, each batch padded to its longest row
        load_tokenizer(temporary, max_length).save(str(temporary / "tokenizer.json"))
        score = parity_scorer(model, tokenizer, temporary, task, max_length, predict, texts, pairs) if texts else None
        parity = {"rows": len(texts), "source": "predictions/validation.jsonl", "models": {}} if texts else {}
        if score:
            parity["models"][FP32] = score(temporary / FP32)
        quantised = quantize_int8(temporary, score, parity) if int8 else {}
        seconds = time.perf_counter() - started
    except (RunnerError, KeyboardInterrupt):
        remove(temporary)
        raise
    except Exception as exc:  # noqa: BLE001 - an exporter failure is one line, not a traceback
        remove(temporary)
        if isinstance(exc, OSError) and exc.errno in (28, 122):  # ENOSPC, EDQUOT: the disk, not the model
            raise RunError(f"the ONNX export ran out of disk space: {exc.strerror}", "free disk space and export "
                           "again; nothing was written", str(folder)) from None
        raise RunError(
            f"the ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}",
            "run with `runner --debug export ...` to see where; the model may use an operator ONNX lacks",
        ) from None
    failing = {name: p for name, p in parity.get("models", {}).items() if p["agreement"] < min_agreement}
    if INT8 in failing and FP32 not in failing and not require_int8:
        # int8 fell short, fp32 holds: write fp32, say why int8 was left out (exit 0)
        remove(temporary / INT8)
        quantised.update(kept=False, figures=parity["models"].pop(INT8))
        failing.pop(INT8)
        warn(f"int8 left out: {quantised['figures']['agreement']:.2%} of {parity['rows']} validation labels agree "
             f"with PyTorch (--min-agreement {min_agreement}); the fp32 model is written. --require-int8 makes this an "
             "error")
    if failing:
        remove(temporary)
        figures = "; ".join(
            f"{name}: {p['agreement']:.2%} agree, largest probability difference {p['max_probability_difference']:.4f}"
            for name, p in failing.items()
        )
        raise RunError(
            f"the exported model disagrees with PyTorch on {parity['rows']} validation texts ({figures})",
            f"nothing was written; export without {'--require-int8' if INT8 in failing else '--int8'}, or lower "
            f"--min-agreement (now {min_agreement})",
            str(folder),
        )
    with stopping.shielded():  # in place, then recorded: a signal that lands here waits for both
        record = _put_in_place(run, repo_id, temporary, folder, elsewhere, source, seconds, parity,
                               min_agreement, quantised)
        if placed is not None:
            placed.append(folder)  # the export is whole: a signal from here on says so
    return record


def _put_in_place(run: RunDir, repo_id: str | None, temporary: Path, folder: Path, elsewhere: bool, source: str,
                  seconds: float, parity: dict, min_agreement: float, quantised: dict) -> dict:
    """The export moved from `temporary` to `folder` and recorded in run.json (and, in the run's own export folder,
    in the model card of hub.repo_id `repo_id`)."""
    try:
        _mark(temporary, run)
        guard.replace_folder(temporary, folder, _still_replaceable(folder) if elsewhere else None)
    except BaseException:
        remove(temporary)
        raise
    inside = guard.inside(folder, guard.resolved(run.path))
    record = {  # run.json is published: the folder relative to the run's, or its name alone (no machine path)
        "dir": ({"path": folder.relative_to(guard.resolved(run.path)).as_posix(), "relative_to": "run"} if inside
                else {"path": folder.name, "outside": True}),
        "source": source,
        "exporter": "torch.onnx (dynamo)",
        "seconds": round(seconds, 1),
        "files": {p.name: p.stat().st_size for p in sorted(folder.glob("*.onnx"))},
        "parity": {**parity, "min_agreement": min_agreement},
    }
    if quantised:
        record["int8"] = quantised
    run.update_manifest(export=record)
    if not elsewhere:
        from runner.record.card import add_export_section

        add_export_section(run.model_dir, record, repo_id)
    return {**record, "dir": str(folder) if elsewhere else folder.name}  # as the command says it


def _still_replaceable(folder: Path):
    """The check at the swap, on what is at -o then (set aside): a folder made or changed during the export that is
    not an earlier, unchanged export is never replaced; it goes back as it was, and the export is removed."""
    def check(old: Path) -> None:
        found = ([] if not any(old.iterdir()) else foreign_files(old)) if old.is_dir() and not old.is_symlink() \
            else [f"{folder.name} (now a file or a link)"]
        if found:
            raise RunError(f"-o changed during the export: it now holds files runner did not write or that changed "
                           f"since ({guard.listing(found)}); it was left as it was and the export was removed",
                           "move those files away and export again, or give another folder with -o", str(folder))
    return check


def _carry_calibration(folder: Path, run: RunDir) -> None:
    """A LoRA adapter's base config lacks runner_temperature/runner_thresholds: put the run's into the export's
    config.json, so they travel with the ONNX model as they do with a full model."""
    from runner.files import atomic_write_json, read_json

    results = results_of(run.path).to_dict()
    config = read_json(folder / "config.json")
    changed = False
    for key, value in (("runner_temperature", results.get("temperature")),
                       ("runner_thresholds", results.get("thresholds"))):
        if value and key not in config:
            config[key], changed = value, True
    if changed:
        atomic_write_json(folder / "config.json", config)


def parity_texts(run: RunDir, limit: int) -> tuple[list[str], list[str] | None]:
    """The run's validation texts (and pairs) from predictions/validation.jsonl, the first `limit`."""
    path = run.predictions_dir / "validation.jsonl"
    texts, pairs = [], []
    try:
        with open(path, encoding="utf-8") as stream:
            for line in stream:
                if len(texts) >= limit:
                    break
                row = json.loads(line)
                texts.append(str(row.get("text", "")))
                pairs.append(str(row.get("text_pair", "")) if "text_pair" in row else None)
    except FileNotFoundError:
        return [], None
    except (OSError, ValueError) as exc:
        raise DataError(
            f"cannot read the validation predictions: {type(exc).__name__}", "re-run the run that wrote them", str(path)
        ) from None
    return texts, (pairs if pairs and all(p is not None for p in pairs) else None)


def merged_model(run: RunDir, task: Task):
    """The full model to export: merged/ when the run saved one, else model/ (an adapter merged here)."""
    from runner.inference.predict import load_trained_model

    if (run.merged_dir / "config.json").is_file():
        model, tokenizer = load_trained_model(run.merged_dir)
        return model, tokenizer, "merged"
    model, tokenizer = load_trained_model(run.model_dir, results_of(run.path).labels, task.name)
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload().eval(), tokenizer, "model (adapter merged)"
    return model, tokenizer, "model"


def export_onnx(model, tokenizer, path: Path, sample: list[str] | None) -> None:
    """torch.onnx.export (torch.export) with dynamic batch and sequence axes."""
    import torch

    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]
    sample = sample or ["an example text for the export", "another one"]
    encoded = tokenizer(sample, padding=True, return_tensors="pt")
    if encoded["input_ids"].shape[1] < 3:
        encoded = tokenizer(["an example text for the export", "another one"], padding=True, return_tensors="pt")
    inputs = {n: encoded[n] for n in names if n in encoded}
    dynamic = torch.export.Dim.DYNAMIC
    model = model.float().eval()
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed", per operator
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            _logits_module(model).eval(),
            (),
            kwargs=inputs,
            dynamo=True,
            input_names=list(inputs),
            output_names=["logits"],
            dynamic_shapes={n: {0: dynamic, 1: dynamic} for n in inputs},
            external_data=False,
            verbose=False,
        )
    program.save(str(path))


def _logits_module(model):
    """The model as a module that takes the tokenizer's tensors and returns only the logits."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask=None, token_type_ids=None):
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits

    return Logits()


def quantize_int8(folder: Path, score, parity: dict) -> dict:
    """model_int8.onnx: the quantisation that agrees most with PyTorch (runner.inference.quantize); with no
    validation texts to measure on, the feed-forward down-projections kept in fp32."""
    from runner.inference.quantize import CANDIDATES, best_int8, quantize_variant

    if score is None:
        method = "per-channel-7bit-ffn-out-fp32"
        quantize_variant(folder / FP32, folder / INT8, **CANDIDATES[method])
        return {"method": method, "kept": True, "candidates": {}}
    method, candidates = best_int8(folder / FP32, folder / INT8, score)
    parity["models"][INT8] = {key: candidates[method][key] for key in ("agreement", "max_probability_difference")}
    return {"method": method, "kept": True, "candidates": candidates}


def parity_scorer(model, tokenizer, folder: Path, task: Task, max_length: int, predict: PredictSection,
                  texts: list[str], pairs: list[str] | None):
    """A function from an exported model's path to its label agreement and largest probability difference
    against PyTorch on `texts` (PyTorch's logits computed once), read at the spec's model.max_length, with its
    predict.batch_size and predict.threshold."""
    from runner.evaluate.strategies import strategy_of
    from runner.inference.predict import predict_logits

    batch_size, strategy = predict.batch_size, strategy_of(task)
    reference = predict_logits(model, tokenizer, texts, pairs, max_length, batch_size)
    onnx_tokenizer = load_tokenizer(folder, max_length)
    names = [model.config.id2label[i] for i in range(len(model.config.id2label))] if task.has_labels else []

    def score(path: Path) -> dict:
        logits = onnx_logits(OnnxClassifier(path), onnx_tokenizer, texts, pairs, batch_size)
        return strategy.agreement(reference, logits, names, predict.threshold)

    return score


def describe(record: dict) -> list[str]:
    """What `runner export` prints."""
    lines = [f"exported to {record['dir']} in {record['seconds']:.1f}s ({record['source']})"]
    for name, size in record["files"].items():
        parity = record["parity"].get("models", {}).get(name)
        figures = (
            (
                f": {parity['agreement']:.2%} of {record['parity']['rows']} validation labels agree with PyTorch, "
                f"largest probability difference {parity['max_probability_difference']:.4f}"
            )
            if parity
            else ""
        )
        lines.append(f"  {name} ({size / 1e6:.1f} MB){figures}")
    if not record["parity"].get("models"):
        lines.append("  no parity check: the run has no predictions/validation.jsonl")
    int8 = record.get("int8")
    if int8:
        lines.append(f"  int8: {int8['method']}" + ("" if int8["kept"] else " (left out: below --min-agreement)")
                     + ("; measured:" if int8["candidates"] else ""))
        for name, figures in int8["candidates"].items():
            lines.append(f"    {name}: {figures['agreement']:.2%} agree, largest probability difference "
                         f"{figures['max_probability_difference']:.4f}, {figures['bytes'] / 1e6:.1f} MB")
    return lines
