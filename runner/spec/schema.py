"""The spec's JSON Schema and how its problems are told to a person: the place of a value
(`spec.yaml:7:3 model.max_length`), a one-line description of what is wrong, and a hint taken
from the field's own description. Used by spec.py and autotrain.py alike.

Light on purpose: `runner validate` imports it without torch.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path

SCHEMA_FILE = "spec-v1.schema.json"


@lru_cache(maxsize=1)
def load_schema() -> dict:
    """The spec's JSON Schema, shipped inside the package (runner/schemas -> ../schemas)."""
    text = resources.files("runner").joinpath("schemas", SCHEMA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


def schema_at(schema: dict, path: tuple) -> dict:
    """The schema of the value at `path` ({} where the schema says nothing)."""
    node = schema
    for part in path:
        if isinstance(part, int):
            node = node.get("items", {})
        else:  # a key the mapping names, or one of its free keys (predict.class_prior's classes)
            free = node.get("additionalProperties")
            node = node.get("properties", {}).get(part, free if isinstance(free, dict) else {})
    return node


def dotted(path) -> str:
    """("train", "epochs") -> train.epochs; list items as [0]."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\betc)\.\s")  # "e.g. x" does not end a sentence
FLAG = "<option>"  # the origin of a value an option of the command gave (`--output`), in a spec's positions


def where(source: str, positions: dict, path: tuple, key: bool = False) -> str:
    """`file:line:column dotted.path` of a value (or of its key), falling back to the nearest
    enclosing value that has a position; `--set KEY` or the option (`--output`) for a value that came from
    the command line."""
    position = positions.get(("<key>",) + path) if key else None
    position = position or positions.get(path)  # a key given by --set has its value's position only
    probe = path
    while position is None and probe:
        probe = probe[:-1]
        position = positions.get(probe)
    if position and position[0] in ("--set", FLAG):
        given = f"--set {position[1]}" if position[0] == "--set" else position[1]
        return given if probe == path else f"{given} {dotted(path)}"  # inside a mapping or list --set gave
    line, column = position or (1, 1)
    return f"{source}:{line}:{column} {dotted(path)}"


def position_of(problem_where: str) -> tuple[int, int]:
    """(line, column) inside a `where` string, for sorting problems; (0, 0) when it has none."""
    match = re.search(r":(\d+):(\d+) ", problem_where)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def describe(error) -> str:
    """One line for a jsonschema ValidationError, without echoing long values."""
    from runner.redact import redact_text  # a token written in the wrong place is not echoed

    value = json.dumps(error.instance, default=str) if not isinstance(error.instance, dict) else "a mapping"
    value = redact_text(value[:57] + "..." if len(value) > 60 else value)
    kind = error.validator
    if kind == "required":
        missing = re.findall(r"'([^']+)' is a required property", error.message)
        return f"missing required key '{missing[0] if missing else error.message}'"
    if kind == "type":
        expected = error.validator_value if isinstance(error.validator_value, list) else [error.validator_value]
        names = [t for t in expected if t != "null"]
        return f"expected {' or '.join(names)}, got {value}" + (" (a list)" if isinstance(error.instance, list) else "")
    if kind == "enum":
        options = ", ".join(str(o) for o in error.validator_value if o is not None)
        return f"{value} is not one of: {options}"
    if kind == "const":
        return f"must be {json.dumps(error.validator_value)}, got {value}"
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        relation = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[kind]
        return f"{value} is out of range: must be {relation} {error.validator_value}"
    if kind == "uniqueItems":
        seen, duplicates = set(), []
        for item in error.instance:
            identity = json.dumps(item, sort_keys=True, default=str)  # items may be lists or mappings
            if identity in seen:
                duplicates.append(item)
            seen.add(identity)
        return f"duplicate values: {', '.join(map(str, duplicates))}"
    if kind == "minItems":
        return f"needs at least {error.validator_value} item(s), got {len(error.instance)}"
    if kind == "pattern":
        return f"{value} is not a valid value here"
    if kind == "minLength":
        return "must not be empty"
    return error.message


def hint(error, field_schema: dict) -> str:
    """How to fix a schema problem: the allowed values, or the first sentence of the field's description."""
    description = field_schema.get("description", "")
    first_sentence = _SENTENCE_END.split(description, maxsplit=1)[0].rstrip(".")
    if error.validator == "enum":
        return f"use one of: {', '.join(str(o) for o in error.validator_value if o is not None)}"
    if error.validator == "required":
        return "add it; `runner schema` or spec/reference.md lists every key"
    default = field_schema.get("default")
    suffix = f" (default: {json.dumps(default)})" if default is not None else ""
    return (first_sentence + suffix) if first_sentence else "see spec/reference.md"


def schema_file() -> Path:
    """Where the installed JSON Schema lies (for a spec's `$schema` line)."""
    return Path(str(resources.files("runner").joinpath("schemas", SCHEMA_FILE))).resolve()
