"""The model card (model/README.md): Hub metadata with model-index results, and a usage-first body."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import yaml

from runner.files import atomic_write_text
from runner.record.analysis import card_lines
from runner.record.manifest import DATA_KEYS
from runner.record.markdown import SPLITS, duration, headline_text, metrics_table, number, table
from runner.record.render import code_block, examples_shown, inline, publish, shown_result
from runner.record.result import RunResult
from runner.record.rundir import portable
from runner.record.usage import usage_lines
from runner.redact import redact
from runner.spec.document import Spec
from runner.spec.sections import DataSection, HubSection, LoraSection, ModelSection, PredictSection, ReportSection
from runner.spec.tasks import Task, hub_metric, metric_display, metric_items, task_of

_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def write_model_card(model_dir: Path, spec: Spec, result: RunResult) -> None:
    """The Hub model card: metadata (with model-index eval results) and a usage-first body. It takes the
    whole spec because the card records the whole resolved document (its "Training procedure")."""
    from huggingface_hub import ModelCard

    card_data = model_card_data(result, name=spec.name, task=spec.task, data=spec.data, model=spec.model,
                                lora=spec.lora, license=spec.hub.license, resolve=spec.resolve)
    resolved = yaml.safe_dump(redact(portable(spec.values)), sort_keys=False, allow_unicode=True).rstrip()
    body = _card_body(result, card_data.base_model, name=spec.name, task=spec.task, data=spec.data,
                      model=spec.model, lora=spec.lora, predict=spec.predict, hub=spec.hub, report=spec.report,
                      resolved_yaml=resolved)
    atomic_write_text(Path(model_dir) / "README.md", str(ModelCard(f"---\n{card_data.to_yaml()}\n---\n\n{body}")))


def model_card_data(result: RunResult, *, name: str, task: Task, data: DataSection, model: ModelSection,
                    lora: LoraSection | None, license: str | None, resolve: Callable[[str], Path]):
    """The card's Hub metadata. `license` is the spec's hub.license (else the base model's); `resolve` makes a
    path written in the spec absolute (Spec.resolve)."""
    from huggingface_hub import EvalResult, ModelCardData

    base = result.model  # the run's record of the base model; `model` is the spec's model section
    lora = base.get("kind") == "lora" or bool(lora)
    hub_data = data.hub
    if hub_data:
        revision = (result.data_files.get("hub") or {}).get("revision") or hub_data.revision
        dataset = {
            "dataset_type": hub_data.id,
            "dataset_name": hub_data.id,
            "dataset_config": hub_data.config,
            "dataset_revision": revision,
        }
    else:
        dataset = {}
    # each split under the file it came from: test results under the test file, not the training file's name
    split_files = {"validation": data.validation_file or (None if hub_data else data.train),
                   "test": data.test_file or (None if hub_data else data.train)}
    split_names = {
        "validation": (hub_data.validation_split if hub_data else None) or "validation",
        "test": (hub_data.test_split if hub_data else None) or "test",
    }
    metrics = result.metrics
    task = task_of(result.task or task.name)
    eval_results = []
    for split in SPLITS:
        for metric, value in metric_items(metrics.get(split)):
            metric_type, config = hub_metric(metric)
            eval_results.append(
                EvalResult(
                    task_type="text-classification",
                    task_name=task.display,
                    metric_type=metric_type,
                    metric_config=config,
                    metric_name=metric_display(metric),
                    metric_value=float(value),
                    dataset_split=split_names[split],
                    **(dataset or {"dataset_name": Path(split_files[split]).name,
                                   "dataset_type": _file_type(split_files[split], data.format)}),
                )
            )
    tags = ["text-classification", "runner"] + (["lora", "peft"] if lora else [])
    return ModelCardData(
        model_name=name,
        base_model=base_model_id(model, base, resolve),
        library_name="peft" if lora else "transformers",
        pipeline_tag="text-classification",
        **(spec_license_fields(license) if license else base_model_license_fields(model, base, resolve)),
        datasets=[hub_data.id] if hub_data else None,
        tags=tags,
        metrics=list(dict.fromkeys(hub_metric(n)[0] for s in SPLITS for n, _ in metric_items(metrics.get(s)))) or None,
        eval_results=eval_results or None,
    )


def spec_license_fields(license: str) -> dict:
    """The card's license fields for the spec's hub.license: an id as it is; a link to the license's text (the
    Hub takes only ids in `license`) as `license: other` with that `license_link`."""
    if re.fullmatch(r"https?://\S+", license.strip()):
        return {"license": "other", "license_link": license.strip()}
    return {"license": license}


def _file_type(path: str, declared: str) -> str:
    """A data file's type as the Hub names it (json, csv, parquet), by its own name: a test.jsonl is json when
    the training file is a CSV. `data.format` (when not auto) is the format of every file of the spec."""
    found = declared if declared != "auto" else (Path(path).suffix.lstrip(".").lower() or "csv")
    return {"jsonl": "json", "tsv": "csv"}.get(found, found)


def base_model_license(spec_model: ModelSection, model: dict, resolve: Callable[[str], Path]) -> str | None:
    """The base model's own license (its model card's `license`), for a card whose spec sets no hub.license: a
    fine-tune inherits it. Read from the model's folder, or from the Hub cache for a Hub model (no download).
    `model` is the run's record of the base model (RunResult.model), `spec_model` the spec's model section."""
    return base_model_license_fields(spec_model, model, resolve).get("license")


def base_model_license_fields(spec_model: ModelSection, model: dict, resolve: Callable[[str], Path]) -> dict:
    """`license`, and with `license: other` the base card's `license_name` and `license_link` (which name the
    license `other` stands for), each only when it is plainly an id or an https link: nothing else is published."""
    from huggingface_hub import ModelCard

    readme = None
    name = model.get("name") or spec_model.name
    if model.get("source", "hub") == "hub":
        from huggingface_hub import try_to_load_from_cache

        try:
            found = try_to_load_from_cache(name, "README.md", revision=model.get("revision") or spec_model.revision)
        except Exception:  # noqa: BLE001 - a malformed id or cache: the license stays unnamed
            found = None
        readme = Path(found) if isinstance(found, str) else None
    else:
        folder = Path(model["path"]) if model.get("path") and Path(model["path"]).is_absolute() else \
            _model_folder(name, resolve)
        readme = folder / "README.md" if folder is not None else None
    if readme is None or not readme.is_file():
        return {}
    try:
        base = ModelCard.load(readme).data.to_dict()
    except Exception:  # noqa: BLE001 - a card that does not parse: unnamed
        return {}
    plain = {"license": r"[A-Za-z0-9.+-]{1,64}", "license_name": r"[A-Za-z0-9.+_-]{1,64}",
             "license_link": r"https://[A-Za-z0-9.-]+(/[A-Za-z0-9._~%/+-]*)?"}
    fields = {key: base.get(key) for key in plain if isinstance(base.get(key), str)
              and re.fullmatch(plain[key], base[key])}
    if fields.get("license") != "other":
        fields.pop("license_name", None), fields.pop("license_link", None)
    return fields if "license" in fields else {}


def base_model_id(spec_model: ModelSection, model: dict, resolve: Callable[[str], Path]) -> str | None:
    """The Hub id of the base model, or None when it is only known as a local folder.

    A Hub model is named by its id. A local or packaged folder is named only when its own model
    card declares `base_model`; its config's `_name_or_path` often names an ancestor model, so it
    is not trusted.
    """
    name = model.get("name") or spec_model.name
    if model.get("source", "hub") == "hub":
        return name
    folder = Path(model["path"]) if model.get("path") else None
    if folder is None or not folder.is_absolute():  # run.json's copy holds it relative (a record written again)
        folder = _model_folder(name, resolve)
        if folder is None:
            return None
    from huggingface_hub import ModelCard

    try:
        declared = ModelCard.load(folder / "README.md").data.to_dict().get("base_model")
    except Exception:  # no card, or one that does not parse: the base stays unnamed
        return None
    declared = declared[0] if isinstance(declared, list) and declared else declared
    return declared if isinstance(declared, str) and _HUB_ID.match(declared) else None


def _model_folder(name: str, resolve: Callable[[str], Path]) -> Path | None:
    """The base model's folder found again from the spec: a local path (made absolute by `resolve`, Spec.resolve),
    or `package:NAME[/SUB]` (found, not imported, as runner.train.model finds it)."""
    if not name.startswith("package:"):
        return resolve(name)
    import importlib.util

    package, _, sub = name[len("package:"):].partition("/")
    try:
        found = importlib.util.find_spec(package) if package.isidentifier() else None
    except (ImportError, ValueError):
        return None
    locations = list(found.submodule_search_locations or []) if found else []
    return Path(locations[0]) / (sub or "model") if locations else None


def _card_body(result: RunResult, base_model: str | None, *, name: str, task: Task, data: DataSection,
               model: ModelSection, lora: LoraSection | None, predict: PredictSection, hub: HubSection,
               report: ReportSection, resolved_yaml: str) -> str:
    """The card's Markdown body; `resolved_yaml` is the resolved spec as the card shows it."""
    # the code snippets get the raw labels (in a fence data cannot close); the prose gets inert text
    raw_labels, raw_thresholds = result.labels, result.thresholds
    result = shown_result(result, examples_shown(report))
    task = task_of(result.task or task.name)
    max_length = model.max_length  # the spec's; `model` is the run's record of the base model from here on
    labels, model, metrics = result.labels, result.model, result.metrics
    lora = model.get("kind") == "lora" or bool(lora)
    where = hub.repo_id or "path/to/this/folder"
    base = f"[{base_model}](https://huggingface.co/{base_model})" if base_model else "a local model"
    out = [
        f"# {inline(name)}",
        "",
        f"A {task.display} model: {base} fine-tuned "
        + ("with LoRA " if lora else "")
        + "by [runner](https://github.com/runner-dev/runner) from a declarative spec.",
        "",
    ]
    if lora:
        out += [
            "This repository holds a LoRA adapter and the trained classification head, not full weights: "
            "loading it also loads the base model that `adapter_config.json` names.",
            "",
        ]
    if result.status == "interrupted":
        out += ["**Training was interrupted**; this is the model as saved when it stopped.", ""]
    if headline_text(metrics):
        out += [f"Headline: {headline_text(metrics)}.", ""]

    if not task.has_labels:
        out += ["## Output", "", "One number per text (no activation is applied to the output).", ""]
    elif labels:
        out += ["## Labels", "", table(["id", "label"], [[i, label] for i, label in enumerate(labels)], "rl"), ""]

    code = []
    if lora:
        # The base model's config does not know this run's labels, so pass them when loading.
        label_kwargs = (
            f"num_labels={len(raw_labels)}, id2label={dict(enumerate(raw_labels))!r}, "
            f"label2id={ {n: i for i, n in enumerate(raw_labels)}!r}"
            if raw_labels
            else "num_labels=1"
        )
        code += [
            "from peft import AutoPeftModelForSequenceClassification",
            "from transformers import AutoTokenizer, pipeline",
            "",
            f'model = AutoPeftModelForSequenceClassification.from_pretrained("{where}", {label_kwargs})',
            f'tokenizer = AutoTokenizer.from_pretrained("{where}")',
            'classifier = pipeline("text-classification", model=model, tokenizer=tokenizer)',
        ]
    else:
        code += [
            "from transformers import pipeline",
            "",
            f'classifier = pipeline("text-classification", model="{where}")',
        ]
    example = "the service was quick and friendly"
    from runner.evaluate.quality import output_calibration  # a temperature, or vector scaling's {scale, bias}

    calibration = output_calibration(result)
    code += usage_lines(task, example, predict.threshold, raw_thresholds, calibration, inline=lora)
    out += ["## How to use", "", *code_block("\n".join(code), "python"), ""]
    out += card_lines(result, lora)  # class weights, temperature, thresholds

    out += ["## Evaluation", "", metrics_table(metrics, metrics.get("headline")), ""]
    summary = result.data_summary
    out += ["## Training data", ""]
    hub_data = data.hub
    if hub_data:
        out += [
            f"Hub dataset [{inline(hub_data.id)}](https://huggingface.co/datasets/{hub_data.id})"
            + (f", config `{inline(hub_data.config)}`" if hub_data.config else "")
            + "."
        ]
    else:
        files = [Path(getattr(data, key)).name for key in DATA_KEYS.values() if getattr(data, key)]
        out += ["Local files: " + ", ".join(f"`{inline(name)}`" for name in files) + "."]
    if summary.get("rows"):
        out += ["Rows: " + ", ".join(f"{split} {number(n)}" for split, n in summary["rows"].items()) + "."]
    if summary.get("split_note"):
        out += [f"Split: {summary['split_note']}."]
    out += [""]

    out += [
        "## Training procedure",
        "",
        f"Trained on {result.device or '?'} in {result.precision or '?'} "
        f"for {duration(result.timing.get('train_seconds'))}"
        + (f", from base model revision `{model['revision']}`" if model.get("revision") else "")
        + ". The resolved spec:",
        "",
        *code_block(resolved_yaml, "yaml"),
        "",
    ]

    truncated = summary.get("truncated") or {}
    validation_rows = (summary.get("rows") or {}).get("validation")
    out += ["## Limitations", ""]
    if validation_rows:
        out += [f"- Validation metrics come from {number(validation_rows)} rows; on small sets they are noisy."]
    if truncated.get("fraction"):
        out += [
            f"- Texts are cut to {truncated.get('max_length', max_length)} tokens; "
            f"{truncated['fraction']:.1%} of the training texts were longer."
        ]
    else:
        out += [f"- Texts longer than {max_length} tokens are truncated."]
    if task.one_label_per_row and labels:
        out += ["- Every input gets one of the labels above, even when none fits."]
    out += [
        "- The model reflects the training data and the base model, including their biases and gaps; "
        "check it on data like yours before relying on it.",
        "",
    ]
    return publish("\n".join(out))


EXPORT_START, EXPORT_END = "<!-- runner:onnx -->", "<!-- /runner:onnx -->"


def add_export_section(model_dir: Path, export: dict, repo_id: str | None) -> None:
    """Put (or replace) the ONNX section of model/README.md after `runner export`: files, parity, how to load."""
    path = Path(model_dir) / "README.md"
    if not path.is_file():
        return
    text = path.read_text(encoding="utf-8")
    if EXPORT_START in text and EXPORT_END in text:
        before, after = text[: text.index(EXPORT_START)], text[text.index(EXPORT_END) + len(EXPORT_END) :]
        text = before.rstrip("\n") + "\n" + after.lstrip("\n")
    atomic_write_text(path, text.rstrip("\n") + "\n\n" + "\n".join(export_section(export, repo_id)) + "\n")


def export_section(export: dict, repo_id: str | None) -> list[str]:
    parity, files = export.get("parity") or {}, export.get("files") or {}
    checked = parity.get("models", {})
    model_file = "model_int8.onnx" if "model_int8.onnx" in files else "model.onnx"
    rows = [
        [f"`onnx/{name}`", f"{size / 1e6:.1f} MB"]
        + (
            [f"{checked[name]['agreement']:.2%}", f"{checked[name]['max_probability_difference']:.4f}"]
            if name in checked
            else ["-", "-"]
        )
        for name, size in files.items()
    ]
    where = repo_id or "path/to/this/repository"
    return [
        EXPORT_START,
        "## ONNX",
        "",
        f"`onnx/` holds the model exported to ONNX ({export.get('exporter', 'torch.onnx')}), "
        "with its tokenizer and config; "
        "`model_int8.onnx` has dynamically quantised int8 weights. Agreement with the PyTorch model on "
        f"{parity.get('rows', 0)} validation texts:",
        "",
        table(["file", "size", "labels agree", "largest probability difference"], rows, "lrrr"),
        "",
        "```python",
        "import numpy as np, onnxruntime as ort",
        "from huggingface_hub import snapshot_download",
        "from tokenizers import Tokenizer",
        "",
        f'folder = snapshot_download("{where}", allow_patterns=["onnx/*"]) + "/onnx"',
        'tokenizer = Tokenizer.from_file(f"{folder}/tokenizer.json")',
        f'session = ort.InferenceSession(f"{{folder}}/{model_file}")',
        'batch = tokenizer.encode_batch(["the service was quick and friendly"])',
        "names = [i.name for i in session.get_inputs()]",
        'fields = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}',
        "logits = session.run(None, {n: np.array([getattr(e, fields[n]) for e in batch]) for n in names})[0]",
        "```",
        "",
        'From the run folder: `runner predict RUN_DIR --backend onnx "some text"` (onnxruntime and tokenizers only).',
        EXPORT_END,
    ]
