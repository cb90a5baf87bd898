"""Load a spec: parse the YAML keeping every value's line and column, validate it against the
JSON Schema, check the rules that span fields, and fill in every default.

This module must stay light: `runner validate` imports it without torch or transformers.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema

from runner.errors import SpecError, SpecErrors
from runner.schema import describe, hint, load_schema, schema_at, where
from runner.tasks import TASKS, task_of
from runner.yamlsource import parse_value, parse_yaml

RELATIVE_TO = re.compile(r"# paths in this spec are relative to: (/[^\n]*)\n")


@dataclass
class Spec:
    """A validated spec with every default filled in."""

    values: dict
    path: Path | None = None
    text: str = ""
    positions: dict = field(default_factory=dict, repr=False)
    autotrain: bool = False
    """Translated from an AutoTrain config: its project_name folder goes in the working folder, as in AutoTrain."""

    @property
    def base_dir(self) -> Path:
        if not self.path:
            return Path.cwd()
        # A run's own spec.yaml says where the spec it was resolved from lives (RunDir.write_spec), so its
        # relative paths resolve as they did for the run and `runner validate RUN/spec.yaml` passes.
        recorded = RELATIVE_TO.match(self.text)
        return Path(recorded.group(1)) if recorded else self.path.parent

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    def resolve(self, relative: str) -> Path:
        """A path from the spec, relative to the spec file's folder."""
        candidate = Path(relative).expanduser()
        return candidate if candidate.is_absolute() else (self.base_dir / candidate)

    @property
    def output_dir(self) -> Path:
        """The run folder. output.dir written in the spec resolves against the spec file's folder, like
        every path in it; given on the command line (--output, --set) against the working folder,
        where the default runs/<name> also goes."""
        value = self.values["output"]["dir"]
        origin = self.positions.get(("output", "dir"))
        if origin is None or origin[0] == "--set" or self.autotrain:
            return Path(value).expanduser()
        return self.resolve(value)

    def where(self, *path) -> str:
        """The place of a spec value for a message found after loading: `spec.yaml:7:3 model.max_length`."""
        return where(str(self.path) if self.path else "<spec>", self.positions, tuple(path))

    def __getitem__(self, key):
        return self.values[key]


# ---------------------------------------------------------------------------------------------
# YAML with positions


# Parsing lives in runner/yamlsource.py (bounded aliases and depth, string keys, YAML 1.2 numbers).


def _nonfinite_problems(document, positions: dict, source: str, path: tuple = ()) -> list[SpecError]:
    """NaN and infinities pass the schema's number ranges but are never a meaningful setting."""
    if isinstance(document, float) and not math.isfinite(document):
        return [SpecError(f"{document} is not a finite number", "write a finite number such as 5e-5 or 3",
                          where(source, positions, path))]
    if isinstance(document, dict):
        return [p for k, v in document.items() for p in _nonfinite_problems(v, positions, source, path + (k,))]
    if isinstance(document, list):
        return [p for i, v in enumerate(document) for p in _nonfinite_problems(v, positions, source, path + (i,))]
    return []


# ---------------------------------------------------------------------------------------------
# Loading


def load_spec(path: str | Path, overrides: list[str] | tuple = (), check_files: bool = True) -> Spec:
    """Read, validate and resolve a spec file. Raises SpecErrors listing every problem."""
    path = Path(path)
    source = str(path)
    if path.is_dir():
        raise SpecError("the spec path is a folder, not a YAML file", "give the path of a .yaml spec file", source)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError("spec file not found", "check the path; `runner init DATA_FILE` writes a starter spec",
                        source) from None
    except OSError as exc:
        raise SpecError(f"cannot read the spec file: {exc.strerror}", "check the file's permissions", source) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"the spec is not UTF-8 text (byte {exc.start})", "save the spec as UTF-8", source) from None
    return load_spec_text(text, path, overrides, check_files)


def load_spec_text(text: str, path: Path | None = None, overrides=(), check_files: bool = True) -> Spec:
    source = str(path) if path else "<spec>"
    document, positions = parse_yaml(text, source)
    if document is None:
        raise SpecError("the spec is empty", "start from `runner init DATA_FILE` or an example in examples/",
                        f"{source}:1:1")
    if not isinstance(document, dict):
        kind = type(document).__name__
        raise SpecError(f"the spec must be a mapping of keys to values, not a {kind}",
                        "write `key: value` lines, starting with `version: 1`", f"{source}:1:1")

    from runner import autotrain  # AutoTrain configs are translated to a native spec first

    from_autotrain = autotrain.is_autotrain_config(document)
    if from_autotrain:
        document, positions = autotrain.to_native(document, positions, source)

    document = copy.deepcopy(document)
    for override in overrides:
        _apply_override(document, override, positions)
    _bare_no(document, load_schema())

    problems = _nonfinite_problems(document, positions, source) or _schema_problems(document, positions, source)
    if not problems:
        values = fill_defaults(document, load_schema())
        spec = Spec(values=values, path=path, text=text, positions=positions, autotrain=from_autotrain)
        _resolve_names(spec)
        problems = _cross_field_problems(spec, source, check_files) + (_missing_trackers(spec,
                                                                                         source) if check_files else [])
        if not problems:
            return spec
    raise SpecErrors(problems)


# train.report_to name -> (modules any one of which transformers can log with, the pip package)
TRACKER_PACKAGES = {"tensorboard": (("tensorboard", "tensorboardX"), "tensorboard"), "wandb": (("wandb",), "wandb"),
                    "mlflow": (("mlflow",), "mlflow"), "comet_ml": (("comet_ml",),
                                                                    "comet-ml"), "trackio": (("trackio",), "trackio")}


def _missing_trackers(spec: Spec, source: str) -> list[SpecError]:
    """Trackers in train.report_to that are not installed: found here, before any data is read or
    any run folder is touched (find_spec only looks; nothing is imported)."""
    import importlib.util

    problems = []
    for index, tracker in enumerate(spec["train"]["report_to"]):
        modules, package = TRACKER_PACKAGES.get(tracker, ((tracker,), tracker))
        if not any(importlib.util.find_spec(module) for module in modules):
            problems.append(SpecError(f"train.report_to asks for {tracker}, which is not installed",
                                      f"pip install {package}, or remove {tracker} from train.report_to",
                                      where(source, spec.positions, ("train", "report_to", index))))
    return problems


def _bare_no(document: dict, schema: dict) -> None:
    """YAML 1.1 reads a bare `no` as false: where the schema's choices include "no" (eval_strategy,
    save_strategy), false means "no"."""
    for key, prop in (schema.get("properties") or {}).items():
        if isinstance(document.get(key), dict):
            _bare_no(document[key], prop)
        elif document.get(key) is False and "no" in (prop.get("enum") or []):
            document[key] = "no"


def _apply_override(document: dict, override: str, positions: dict) -> None:
    """--set train.learning_rate=1e-4: the value is parsed as YAML."""
    if "=" not in override:
        raise SpecError(f"--set '{override}' is not KEY=VALUE", "write it like --set train.epochs=2")
    key, _, raw_value = override.partition("=")
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise SpecError(f"--set '{override}' has an empty key", "write it like --set train.epochs=2")
    try:
        value = parse_value(raw_value, f"--set {key}") if raw_value.strip() else None
    except SpecErrors:
        raise
    except SpecError as exc:
        if not exc.message.startswith("YAML syntax error"):
            raise  # an alias bomb, deep nesting or an odd key: refused, not taken as text
        value = raw_value
    node = document
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[parts[-1]] = value
    positions[tuple(parts)] = ("--set", key)


# ---------------------------------------------------------------------------------------------
# Schema validation


def _schema_problems(document: dict, positions: dict, source: str) -> list[SpecError]:
    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(document), key=lambda e: _sort_key(e, positions)):
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties":
            allowed = sorted(schema_at(schema, path).get("properties", {}))
            for key in sorted(set(error.instance) - set(allowed), key=str):  # YAML keys may be numbers or null
                close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
                suggestion = f"did you mean '{close[0]}'?" if close else f"allowed keys here: {', '.join(allowed)}"
                problems.append(SpecError(f"unknown key '{key}'", suggestion, where(source, positions, path + (key,),
                                                                                    key=True)))
            continue
        field_schema = schema_at(schema, path)
        problems.append(SpecError(describe(error), hint(error, field_schema), where(source, positions, path)))
    return problems


def _sort_key(error, positions):
    path = tuple(error.absolute_path)
    while path not in positions and path:
        path = path[:-1]
    position = positions.get(path, (0, 0))
    return (position if isinstance(position[0], int) else (0, 0), str(error.message))


# ---------------------------------------------------------------------------------------------
# Defaults


def fill_defaults(document: dict, schema: dict) -> dict:
    """A copy of the document with every schema default filled in, recursively.

    A missing object section is created (so `train.epochs` always exists) unless its default is
    null (`lora`: absent means full fine-tuning) or it has required keys (`data.hub`).
    """
    out = dict(document)
    for key, prop in schema.get("properties", {}).items():
        if key in out:
            if isinstance(out[key], dict) and "properties" in prop:
                out[key] = fill_defaults(out[key], prop)
            continue
        if "default" in prop:
            out[key] = copy.deepcopy(prop["default"])
        elif "properties" in prop and not prop.get("required"):
            out[key] = fill_defaults({}, prop)
    return out


# ---------------------------------------------------------------------------------------------
# Rules across fields


def _resolve_names(spec: Spec) -> None:
    values = spec.values
    if not values.get("name"):
        stem = spec.path.stem if spec.path else "run"
        values["name"] = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "run"
    if values["train"]["metric_for_best_model"] is None:
        values["train"]["metric_for_best_model"] = task_of(values["task"]).default_metric
    if values["output"]["dir"] is None:
        values["output"]["dir"] = f"runs/{values['name']}"


def _cross_field_problems(spec: Spec, source: str, check_files: bool) -> list[SpecError]:
    v = spec.values
    data, train, task = v["data"], v["train"], task_of(v["task"])
    problems: list[SpecError] = []

    def problem(path: tuple, message: str, hint: str) -> None:
        problems.append(SpecError(message, hint, where(source, spec.positions, path)))

    if ("train" in data) == ("hub" in data):
        problem(("data",), "give exactly one of data.train (a local file) or data.hub (a Hub dataset)",
                "for a local file write `train: path/to/train.csv` under `data:`")
    if "hub" in data and data.get("validation_file"):
        problem(("data", "validation_file"), "data.validation_file is for local data",
                "with a Hub dataset, name the split in data.hub.validation_split")

    if task.pair and not data["text_pair_column"]:
        problem(("task",), f"task {task.name} needs data.text_pair_column",
                "add `text_pair_column: <second text column>` under `data:`")
    if not task.pair and data["text_pair_column"]:
        pair_tasks = ", ".join(name for name, t in TASKS.items() if t.pair)
        problem(("data", "text_pair_column"),
                f"data.text_pair_column is only used by task {pair_tasks} (task is {task.name})",
                f"set `task: {pair_tasks}` or remove text_pair_column")
    if not task.has_labels and v["labels"]:
        problem(("labels",), "labels are not used for regression", "remove `labels:`; the label column holds numbers")

    metric = train["metric_for_best_model"]
    if metric not in task.metrics:
        problem(("train", "metric_for_best_model"), f"metric '{metric}' is not computed for task {task.name}",
                f"use one of: {', '.join(sorted(task.metrics))}")
    if metric == "roc_auc" and v["labels"] and len(v["labels"]) != 2:
        problem(("train", "metric_for_best_model"), "roc_auc is only computed for two classes",
                "use f1_macro or accuracy")

    for strategy, steps in (("eval_strategy", "eval_steps"), ("save_strategy", "save_steps")):
        if train[strategy] == "steps" and not train[steps]:
            problem(("train", strategy), f"train.{strategy} is 'steps' but train.{steps} is not set",
                    f"add `{steps}: 100` under `train:`")
    if train["load_best_model_at_end"]:
        if train["eval_strategy"] == "no":
            problem(("train", "load_best_model_at_end"),
                    "load_best_model_at_end needs evaluation, but train.eval_strategy is 'no'",
                    "set eval_strategy: epoch, or load_best_model_at_end: false")
        elif train["eval_strategy"] != train["save_strategy"]:
            problem(("train", "save_strategy"),
                    f"load_best_model_at_end needs save_strategy to match eval_strategy ('{train['save_strategy']}' vs "
                    f"'{train['eval_strategy']}')",
                    f"set save_strategy: {train['eval_strategy']}")
        elif (train["eval_strategy"] == "steps" and train["eval_steps"] and train["save_steps"]
              and train["save_steps"] % train["eval_steps"]):
            problem(("train", "save_steps"),
                    f"save_steps ({train['save_steps']}) must be a multiple of eval_steps ({train['eval_steps']}) to "
                    "keep the best model",
                    "make save_steps a multiple of eval_steps")
    if train["early_stopping_patience"]:
        if train["eval_strategy"] == "no":
            problem(("train", "early_stopping_patience"),
                    "early stopping needs evaluation, but train.eval_strategy is 'no'",
                    "set eval_strategy: epoch, or early_stopping_patience: null")
        elif not train["load_best_model_at_end"]:
            problem(("train", "early_stopping_patience"), "early stopping needs load_best_model_at_end: true",
                    "set load_best_model_at_end: true, or early_stopping_patience: null")
    if train["device"] == "cpu" and train["precision"] == "fp16":
        problem(("train", "precision"), "fp16 is not supported on the CPU",
                "use precision: bf16 (autocast) or fp32 on the CPU")
    if v["hub"]["push"] and not v["hub"]["repo_id"]:
        problem(("hub", "push"), "hub.push is true but hub.repo_id is not set",
                "add `repo_id: your-name/model-name` under `hub:`")
    for path, message, fix in task.setting_problems(v):  # class weights, tuned thresholds, calibration
        problem(path, message, fix)
    _flow_problems(v, task, problem)

    if check_files:
        for key in ("train", "validation_file", "test_file"):
            if data.get(key):
                _check_file(spec, ("data", key), data[key], problem)
        model_name = v["model"]["name"]
        if looks_like_local_path(model_name) or spec.resolve(model_name).exists():
            folder = spec.resolve(model_name)
            if not folder.is_dir():
                problem(("model", "name"), f"model folder '{model_name}' does not exist",
                        "give a Hub model id like distilbert-base-uncased, or the folder of a saved model")
            elif not (folder / "config.json").exists():
                problem(("model", "name"), f"'{model_name}' has no config.json, so it is not a saved model",
                        "point model.name at a folder written by save_pretrained()")
    return problems


def _flow_problems(v: dict, task, problem) -> None:
    """Cross-validation, search and gate: what they need from the rest of the spec."""
    data, search, gate = v["data"], v["search"], v["gate"]
    if data["cross_validation"]:
        for key, found in (
            ("validation_file", data.get("validation_file")),
            ("hub", (data.get("hub") or {}).get("validation_split")),
        ):
            if found:
                problem(
                    ("data", key),
                    "data.cross_validation makes its own validation folds, so a separate validation set is not used",
                    "remove data.validation_file (or hub.validation_split), or remove data.cross_validation",
                )
    for path, metric in (
        (("search", "metric"), (search or {}).get("metric")),
        (("gate", "metric"), (gate or {}).get("metric")),
    ):
        if metric and metric not in task.metrics:
            known = ", ".join(sorted(task.metrics))
            problem(path, f"metric '{metric}' is not computed for task {task.name}", f"use one of: {known}")
    if (search or data["cross_validation"]) and v["compute"]["nproc"] > 1:
        problem(("compute", "nproc"), "search and cross-validation train in one process", "set compute.nproc: 1")
    if search:
        import importlib.util

        if not importlib.util.find_spec("optuna"):
            problem(("search",), "search needs Optuna, which is not installed",
                    'pip install optuna (or: pip install ".[search]")')
        for key, bounds in (search["space"] or {}).items():
            where_ = ("search", "space", key)
            if bounds is None:
                continue
            if ("choices" in bounds) == ("low" in bounds or "high" in bounds):
                problem(where_, f"search.space.{key} needs either low and high, or choices",
                        f"write `{key}: {{low: 1, high: 4}}` or `{key}: {{choices: [8, 16]}}`")
            elif "low" in bounds and not ("high" in bounds and bounds["low"] <= bounds["high"]):
                problem(where_, f"search.space.{key} needs low <= high", "give both low and high, low first")
            elif bounds.get("log") and min(bounds.get("low", 1), *bounds.get("choices", [1])) <= 0:
                problem(where_, f"search.space.{key} on a log scale needs values above 0", "raise low, or log: false")
        if (search["space"] or {}).get("lora_r") and not v["lora"]:
            problem(("search", "space", "lora_r"), "search.space.lora_r needs LoRA, but the spec has no lora section",
                    "add `lora: {r: 8}`, or remove lora_r from the space")
    if gate and gate["min"] is not None and gate["max"] is not None and gate["min"] > gate["max"]:
        problem(("gate", "min"), "gate.min is above gate.max, so every run fails", "lower gate.min or raise gate.max")


def looks_like_local_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or "\\" in name


def _check_file(spec: Spec, path: tuple, relative: str, problem) -> None:
    resolved = spec.resolve(relative)
    if resolved.is_dir():
        problem(path, f"'{relative}' is a folder, not a data file",
                "point it at a CSV, TSV, JSONL, JSON or Parquet file")
    elif not resolved.exists():
        where = f" (looked in {resolved.parent})" if not Path(relative).is_absolute() else ""
        problem(path, f"data file '{relative}' not found{where}", "paths are relative to the spec file's folder")
