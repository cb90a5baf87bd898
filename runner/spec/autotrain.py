"""AutoTrain Advanced text-classification configs, translated to a native spec.

An AutoTrain config (`task: text_classification`, `base_model`, `data`, `params`, `hub`, ...) is
checked on its own terms first, with AutoTrain's key names in every message, then rewritten as a
native spec document. Values AutoTrain fills in by default are written out where they differ from
runner's defaults, so a run behaves as AutoTrain's would. `runner convert` prints that document as
YAML with a comment on every line whose meaning differs from AutoTrain's or from runner's default.

Like spec.py, this module stays light: no torch, no transformers.
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

import jsonschema

from runner.errors import SpecError, SpecErrors
from runner.spec.autotrain_values import check_keys, coerce, mapping, scalar, string, suggest
from runner.spec.schema import describe, hint, load_schema, position_of, schema_at, where

AUTOTRAIN_TASKS = {"text_classification", "text-classification", "text_binary_classification",
                   "text_multi_class_classification"}

TOP_KEYS = ("task", "base_model", "project_name", "log", "backend", "data", "params", "hub")
DATA_KEYS = ("path", "train_split", "valid_split", "column_mapping")
COLUMN_KEYS = ("text_column", "target_column")
HUB_KEYS = ("username", "token", "push_to_hub")

# AutoTrain's TextClassificationParams: key -> (type, AutoTrain's default).
PARAMS = {
    "lr": (float, 5e-5),
    "epochs": (int, 3),
    "max_seq_length": (int, 128),
    "batch_size": (int, 8),
    "warmup_ratio": (float, 0.1),
    "gradient_accumulation": (int, 1),
    "optimizer": (str, "adamw_torch"),
    "scheduler": (str, "linear"),
    "weight_decay": (float, 0.0),
    "max_grad_norm": (float, 1.0),
    "seed": (int, 42),
    "logging_steps": (int, -1),
    "eval_strategy": (str, "epoch"),
    "save_total_limit": (int, 1),
    "auto_find_batch_size": (bool, False),
    "mixed_precision": (str, None),
    "early_stopping_patience": (int, 5),
    "early_stopping_threshold": (float, 0.01),
}

# Params that mean exactly one native key. The rest (logging_steps, eval_strategy, mixed_precision,
# batch_size's eval half) are translated by hand below.
NATIVE_KEY = {
    "lr": ("train", "learning_rate"),
    "epochs": ("train", "epochs"),
    "max_seq_length": ("model", "max_length"),
    "batch_size": ("train", "batch_size"),
    "warmup_ratio": ("train", "warmup_ratio"),
    "gradient_accumulation": ("train", "gradient_accumulation_steps"),
    "optimizer": ("train", "optimizer"),
    "scheduler": ("train", "lr_scheduler"),
    "weight_decay": ("train", "weight_decay"),
    "max_grad_norm": ("train", "max_grad_norm"),
    "seed": ("seed",),
    "save_total_limit": ("train", "save_total_limit"),
    "auto_find_batch_size": ("train", "auto_find_batch_size"),
    "early_stopping_patience": ("train", "early_stopping_patience"),
    "early_stopping_threshold": ("train", "early_stopping_threshold"),
}

# AutoTrain lets `params` override these too; here each has one home, named in the error.
SET_ELSEWHERE = {
    "model": "base_model", "project_name": "project_name", "data_path": "data.path",
    "train_split": "data.train_split", "valid_split": "data.valid_split",
    "text_column": "data.column_mapping.text_column", "target_column": "data.column_mapping.target_column",
    "token": "hub.token", "username": "hub.username", "push_to_hub": "hub.push_to_hub", "log": "log",
}

PRECISION = {None: "fp32", "none": "fp32", "no": "fp32", "fp32": "fp32", "fp16": "fp16", "bf16": "bf16"}
REPORT_TO = {"none": [], "tensorboard": ["tensorboard"], "wandb": ["wandb"]}
REMOTE_BACKENDS = {
    "spaces": "a Hugging Face Space",
    "ep": "a Hugging Face Inference Endpoint",
    "ngc": "NVIDIA DGX Cloud (NGC)",
    "nvcf": "NVIDIA Cloud Functions (NVCF)",
}
ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
HUB_DATASET_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")
PROJECT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,49}")


def is_autotrain_config(document: dict) -> bool:
    """An AutoTrain config has no `version`, and names an AutoTrain task or AutoTrain's top-level keys."""
    if "version" in document:
        return False
    task = document.get("task")
    return (isinstance(task, str) and task in AUTOTRAIN_TASKS) or "base_model" in document or "project_name" in document


def to_native(document: dict, positions: dict, source: str) -> tuple[dict, dict]:
    """The native spec document for an AutoTrain config, and positions that point at the AutoTrain lines.

    Raises SpecErrors listing every problem in the AutoTrain config.
    """
    native, native_positions, _ = translate(document, positions, source)
    return native, native_positions


# ---------------------------------------------------------------------------------------------
# Translation


def translate(document: dict, positions: dict, source: str) -> tuple[dict, dict, dict]:
    """(native document, native positions, notes): notes maps a native path to why its meaning changed."""
    problems: list[SpecError] = []
    native: dict = {}
    native_positions: dict = {(): positions.get((), (1, 1))}
    notes: dict = {}

    def problem(path: tuple, message: str, hint: str, key: bool = False) -> None:
        problems.append(SpecError(message, hint, where(source, positions, path, key)))

    def put(native_path: tuple, value, origin: tuple | None = None, note: str | None = None) -> None:
        node = native
        for part in native_path[:-1]:
            node = node.setdefault(part, {})
        node[native_path[-1]] = value
        if origin and origin in positions:
            native_positions[native_path] = positions[origin]
            native_positions[("<key>",) + native_path] = positions.get(("<key>",) + origin, positions[origin])
        if note:
            notes[native_path] = note

    def section(native_section: str, origin: tuple) -> None:
        if origin in positions:
            native_positions[(native_section,)] = positions[origin]

    check_keys(document, (), TOP_KEYS, problem)
    data = mapping(document, ("data",), problem, required=True)
    column_mapping = mapping(data, ("data", "column_mapping"), problem)
    params = mapping(document, ("params",), problem)
    hub = mapping(document, ("hub",), problem)
    check_keys(data, ("data",), DATA_KEYS, problem)
    check_keys(column_mapping, ("data", "column_mapping"), COLUMN_KEYS, problem)
    check_keys(hub, ("hub",), HUB_KEYS, problem)
    for key in params:
        if key in SET_ELSEWHERE:
            problem(("params", key),
                    f"'{key}' is read from {SET_ELSEWHERE[key]} in an AutoTrain config, not from params",
                    f"move it: set {SET_ELSEWHERE[key]} instead", key=True)
        elif key not in PARAMS:
            problem(("params", key), f"unknown AutoTrain text-classification param '{key}'", suggest(key, PARAMS),
                    key=True)

    task = string(document, ("task",), problem, default="text_classification")
    if task not in AUTOTRAIN_TASKS:
        problem(("task",),
                f"AutoTrain task '{task}' is not text classification; runner fine-tunes text classifiers only",
                f"use task: text_classification (or {', '.join(sorted(AUTOTRAIN_TASKS - {'text_classification'}))}), "
                "or run this config with AutoTrain itself")
    backend = string(document, ("backend",), problem, default="local")
    _check_backend(backend, problem)
    base_model = string(document, ("base_model",), problem, required=True)
    project_name = string(document, ("project_name",), problem, required=True)
    if project_name is not None and not PROJECT_NAME.fullmatch(project_name):
        problem(("project_name",), f"'{project_name}' is not a valid AutoTrain project name",
                "use letters, digits and hyphens only, at most 50 characters, starting with a letter or digit")
    log = string(document, ("log",), problem, default="none")
    if log not in REPORT_TO:
        problem(("log",), f"'{log}' is not one of AutoTrain's trackers", f"use one of: {', '.join(REPORT_TO)}")

    values = {key: _param(params, key, problem) for key in PARAMS}
    given = {key for key in PARAMS if params.get(key) is not None}

    # -- top level ------------------------------------------------------------------------------
    put(("version",), 1)
    put(("name",), project_name, ("project_name",))
    put(("task",), "single_label_classification", ("task",))
    if "seed" in given:  # here, so it is written near the top; the params loop below checks it
        put(("seed",), values["seed"], ("params", "seed"))

    # -- data and model -------------------------------------------------------------------------
    section("data", ("data",))
    _translate_data(data, column_mapping, _base_dir(source), put, problem)
    section("model", ("base_model",))
    put(("model", "name"), base_model, ("base_model",))
    put(("model", "trust_remote_code"), False, ("base_model",),
        "AutoTrain lets model repositories run their own code; runner does not unless you set this to true")

    # -- params ----------------------------------------------------------------------------------
    section("train", ("params",))
    schema = load_schema()
    for key, native_path in NATIVE_KEY.items():
        origin = ("params", key)
        value = values[key]
        if key in given:
            put(native_path, value, origin)
        elif value != schema_at(schema, native_path).get("default"):
            ours = schema_at(schema, native_path).get("default")
            put(native_path, value, None, f"AutoTrain's default (runner's own: {scalar(ours)})")
        for message in _native_value_problems(value, native_path, schema):
            problem(origin if key in given else ("params",), message[0], message[1])
    _check_choice(values["optimizer"], "optimizer", ("train", "optimizer"), schema, problem, "an optimizer",
                  exclude={"auto"})
    _check_choice(values["scheduler"], "scheduler", ("train", "lr_scheduler"), schema, problem, "a scheduler")

    put(("train", "eval_batch_size"), 2 * values["batch_size"], ("params",
                                                                 "batch_size") if "batch_size" in given else None,
        "AutoTrain evaluates with twice params.batch_size")

    precision = values["mixed_precision"]
    if precision not in PRECISION:
        problem(("params", "mixed_precision"), f"'{precision}' is not fp16, bf16 or none",
                "use fp16 or bf16 for mixed precision on a GPU, or none for fp32")
    else:
        put(("train", "precision"), PRECISION[precision], ("params",
                                                           "mixed_precision") if "mixed_precision" in given else None,
            None if precision in ("fp16",
                                  "bf16") else "AutoTrain trains in fp32 unless mixed_precision is fp16 or bf16 "
                                               "(runner's default: auto)")

    report_to = REPORT_TO.get(log, [])
    if "log" in document:
        put(("train", "report_to"), report_to, ("log",))

    logging_steps = values["logging_steps"]
    if logging_steps == -1:
        notes[("train",
               "logging_steps")] = ("AutoTrain's -1 logs every 0.2 x validation rows (training rows without "
                                    "validation) "
                                             "/ batch_size steps, 1 to 25; runner logs every 10 steps")
    elif logging_steps < 1:
        problem(("params", "logging_steps"), f"must be -1 (automatic) or at least 1, got {logging_steps}",
                "use -1 to let AutoTrain's rule choose, or a number of steps")
    else:
        put(("train", "logging_steps"), logging_steps, ("params", "logging_steps"))

    _translate_evaluation(values, given, put, problem)

    # -- output and hub ---------------------------------------------------------------------------
    section("output", ("project_name",))
    put(("output", "dir"), project_name, ("project_name",),
        "AutoTrain writes into the project folder (runner's default: runs/<name>)")
    section("hub", ("hub",))
    _translate_hub(hub, project_name, put, problem, notes)

    if problems:
        raise SpecErrors(_by_position(problems))
    return native, native_positions, notes


def _translate_data(data: dict, column_mapping: dict, base_dir: Path, put, problem) -> None:
    """AutoTrain's data convention: a local folder holding `{split}.csv` or `{split}.jsonl`, else a Hub dataset id."""
    path = string(data, ("data", "path"), problem, required=True)
    train_split = string(data, ("data", "train_split"), problem, default="train")
    valid_split = string(data, ("data", "valid_split"), problem, default=None)
    text_column = string(column_mapping, ("data", "column_mapping", "text_column"), problem, default="text")
    target_column = string(column_mapping, ("data", "column_mapping", "target_column"), problem, default="target")
    if path is None or train_split is None:
        return

    folder = Path(path).expanduser()
    folder = folder if folder.is_absolute() else base_dir / folder
    if folder.is_dir():
        extension = next((ext for ext in ("csv", "jsonl") if (folder / f"{train_split}.{ext}").is_file()), None)
        if extension is None:
            problem(("data", "path"), f"folder '{path}' has no {train_split}.csv or {train_split}.jsonl",
                    "AutoTrain reads `<train_split>.csv` or `<train_split>.jsonl` from data.path; rename the file or "
                    "set data.train_split")
            return
        put(("data", "train"), _join(path, f"{train_split}.{extension}"), ("data", "path"),
            None if valid_split
            else "no valid_split: a seeded, stratified 20% is held out for validation, as AutoTrain does "
                 "(not the same rows)")
        if valid_split:
            put(("data", "validation_file"), _join(path, f"{valid_split}.{extension}"), ("data", "valid_split"))
    elif HUB_DATASET_ID.fullmatch(path) and not path.startswith("."):
        put(("data", "hub", "id"), path, ("data", "path"))
        put(("data", "hub", "split"), train_split, ("data", "train_split") if "train_split" in data else ("data",
                                                                                                          "path"))
        if valid_split:
            put(("data", "hub", "validation_split"), valid_split, ("data", "valid_split"))
        else:
            put(("data", "hub", "validation_split"), None, ("data", "path"),
                "AutoTrain trains on the whole split without validation when valid_split is empty; "
                "runner holds out data.validation_fraction (20%) to validate")
    else:
        problem(("data", "path"), f"'{path}' is neither a folder (looked in {base_dir}) nor a Hub dataset id",
                "give a folder holding train.csv (relative to this config file) or a Hub dataset id like user/name")
        return
    put(("data", "text_column"), text_column, ("data", "column_mapping", "text_column"))
    put(("data", "label_column"), target_column, ("data", "column_mapping", "target_column"),
        None if "target_column" in column_mapping
        else "AutoTrain's default target column is 'target' (runner's: label)")


def _translate_evaluation(values: dict, given: set, put, problem) -> None:
    """AutoTrain evaluates and saves on one schedule, keeps the checkpoint with the lowest validation
    loss, and stops early on the loss."""
    strategy = values["eval_strategy"]
    origin = ("params", "eval_strategy") if "eval_strategy" in given else None
    if strategy not in ("epoch", "steps", "no"):
        problem(("params", "eval_strategy"), f"'{strategy}' is not epoch, steps or no",
                "use epoch (AutoTrain's default), steps or no")
        return
    put(("train", "eval_strategy"), strategy, origin)
    put(("train", "save_strategy"), strategy, origin, "AutoTrain saves a checkpoint whenever it evaluates")
    if strategy == "steps":
        steps = values["logging_steps"] if values["logging_steps"] > 0 else 10
        note = "AutoTrain has no eval_steps: transformers evaluates every logging_steps"
        put(("train", "eval_steps"), steps, ("params", "logging_steps") if "logging_steps" in given else origin, note)
        put(("train", "save_steps"), steps, ("params", "logging_steps") if "logging_steps" in given else origin, note)
    if strategy == "no":
        put(("train", "load_best_model_at_end"), False, origin, "nothing to compare without evaluation")
        put(("train", "early_stopping_patience"), None, origin, "AutoTrain stops early only when it evaluates")
        return
    put(("train", "metric_for_best_model"), "loss", None,
        "AutoTrain keeps the checkpoint with the lowest validation loss and stops early on it (runner's default: "
        "f1_macro)")


def _translate_hub(hub: dict, project_name: str, put, problem, notes: dict) -> None:
    """hub.username and hub.token as AutoTrain reads them: `${VAR}` is read from the environment."""
    push = hub.get("push_to_hub", False)
    if not isinstance(push, bool):
        problem(("hub", "push_to_hub"), f"must be true or false, got {scalar(push)}", "write true or false")
        push = False

    username = hub.get("username")
    username_note = None
    if username is not None and not isinstance(username, str):
        problem(("hub", "username"), "must be a string", "write your Hub user or organisation name")
        username = None
    elif isinstance(username, str) and username.startswith("${"):
        match = ENV_REFERENCE.fullmatch(username)
        if not match:
            problem(("hub", "username"), f"'{username}' is not a ${{VARIABLE}} reference",
                    "write ${HF_USERNAME}, or the name itself")
            username = None
        else:
            username = os.environ.get(match.group(1)) or None
            username_note = f"from ${{{match.group(1)}}} when converted"
            if username is None and push:
                problem(("hub", "username"), f"reads ${{{match.group(1)}}}, which is not set",
                        f"export {match.group(1)}=<your Hub user or organisation>")
    if push and not username:
        if "username" not in hub:
            problem(("hub",), "hub.push_to_hub is true but hub.username is not set",
                    "add `username: ${HF_USERNAME}` under hub:")

    _check_token(hub, problem, notes)

    if username and project_name:
        put(("hub", "repo_id"), f"{username}/{project_name}", ("hub", "username"),
            f"hub.username/project_name, {username_note}" if username_note else None)
    if "push_to_hub" in hub:
        put(("hub", "push"), push, ("hub", "push_to_hub"))


def _check_token(hub: dict, problem, notes: dict) -> None:
    """The token never enters the native spec: runner takes it from HF_TOKEN. Values are never shown."""
    token = hub.get("token")
    if token is None or token == "":
        return
    match = ENV_REFERENCE.fullmatch(token) if isinstance(token, str) else None
    if match is None:
        problem(("hub", "token"), "a token is written in the config; secrets never live in the spec",
                "delete it, revoke it on the Hub (it has been saved in a file), export HF_TOKEN and write `token: "
                "${HF_TOKEN}`")
        return
    variable = match.group(1)
    notes[("hub", "token")] = "runner reads the Hub token from HF_TOKEN only, never from the spec"
    if variable == "HF_TOKEN":
        return
    named, ours = os.environ.get(variable), os.environ.get("HF_TOKEN")
    if named and named != ours:
        problem(("hub", "token"), f"reads ${{{variable}}}, but runner takes the Hub token only from HF_TOKEN",
                f'run `export HF_TOKEN="${variable}"` first, or write `token: ${{HF_TOKEN}}`')


def _check_backend(backend: str | None, problem) -> None:
    if backend is None or backend.startswith("local"):
        return
    prefix = backend.split("-")[0]
    if prefix in REMOTE_BACKENDS:
        problem(("backend",),
                f"'{backend}' trains on {REMOTE_BACKENDS[prefix]}; runner trains on this machine or a CI runner only",
                "set `backend: local` and run `runner run` on a machine with a GPU, or in a CI job on a GPU runner")
    else:
        problem(("backend",), f"'{backend}' is not an AutoTrain backend runner knows", "use backend: local")


def _check_choice(value, key: str, native_path: tuple, schema: dict, problem, what: str, exclude=frozenset()) -> None:
    allowed = [option for option in schema_at(schema, native_path).get("enum", []) if option not in exclude]
    if isinstance(value, str) and value not in allowed:
        problem(("params", key), f"'{value}' is not {what} runner supports",
                f"use one of: {', '.join(allowed)} (the ones runner's spec accepts)")


def _native_value_problems(value, native_path: tuple, schema: dict) -> list[tuple[str, str]]:
    """Range checks from the native schema, so they are reported with AutoTrain's key names."""
    field_schema = dict(schema_at(schema, native_path))
    field_schema.pop("enum", None)  # choices get their own message in _check_choice
    field_schema.pop("default", None)  # runner's default would mislead in an AutoTrain config
    validator = jsonschema.Draft202012Validator(field_schema)
    return [(describe(error), hint(error, field_schema)) for error in validator.iter_errors(value)]


# ---------------------------------------------------------------------------------------------
# Reading AutoTrain's values


def _param(params: dict, key: str, problem):
    """AutoTrain's value for a param, coerced the way its pydantic model does ("2e-5" is a float)."""
    kind, default = PARAMS[key]
    if params.get(key) is None:
        return default
    value = params[key]
    coerced = coerce(value, kind)
    if coerced is None:
        names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
        problem(("params", key), f"must be {names[kind]}, got {scalar(value)}",
                f"AutoTrain's default is {scalar(default)}")
        return default
    return coerced


# ---------------------------------------------------------------------------------------------
# Positions and paths


def _by_position(problems: list[SpecError]) -> list[SpecError]:
    return sorted(problems, key=lambda problem: position_of(problem.where))


def _base_dir(source: str) -> Path:
    """Relative data paths are read against the config file's folder, as in a native spec."""
    return Path(source).parent if source and not source.startswith("<") else Path.cwd()


def _join(folder: str, name: str) -> str:
    return str(PurePosixPath(folder) / name)
