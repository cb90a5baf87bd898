"""The record of a run: report.md with its pictures, the model card, and run.json, the manifest
that `runner reproduce` re-runs from. Also the metrics summary a pull-request comment shows.

The recipe calls `write_run_record(run_dir, spec, result)` at the end of a run; `result` is the
plain dict described in `write_run_record`. Everything here reads plain values and writes files
atomically, so a record is never left half-written.
"""

from __future__ import annotations

import json
import math
import platform
import re
import subprocess
from importlib import metadata
from pathlib import Path

import click
import yaml

from runner import __version__
from runner.errors import DataError
from runner.files import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json, sha256_file
from runner.metrics import LOWER_IS_BETTER
from runner.spec import Spec

MANIFEST_FORMAT = 1
SPLITS = ("validation", "test")
PACKAGES = ("torch", "transformers", "datasets", "peft", "accelerate", "tokenizers", "huggingface_hub", "pandas", "scikit-learn", "numpy")
# Data file roles in result["data_files"] and run.json, and the spec key each comes from.
DATA_KEYS = {"train": "train", "validation": "validation_file", "test": "test_file"}
SINGLE_LABEL_TASKS = {"single_label_classification", "text_pair_classification"}
TASK_NAMES = {
    "single_label_classification": "single-label text classification",
    "multi_label_classification": "multi-label text classification",
    "regression": "text regression",
    "text_pair_classification": "text-pair classification",
}
METRIC_NAMES = {
    "accuracy": "Accuracy", "f1_macro": "F1 (macro)", "f1_weighted": "F1 (weighted)", "f1_micro": "F1 (micro)",
    "precision_macro": "Precision (macro)", "recall_macro": "Recall (macro)", "roc_auc": "ROC AUC",
    "subset_accuracy": "Subset accuracy", "loss": "Loss", "mse": "MSE", "mae": "MAE", "r2": "R²",
    "pearson": "Pearson r", "spearman": "Spearman ρ",
}
# Our metric name -> (metric type, config) as the Hub's model-index knows them.
HUB_METRICS = {
    "f1_macro": ("f1", "macro"), "f1_weighted": ("f1", "weighted"), "f1_micro": ("f1", "micro"),
    "precision_macro": ("precision", "macro"), "recall_macro": ("recall", "macro"),
    "subset_accuracy": ("accuracy", "subset"), "r2": ("r_squared", None), "pearson": ("pearsonr", None),
    "spearman": ("spearmanr", None),
}
# Keys of a metrics dict that measure the machine, not the model: never compared, never shown.
_NOT_METRICS = re.compile(r"(runtime|_per_second|^epoch$|^step$)")
_SECRETS = re.compile(r"\b(hf_[A-Za-z0-9]{20,}|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})|(?<=://)[^/\s:@]+:[^/\s@]+(?=@)")
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def write_run_record(run_dir: Path, spec: Spec, result: dict) -> None:
    """Write run.json, model/README.md, report.md and its pictures into the run folder.

    `result` (from the recipe): status, task, labels, metrics {validation, test?, headline},
    per_class, confusion_matrix, data_summary, log_history, timing, model, device, precision,
    data_files, argv. The manifest goes first: it is what a later reproduction needs most.
    """
    run_dir = Path(run_dir)
    write_manifest(run_dir, spec, result)
    write_model_card(run_dir / "model", spec, result)
    write_report(run_dir, spec, result)


# ---------------------------------------------------------------------------------------------
# Small helpers shared by the report, the card and the summary


def lower_is_better(metric: str) -> bool:
    return metric in LOWER_IS_BETTER


def metric_items(values: dict | None) -> list[tuple[str, float]]:
    """The model's numeric metrics in a metrics dict, in order, without runtimes and throughputs."""
    if not isinstance(values, dict):
        return []
    return [(name, value) for name, value in values.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and not _NOT_METRICS.search(name)]


def _number(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.2f}" if abs(value) >= 100 else f"{value:.4f}"
    return str(value)


def _duration(seconds) -> str:
    if not isinstance(seconds, (int, float)):
        return "–"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _table(header: list[str], rows: list[list], align: str = "") -> str:
    """A markdown table; `align` has one letter per column, l or r (default: first l, rest r)."""
    align = align or "l" + "r" * (len(header) - 1)
    cells = lambda row: "| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |"  # noqa: E731
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align) + "|"
    return "\n".join([cells(header), rule] + [cells(row) for row in rows])


def redact(value):
    """The value with anything that looks like a token or URL password replaced."""
    if isinstance(value, str):
        return _SECRETS.sub("<redacted>", value)
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item) for item in value]
    return value


def _metrics_table(metrics: dict, headline: dict | None = None) -> str:
    by_split = {s: dict(metric_items(metrics.get(s))) for s in SPLITS if metric_items(metrics.get(s))}
    names = list(dict.fromkeys(name for values in by_split.values() for name in values))
    rows = [[f"**{name}**" if headline and headline.get("name") == name else name] + [_number(values.get(name)) for values in by_split.values()]
            for name in names]
    return _table(["metric"] + list(by_split), rows) if rows else "No metrics were recorded."


def _per_class_table(per_class: dict) -> str:
    rows = [[label, _number(v.get("precision")), _number(v.get("recall")), _number(v.get("f1")), _number(v.get("support"))]
            for label, v in per_class.items()]
    return _table(["label", "precision", "recall", "f1", "support"], rows)


def _headline_text(metrics: dict) -> str:
    headline = metrics.get("headline") or {}
    if not isinstance(headline.get("value"), (int, float)):
        return ""
    return f"**{headline['name']} {_number(headline['value'])}** on {headline.get('split', 'validation')}"


# ---------------------------------------------------------------------------------------------
# report.md


def write_report(run_dir: Path, spec: Spec, result: dict) -> None:
    """report.md with metrics, per-class results, data summary, timing and the pictures."""
    from runner import plots

    run_dir = Path(run_dir)
    headline = (result.get("metrics") or {}).get("headline") or {}
    pictures = {"confusion_matrix.png": None}
    matrices = result.get("confusion_matrix") or {}
    if result.get("task") in SINGLE_LABEL_TASKS and matrices:
        pictures["confusion_matrix.png"] = plots.confusion_matrix_png({s: matrices[s] for s in SPLITS if matrices.get(s)}, result.get("labels") or [])
    metric = headline.get("name") or spec["train"]["metric_for_best_model"]
    pictures["training_curves.png"] = plots.training_curves_png(result.get("log_history") or [], metric, lower_is_better(metric))
    for name, png in pictures.items():
        if png:
            atomic_write_bytes(run_dir / name, png)
        else:
            (run_dir / name).unlink(missing_ok=True)  # a picture left from an earlier run would mislead
    drawn = {name for name, png in pictures.items() if png}
    atomic_write_text(run_dir / "report.md", render_report(spec, result, drawn))


def render_report(spec: Spec, result: dict, pictures: set[str]) -> str:
    metrics = result.get("metrics") or {}
    task = result.get("task") or spec["task"]
    status = result.get("status", "finished")
    out = [f"# Run report: {spec['name']}", ""]
    facts = [f"Status: **{status}**", f"task: {TASK_NAMES.get(task, task)}"]
    if _headline_text(metrics):
        facts.append(f"headline: {_headline_text(metrics)}")
    out += [" · ".join(facts), ""]
    if status != "finished":
        out += ["> **This run did not finish.** The metrics and model are those saved when it stopped.", ""]

    out += ["## Metrics", "", _metrics_table(metrics, metrics.get("headline")), ""]
    for split, per_class in (result.get("per_class") or {}).items():
        if per_class:
            out += [f"### Per class ({split})", "", _per_class_table(per_class), ""]
    if "confusion_matrix.png" in pictures:
        out += ["## Confusion matrix", "", "![Confusion matrix](confusion_matrix.png)", "",
                "Rows are the true label, columns the predicted label; a cell's number is its count and its colour "
                "the share of the true label's rows.", ""]
    out += ["## Training curves", ""]
    if "training_curves.png" in pictures:
        out += ["![Training curves](training_curves.png)", ""]
    else:
        out += ["Nothing was logged during training, so there are no curves.", ""]

    out += _data_section(result.get("data_summary") or {}, result.get("labels") or [])
    out += _training_section(spec, result)
    out += ["## Files", "",
            "- `model/`: the trained " + ("LoRA adapter" if (result.get("model") or {}).get("kind") == "lora" else "model")
            + " and tokenizer; its card is `model/README.md`",
            "- `metrics.json`: the metrics above; `spec.yaml`: the resolved spec",
            "- `run.json`: the manifest (spec and data hashes, base model revision, package versions, git commit); "
            "`runner reproduce` re-runs from it", ""]
    return "\n".join(out)


def _data_section(summary: dict, labels: list[str]) -> list[str]:
    out = ["## Data", ""]
    rows = summary.get("rows") or {}
    if rows:
        out += [_table(["split", "rows"], [[split, _number(n)] for split, n in rows.items()]), ""]
    if summary.get("split_note"):
        out += [f"Split: {summary['split_note']}.", ""]
    distribution = summary.get("label_distribution") or {}
    if distribution:
        splits = list(distribution)
        names = list(dict.fromkeys(list(labels) + [n for counts in distribution.values() for n in counts]))
        out += ["Label distribution:", "",
                _table(["label"] + splits, [[name] + [_number(distribution[s].get(name, 0)) for s in splits] for name in names]), ""]
    lengths = summary.get("token_lengths") or {}
    if lengths:
        out += ["Token lengths: " + ", ".join(f"{key} {_number(value)}" for key, value in lengths.items()) + ".", ""]
    truncated = summary.get("truncated") or {}
    if truncated:
        fraction = truncated.get("fraction") or 0.0
        rows_cut = truncated.get("rows", 0)
        out += [f"Truncated: {_number(rows_cut)} {'row was' if rows_cut == 1 else 'rows were'} ({fraction:.1%}) longer than "
                f"max_length {truncated.get('max_length', '?')} tokens.", ""]
    dropped = summary.get("dropped") or []
    if dropped:
        out += ["Rows dropped:", "", _table(["split", "reason", "rows"], [[d.get("split", ""), d.get("reason", ""), _number(d.get("rows"))] for d in dropped], "llr"), ""]
    elif summary:
        out += ["No rows were dropped.", ""]
    return out


def _training_section(spec: Spec, result: dict) -> list[str]:
    model = result.get("model") or {}
    timing = result.get("timing") or {}
    rows = [["base model", f"`{model.get('name', spec['model']['name'])}`" + (f" (revision `{model['revision'][:12]}`)" if model.get("revision") else "")]]
    if model.get("architecture"):
        rows.append(["architecture", model["architecture"]])
    lora = spec["lora"]
    rows.append(["fine-tuning", f"LoRA (r={lora['r']}, alpha={lora['alpha']})" if model.get("kind") == "lora" or lora else "full"])
    if model.get("trainable_params") and model.get("total_params"):
        share = model["trainable_params"] / model["total_params"]
        rows.append(["parameters", f"{model['trainable_params']:,} trainable of {model['total_params']:,} ({share:.1%})"])
    rows.append(["device", f"{result.get('device', '?')}, {result.get('precision', '?')}"])
    throughput = timing.get("train_samples_per_second")
    rows.append(["training time", _duration(timing.get("train_seconds")) + (f" ({throughput:.1f} samples/s)" if isinstance(throughput, (int, float)) else "")])
    rows.append(["total time", _duration(timing.get("total_seconds"))])
    if timing.get("started_at"):
        rows.append(["started / finished", f"{timing['started_at']} / {timing.get('finished_at', '?')}"])
    rows.append(["seed", str(spec["seed"])])
    return ["## Training", "", _table(["", ""], rows, "ll"), ""]


# ---------------------------------------------------------------------------------------------
# model/README.md


def write_model_card(model_dir: Path, spec: Spec, result: dict) -> None:
    """The Hub model card: metadata (with model-index eval results) and a usage-first body."""
    from huggingface_hub import ModelCard

    card_data = model_card_data(spec, result)
    content = f"---\n{card_data.to_yaml()}\n---\n\n{_card_body(spec, result, card_data.base_model)}"
    atomic_write_text(Path(model_dir) / "README.md", str(ModelCard(content)))


def model_card_data(spec: Spec, result: dict):
    from huggingface_hub import EvalResult, ModelCardData

    model = result.get("model") or {}
    lora = model.get("kind") == "lora" or bool(spec["lora"])
    hub_data = spec["data"].get("hub")
    if hub_data:
        revision = ((result.get("data_files") or {}).get("hub") or {}).get("revision") or hub_data.get("revision")
        dataset = {"dataset_type": hub_data["id"], "dataset_name": hub_data["id"], "dataset_config": hub_data.get("config"), "dataset_revision": revision}
    else:
        train = Path(spec["data"]["train"])
        file_format = spec["data"]["format"] if spec["data"]["format"] != "auto" else (train.suffix.lstrip(".").lower() or "csv")
        dataset = {"dataset_type": {"jsonl": "json", "tsv": "csv"}.get(file_format, file_format), "dataset_name": train.name}
    split_names = {"validation": (hub_data or {}).get("validation_split") or "validation", "test": (hub_data or {}).get("test_split") or "test"}
    metrics = result.get("metrics") or {}
    eval_results = []
    for split in SPLITS:
        for name, value in metric_items(metrics.get(split)):
            metric_type, config = HUB_METRICS.get(name, (name, None))
            eval_results.append(EvalResult(
                task_type="text-classification", task_name=TASK_NAMES.get(result.get("task") or spec["task"], "Text classification"),
                metric_type=metric_type, metric_config=config, metric_name=METRIC_NAMES.get(name, name),
                metric_value=float(value), dataset_split=split_names[split], **dataset,
            ))
    tags = ["text-classification", "runner"] + (["lora", "peft"] if lora else [])
    return ModelCardData(
        model_name=spec["name"],
        base_model=base_model_id(spec, model),
        library_name="peft" if lora else "transformers",
        pipeline_tag="text-classification",
        license=spec["hub"]["license"],
        datasets=[hub_data["id"]] if hub_data else None,
        tags=tags,
        metrics=list(dict.fromkeys(HUB_METRICS.get(n, (n,))[0] for s in SPLITS for n, _ in metric_items(metrics.get(s)))) or None,
        eval_results=eval_results or None,
    )


def base_model_id(spec: Spec, model: dict) -> str | None:
    """The Hub id of the base model, or None when it is only known as a local folder.

    A Hub model is named by its id. A local or packaged folder is named only when its own model
    card declares `base_model`; its config's `_name_or_path` often names an ancestor model, so it
    is not trusted.
    """
    name = model.get("name") or spec["model"]["name"]
    if model.get("source", "hub") == "hub":
        return name
    folder = Path(model["path"]) if model.get("path") else spec.resolve(name)
    from huggingface_hub import ModelCard

    try:
        declared = ModelCard.load(folder / "README.md").data.to_dict().get("base_model")
    except Exception:  # no card, or one that does not parse: the base stays unnamed
        return None
    declared = declared[0] if isinstance(declared, list) and declared else declared
    return declared if isinstance(declared, str) and _HUB_ID.match(declared) else None


def _card_body(spec: Spec, result: dict, base_model: str | None) -> str:
    task = result.get("task") or spec["task"]
    labels = result.get("labels") or []
    model = result.get("model") or {}
    lora = model.get("kind") == "lora" or bool(spec["lora"])
    metrics = result.get("metrics") or {}
    where = spec["hub"]["repo_id"] or "path/to/this/folder"
    base = f"[{base_model}](https://huggingface.co/{base_model})" if base_model else "a local model"
    out = [f"# {spec['name']}", "",
           f"A {TASK_NAMES.get(task, task)} model: {base} fine-tuned "
           + ("with LoRA " if lora else "") + "by [runner](https://github.com/runner-dev/runner) from a declarative spec.", ""]
    if lora:
        out += ["This repository holds a LoRA adapter and the trained classification head, not full weights: "
                "loading it also loads the base model that `adapter_config.json` names.", ""]
    if result.get("status", "finished") != "finished":
        out += ["**Training was interrupted**; this is the model as saved when it stopped.", ""]
    if _headline_text(metrics):
        out += [f"Headline: {_headline_text(metrics)}.", ""]

    if task == "regression":
        out += ["## Output", "", "One number per text (no activation is applied to the output).", ""]
    elif labels:
        out += ["## Labels", "", _table(["id", "label"], [[i, label] for i, label in enumerate(labels)], "rl"), ""]

    out += ["## How to use", "", "```python"]
    if lora:
        # The base model's config does not know this run's labels, so pass them when loading.
        labels = result.get("labels") or []
        label_kwargs = (f"num_labels={len(labels)}, id2label={dict(enumerate(labels))!r}, label2id={ {n: i for i, n in enumerate(labels)}!r}"
                        if labels else "num_labels=1")
        out += ["from peft import AutoPeftModelForSequenceClassification",
                "from transformers import AutoTokenizer, pipeline", "",
                f'model = AutoPeftModelForSequenceClassification.from_pretrained("{where}", {label_kwargs})',
                f'tokenizer = AutoTokenizer.from_pretrained("{where}")',
                'classifier = pipeline("text-classification", model=model, tokenizer=tokenizer)']
    else:
        out += ["from transformers import pipeline", "", f'classifier = pipeline("text-classification", model="{where}")']
    example = "the service was quick and friendly"
    if task == "text_pair_classification":
        out += [f'classifier({{"text": "{example}", "text_pair": "the staff were helpful"}})']
    elif task == "multi_label_classification":
        threshold = spec["predict"]["threshold"]
        out += [f'scores = classifier("{example}", top_k=None)  # every label with its probability',
                f'labels = [s["label"] for s in scores if s["score"] >= {threshold}]']
    elif task == "regression":
        out += [f'classifier("{example}", function_to_apply="none")  # score = the predicted number']
    else:
        out += [f'classifier("{example}")']
    out += ["```", ""]

    out += ["## Evaluation", "", _metrics_table(metrics, metrics.get("headline")), ""]
    summary = result.get("data_summary") or {}
    out += ["## Training data", ""]
    hub_data = spec["data"].get("hub")
    if hub_data:
        out += [f"Hub dataset [{hub_data['id']}](https://huggingface.co/datasets/{hub_data['id']})"
                + (f", config `{hub_data['config']}`" if hub_data.get("config") else "") + "."]
    else:
        files = [Path(spec["data"][key]).name for key in DATA_KEYS.values() if spec["data"].get(key)]
        out += ["Local files: " + ", ".join(f"`{name}`" for name in files) + "."]
    if summary.get("rows"):
        out += ["Rows: " + ", ".join(f"{split} {_number(n)}" for split, n in summary["rows"].items()) + "."]
    if summary.get("split_note"):
        out += [f"Split: {summary['split_note']}."]
    out += [""]

    out += ["## Training procedure", "",
            f"Trained on {result.get('device', '?')} in {result.get('precision', '?')} "
            f"for {_duration((result.get('timing') or {}).get('train_seconds'))}"
            + (f", from base model revision `{model['revision']}`" if model.get("revision") else "") + ". The resolved spec:", "",
            "```yaml", yaml.safe_dump(redact(spec.values), sort_keys=False, allow_unicode=True).rstrip(), "```", ""]

    truncated = summary.get("truncated") or {}
    validation_rows = (summary.get("rows") or {}).get("validation")
    out += ["## Limitations", ""]
    if validation_rows:
        out += [f"- Validation metrics come from {_number(validation_rows)} rows; on small sets they are noisy."]
    if truncated.get("fraction"):
        out += [f"- Texts are cut to {truncated.get('max_length', spec['model']['max_length'])} tokens; "
                f"{truncated['fraction']:.1%} of the training texts were longer."]
    else:
        out += [f"- Texts longer than {spec['model']['max_length']} tokens are truncated."]
    if task in SINGLE_LABEL_TASKS and labels:
        out += ["- Every input gets one of the labels above, even when none fits."]
    out += ["- The model reflects the training data and the base model, including their biases and gaps; "
            "check it on data like yours before relying on it.", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# run.json


def write_manifest(run_dir: Path, spec: Spec, result: dict) -> None:
    """run.json: what went in (spec, data and model hashes, versions, git) and what came out."""
    path = Path(run_dir) / "run.json"
    try:
        previous = read_json(path) if path.exists() else {}
    except (OSError, ValueError):
        previous = {}
    timing = result.get("timing") or {}
    hub_data = spec["data"].get("hub")
    manifest = {
        "format": MANIFEST_FORMAT,
        "name": spec["name"],
        "status": result.get("status"),
        "started_at": timing.get("started_at"),
        "finished_at": timing.get("finished_at"),
        "argv": redact([str(a) for a in result.get("argv") or []]),
        "seed": spec["seed"],
        "spec_file": str(spec.path.resolve()) if spec.path else None,
        "spec_sha256": spec.sha256,
        "spec": redact(spec.values),
        "data": {"files": data_file_hashes(spec, result)},
        "model": result.get("model"),
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "packages": package_versions(),
            "device": result.get("device"),
            "precision": result.get("precision"),
        },
        "git": git_state(spec.base_dir) if spec.path else None,
        "timing": timing,
        "results": {key: result.get(key) for key in ("task", "labels", "metrics", "per_class", "data_summary")},
    }
    if hub_data:
        manifest["data"]["hub"] = {**hub_data, **((result.get("data_files") or {}).get("hub") or {})}
    if isinstance(previous, dict) and "hub" in previous:
        manifest["hub"] = previous["hub"]
    atomic_write_json(path, manifest)


def data_file_hashes(spec: Spec, result: dict) -> dict:
    """{role: {path, sha256, bytes}} for every local data file; a missing file gets sha256 None."""
    files = {role: path for role, path in (result.get("data_files") or {}).items() if isinstance(path, (str, Path))}
    if not files:
        files = {role: spec.resolve(spec["data"][key]) for role, key in DATA_KEYS.items() if spec["data"].get(key)}
    out = {}
    for role, name in files.items():
        path = Path(name).resolve()
        exists = path.is_file()
        out[role] = {"path": str(path), "sha256": sha256_file(path) if exists else None, "bytes": path.stat().st_size if exists else None}
    return out


def package_versions() -> dict:
    versions = {"runner": __version__}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(folder: Path) -> dict | None:
    """{commit, dirty} of the git repository holding `folder`; None outside a repository."""
    def git(*args):
        return subprocess.run(["git", "--no-optional-locks", "-C", str(folder), *args], capture_output=True, text=True, timeout=20)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}


# ---------------------------------------------------------------------------------------------
# Summary for a pull-request comment or job summary


def _read_json_object(path: Path, missing_hint: str) -> dict:
    if not path.parent.is_dir():
        raise DataError(f"folder {path.parent} does not exist", "give the run folder that `runner run` wrote")
    if not path.is_file():
        raise DataError(f"{path.parent} has no {path.name}", missing_hint)
    try:
        value = read_json(path)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})", "the file is damaged; re-run the run that wrote it") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {path}: {exc}", "check the file's permissions") from None
    if not isinstance(value, dict):
        raise DataError(f"{path} holds a {type(value).__name__}, not a JSON object", "the file is damaged; re-run the run that wrote it")
    return value


def read_metrics(path: str | Path) -> dict:
    """A metrics.json, from a run folder or its own path, checked to hold split metrics."""
    path = Path(path)
    if path.is_dir() or path.suffix != ".json":
        path = path / "metrics.json"
    metrics = _read_json_object(path, f"is {path.parent} a finished run folder? metrics.json is written when a run ends")
    if not any(metric_items(metrics.get(split)) for split in SPLITS):
        raise DataError(f"{path} has no validation or test metrics", "it should look like {\"validation\": {\"accuracy\": 0.9}, ...}")
    return metrics


def _read_manifest(run_dir: Path) -> dict:
    path = run_dir / "run.json"
    return _read_json_object(path, "") if path.exists() else {}


def hub_url(manifest: dict) -> str | None:
    """Where `runner push` put the run (its pull request, when it opened one), from run.json."""
    hub = manifest.get("hub")
    if not isinstance(hub, dict):
        return None
    if hub.get("pr_url") or hub.get("url"):
        return hub.get("pr_url") or hub["url"]
    return f"https://huggingface.co/{hub['repo_id']}" if hub.get("repo_id") else None


def _compare(name: str, value, base) -> dict:
    entry = {"value": value, "base": base, "delta": None, "change": None, "better": None, "higher_is_better": not lower_is_better(name)}
    if isinstance(base, (int, float)) and not isinstance(base, bool):
        delta = round(value - base, 12)
        entry["delta"] = delta
        entry["change"] = "up" if delta > 0 else ("down" if delta < 0 else "same")
        entry["better"] = None if delta == 0 else ((delta > 0) == entry["higher_is_better"])
    return entry


def summary_json(run_dir: str | Path, base: str | Path | None = None) -> dict:
    """The run's metrics per split, each with its baseline value and change when `base` is given.

    {name, run_dir, status, task, headline: {split, name, value, base, delta, change, better,
    higher_is_better}, metrics: {split: {metric: {...same fields...}}}, base, hub_url, data_rows,
    per_class}. `base` is a run folder or a metrics.json path.
    """
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir / "metrics.json")
    manifest = _read_manifest(run_dir)
    base_metrics = read_metrics(base) if base is not None else {}
    splits = {}
    for split in SPLITS:
        values = metric_items(metrics.get(split))
        if values:
            base_values = dict(metric_items(base_metrics.get(split)))
            splits[split] = {name: _compare(name, value, base_values.get(name)) for name, value in values}
    headline = metrics.get("headline") if isinstance(metrics.get("headline"), dict) else {}
    headline_entry = None
    if headline.get("name") and headline.get("split", "validation") in splits:
        split = headline.get("split", "validation")
        found = splits[split].get(headline["name"])
        if found:
            headline_entry = {"split": split, "name": headline["name"], **found}
    results = manifest.get("results") if isinstance(manifest.get("results"), dict) else {}
    spec_values = manifest.get("spec") if isinstance(manifest.get("spec"), dict) else {}
    return {
        "name": manifest.get("name") or run_dir.resolve().name,
        "run_dir": str(run_dir),
        "status": manifest.get("status"),
        "task": results.get("task") or spec_values.get("task"),
        "headline": headline_entry,
        "metrics": splits,
        "base": str(base) if base is not None else None,
        "hub_url": hub_url(manifest),
        "data_rows": (results.get("data_summary") or {}).get("rows"),
        "per_class": results.get("per_class"),
    }


def _change_text(entry: dict) -> str:
    if entry["change"] is None:
        return "–"
    if entry["change"] == "same":
        return "= no change"
    mark = "▲" if entry["change"] == "up" else "▼"
    delta = entry["delta"]
    shown = f"{delta:+.4f}" if abs(delta) >= 5e-5 else f"{delta:+.1e}"  # a tiny change must not read as +0.0000
    return f"{mark} {shown} ({'better' if entry['better'] else 'worse'})"


def summary_markdown(run_dir: str | Path, base: str | Path | None = None) -> str:
    """Markdown for a pull-request comment or job summary (see summary_json)."""
    summary = summary_json(run_dir, base)
    title = f"### runner: {summary['name']}"
    headline = summary["headline"]
    if headline:
        title += f" · {headline['name']} {_number(headline['value'])} ({headline['split']})"
        if headline["change"]:
            title += f" {_change_text(headline)}"
    out = [title, ""]
    if summary["status"] and summary["status"] != "finished":
        out += [f"> Run status: **{summary['status']}**.", ""]
    compare = base is not None
    for split, entries in summary["metrics"].items():
        rows = []
        for name, entry in entries.items():
            is_headline = headline and headline["split"] == split and headline["name"] == name
            cells = [f"**{name}**" if is_headline else name, _number(entry["value"])]
            if compare:
                cells += [_number(entry["base"]), _change_text(entry)]
            rows.append(cells)
        header = ["metric", split] + (["baseline", "change"] if compare else [])
        out += [_table(header, rows, "lr" + ("rl" if compare else "")), ""]
    if compare:
        out += [f"Baseline: `{summary['base']}`. Lower is better for {', '.join(sorted(LOWER_IS_BETTER))}; higher for the rest.", ""]
    if summary["hub_url"]:
        out += [f"Model on the Hub: {summary['hub_url']}", ""]
    if summary["data_rows"]:
        out += ["Data: " + " · ".join(f"{split} {_number(n)} rows" for split, n in summary["data_rows"].items()), ""]
    per_class = {split: table for split, table in (summary["per_class"] or {}).items() if table}
    if per_class:
        out += ["<details><summary>Per-class metrics</summary>", ""]
        for split, table in per_class.items():
            out += [f"**{split}**", "", _per_class_table(table), ""]
        out += ["</details>", ""]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Reproduce


def reproduce_run(run_dir: str | Path, output_dir: str | Path | None = None) -> bool:
    """Re-run a run from its run.json into `output_dir` (default RUN_DIR-reproduce) and report
    whether every validation metric came out exactly the same. Refuses (DataError) when a data
    file or local base-model file differs from the one the run used."""
    from runner.spec import load_spec_text

    run_dir = Path(run_dir).resolve()
    manifest = _read_json_object(run_dir / "run.json", "is it a run folder? run.json is written when a run ends")
    values = manifest.get("spec")
    if not isinstance(values, dict):
        raise DataError(f"{run_dir / 'run.json'} records no spec", "the manifest is damaged; re-run with `runner run SPEC`")
    output_dir = Path(output_dir).resolve() if output_dir else run_dir.with_name(run_dir.name + "-reproduce")
    if output_dir == run_dir:
        raise DataError("the reproduction would overwrite the run it reproduces", "choose another --output folder")
    original = read_metrics(run_dir / "metrics.json")

    spec_path = manifest.get("spec_file")
    # Hub inputs are pinned to the commits the run resolved; the reproduction never publishes.
    overrides = [f"output.dir={json.dumps(str(output_dir))}", "hub.push=false"]
    model = manifest.get("model") or {}
    if model.get("source") == "hub" and model.get("revision"):
        overrides.append(f"model.revision={json.dumps(model['revision'])}")
    hub_data = (manifest.get("data") or {}).get("hub") or {}
    if hub_data.get("revision"):
        overrides.append(f"data.hub.revision={json.dumps(hub_data['revision'])}")
    elif hub_data:
        click.echo(f"warning: the Hub dataset {hub_data.get('id')} was not pinned to a revision; it may have changed since the run", err=True)
    spec = load_spec_text(yaml.safe_dump(values, sort_keys=False), Path(spec_path) if spec_path else None, overrides, check_files=False)
    verify_inputs(spec, manifest)

    from runner.recipe import run_spec

    run_spec(spec, overwrite=True, resume=False, force_resume=False,
             argv=["runner", "reproduce", str(run_dir), "--output", str(output_dir)])
    reproduced = read_metrics(output_dir / "metrics.json")
    matches, table = compare_metrics(original.get("validation") or {}, reproduced.get("validation") or {})
    click.echo(table)
    click.echo("metrics match" if matches else "metrics differ")
    return matches


def verify_inputs(spec: Spec, manifest: dict) -> None:
    """DataError naming the first data file (or local base-model file) whose sha256 is not the
    one in run.json, or that is missing."""
    recorded = (manifest.get("data") or {}).get("files") or {}
    for role, key in DATA_KEYS.items():
        if not spec["data"].get(key):
            continue
        path = spec.resolve(spec["data"][key])
        expected = (recorded.get(role) or {}).get("sha256")
        if not expected:
            raise DataError(f"run.json records no sha256 for the {role} file {path}", "without it the data cannot be checked; start a new run with `runner run`")
        _check_hash(path, expected, f"{role} data file")
    model = manifest.get("model") or {}
    if model.get("source") in ("local", "package") and model.get("weight_files"):
        from runner.model import resolve_model_source

        folder, _ = resolve_model_source(spec)
        for name, expected in model["weight_files"].items():
            _check_hash(Path(folder) / name, expected, "base model file")


def _check_hash(path: Path, expected: str, what: str) -> None:
    if not path.is_file():
        raise DataError(f"{what} {path} is missing", f"restore the file the run used (sha256 {expected[:12]}...) to reproduce it")
    actual = sha256_file(path)
    if actual != expected:
        raise DataError(f"{what} {path} changed since the run (sha256 {actual[:12]}..., run.json has {expected[:12]}...)",
                        "restore the original file to reproduce the run, or start a new run with `runner run` if the change is intended")


def compare_metrics(original: dict, reproduced: dict) -> tuple[bool, str]:
    """(every metric exactly equal, a table of both); a metric on one side only is a difference.

    Runtimes and throughputs are left out: they differ between any two runs."""
    first, second = dict(metric_items(original)), dict(metric_items(reproduced))
    names = list(dict.fromkeys(list(first) + list(second)))
    same = {name: first.get(name) == second.get(name) or (_is_nan(first.get(name)) and _is_nan(second.get(name))) for name in names}
    rows = [["metric", "original", "reproduced", ""]]
    rows += [[name, repr(first.get(name)), repr(second.get(name)), "same" if same[name] else "DIFFERENT"] for name in names]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return bool(names) and all(same.values()), "validation metrics:\n" + "\n".join(lines)


def _is_nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)
