"""Load a spec: parse the YAML keeping every value's line and column, validate it against the
JSON Schema, check the rules that span fields, and fill in every default.

This module must stay light: `runner validate` imports it without torch or transformers.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema

from runner.console import note
from runner.errors import SpecError, SpecErrors
from runner.spec.schema import FLAG, describe, hint, load_schema, schema_at, where
from runner.spec.sections import (
    ComputeSection,
    DataSection,
    GateSection,
    HubSection,
    LoraSection,
    ModelSection,
    OutputSection,
    PredictSection,
    ReportSection,
    SearchSection,
    TrainSection,
)
from runner.spec.specrules import cross_field_problems
from runner.spec.tasks import task_of
from runner.spec.views import section_view
from runner.spec.yamlsource import parse_value, parse_yaml

RELATIVE_TO = re.compile(r"# paths in this spec are relative to: ([^\n]+)\n")


@dataclass(frozen=True)
class Spec:
    """A validated spec with every default filled in. Frozen: a changed spec is a new one (`replace`)."""

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
        recorded = RELATIVE_TO.match(self.text)  # relative to the run folder: no machine's path is published
        return (self.path.parent / recorded.group(1)).resolve() if recorded else self.path.parent

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
        if origin is not None and origin[0] == FLAG:
            return Path(value)  # --output: the shell has expanded what it meant to; `'~'` is a folder named ~
        if origin is None or origin[0] == "--set" or self.autotrain:
            return Path(value).expanduser()
        return self.resolve(value)

    def where(self, *path) -> str:
        """The place of a spec value for a message found after loading: `spec.yaml:7:3 model.max_length`."""
        return where(str(self.path) if self.path else "<spec>", self.positions, tuple(path))

    def __getitem__(self, key):
        return self.values[key]

    # Typed views of the sections (runner/spec/sections.py): what the stages read (`spec.train.learning_rate`).
    @property
    def data(self) -> DataSection:
        return section_view("data", self.values.get("data"))

    @property
    def model(self) -> ModelSection:
        return section_view("model", self.values.get("model"))

    @property
    def lora(self) -> LoraSection | None:
        """None: full fine-tuning."""
        return section_view("lora", self.values.get("lora"))

    @property
    def train(self) -> TrainSection:
        return section_view("train", self.values.get("train"))

    @property
    def predict(self) -> PredictSection:
        return section_view("predict", self.values.get("predict"))

    @property
    def output(self) -> OutputSection:
        return section_view("output", self.values.get("output"))

    @property
    def report(self) -> ReportSection:
        return section_view("report", self.values.get("report"))

    @property
    def compute(self) -> ComputeSection:
        return section_view("compute", self.values.get("compute"))

    @property
    def search(self) -> SearchSection | None:
        return section_view("search", self.values.get("search"))

    @property
    def gate(self) -> GateSection | None:
        return section_view("gate", self.values.get("gate"))

    @property
    def hub(self) -> HubSection:
        return section_view("hub", self.values.get("hub"))

    labels = property(lambda self: self.values.get("labels"))
    name = property(lambda self: self.values["name"])
    seed = property(lambda self: self.values["seed"])

    @property
    def task(self):
        """The task's entry in the task table (runner.spec.tasks.Task): its name is `spec.task.name`."""
        return task_of(self.values["task"])

    def replace(self, drop: tuple = (), text: str | None = None, **sections) -> Spec:
        """A copy with `sections` merged in: a dict updates that section's keys, anything else replaces the
        value (`replace(train={"epochs": 1}, seed=3)`); keys in `drop` become null. Path, positions (errors
        still point at the spec file) and the AutoTrain flag are kept; `text` replaces the source text."""
        values = copy.deepcopy(self.values)
        for key, value in sections.items():
            if isinstance(value, dict) and isinstance(values.get(key), dict):
                values[key].update(copy.deepcopy(value))
            else:
                values[key] = copy.deepcopy(value)
        for key in drop:
            values[key] = None
        return dataclasses.replace(self, values=values, text=self.text if text is None else text)


# ---------------------------------------------------------------------------------------------
# YAML with positions


# Parsing lives in runner/spec/yamlsource.py (bounded aliases and depth, string keys, YAML 1.2 numbers).


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


def load_spec(path: str | Path, overrides: list[str] | tuple = (), check_files: bool = True,
              flags: dict | None = None) -> Spec:
    """Read, validate and resolve a spec file. Raises SpecErrors listing every problem. `overrides` are
    --set KEY=VALUE (the value read as YAML); `flags` are values an option of the command gives as they are,
    {dotted key: (option, value)} (`{"output.dir": ("--output", "2024")}`), placed at that option."""
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
    return load_spec_text(text, path, overrides, check_files, flags)


def load_spec_text(text: str, path: Path | None = None, overrides=(), check_files: bool = True,
                   flags: dict | None = None) -> Spec:
    source = str(path) if path else "<spec>"
    document, positions = parse_yaml(text, source)
    if document is None:
        raise SpecError("the spec is empty", "start from `runner init DATA_FILE` or an example in examples/",
                        f"{source}:1:1")
    if not isinstance(document, dict):
        kind = type(document).__name__
        raise SpecError(f"the spec must be a mapping of keys to values, not a {kind}",
                        "write `key: value` lines, starting with `version: 1`", f"{source}:1:1")

    from runner.spec import autotrain  # AutoTrain configs are translated to a native spec first

    from_autotrain = autotrain.is_autotrain_config(document)
    if from_autotrain:
        document, positions = autotrain.to_native(document, positions, source)

    document = copy.deepcopy(document)
    for override in overrides:
        _apply_override(document, override, positions)
    for key, (option, value) in (flags or {}).items():
        _put(document, positions, key.split("."), value, (FLAG, option))
    _bare_no(document, load_schema())
    _trainer_metric_names(document, source, positions)

    problems = _nonfinite_problems(document, positions, source) or _schema_problems(document, positions, source)
    if not problems:
        values = fill_defaults(document, load_schema())
        spec = Spec(values=values, path=path, text=text, positions=positions, autotrain=from_autotrain)
        _resolve_names(spec)
        problems = cross_field_problems(spec, source, check_files)
        if not problems:
            return spec
    raise SpecErrors(problems)


def _trainer_metric_names(document: dict, source: str, positions: dict) -> None:
    """train.metric_for_best_model, search.metric and gate.metric written as Trainer logs them (`eval_loss`,
    `eval_f1_macro`) are read as runner's names (`loss`, `f1_macro`), with a note that says so."""

    from runner.spec.hf_names import metric_without_prefix

    allowed = schema_at(load_schema(), ("train", "metric_for_best_model")).get("enum") or []
    for section, key in (("train", "metric_for_best_model"), ("search", "metric"), ("gate", "metric")):
        values = document.get(section)
        if not isinstance(values, dict):
            continue
        plain = metric_without_prefix(values.get(key), allowed)
        if plain:
            place = where(source, positions, (section, key))
            note(f"{place}: {values[key]} is {plain} in runner (Trainer's eval_ prefix is not written)")
            values[key] = plain


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
    _put(document, positions, parts, value, ("--set", key))


def _put(document: dict, positions: dict, parts: list[str], value, origin: tuple) -> None:
    """Set the value at `parts` and place it (and any section made on the way) at `origin`: ("--set", KEY) or
    (FLAG, option). What the file held below that key is gone, and so are its places."""
    node = document
    for depth, part in enumerate(parts[:-1], 1):
        if not isinstance(node.get(part), dict):
            node[part] = {}
            positions[tuple(parts[:depth])] = origin
        node = node[part]
    node[parts[-1]] = value
    path, depth = tuple(parts), len(parts)
    # the file's places at and below the replaced value go: an error there points at the flag, not at old lines
    for place in [p for p in positions if p[:depth] == path or (p[:1] == ("<key>",) and p[1 : depth + 1] == path)]:
        del positions[place]
    positions[path] = origin


# ---------------------------------------------------------------------------------------------
# Schema validation


def _schema_problems(document: dict, positions: dict, source: str) -> list[SpecError]:
    from runner.spec.hf_names import hf_hint, placed_hint

    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(document), key=lambda e: _sort_key(e, positions)):
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties":
            allowed = sorted(schema_at(schema, path).get("properties", {}))
            for key in sorted(set(error.instance) - set(allowed), key=str):  # YAML keys may be numbers or null
                close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
                suggestion = hf_hint(key, path, error.instance.get(key)) or placed_hint(key, path, schema) or (
                    f"did you mean '{close[0]}'?" if close else f"allowed keys here: {', '.join(allowed)}")
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
        origin = spec.positions.get(("output", "dir"))
        if origin is not None and origin[0] == "--set":  # `--set output.dir=~` is YAML's null, not a folder
            raise SpecError("--set output.dir is empty or null (YAML reads a bare ~ as null)",
                            "give a folder, quoted if it is ~: --set 'output.dir=\"~\"', or use --output DIR",
                            spec.where("output", "dir"))
        values["output"]["dir"] = f"runs/{values['name']}"
