"""Reading an AutoTrain config's values: mappings, keys, strings and numbers, each checked with a
problem reported at its place, and values written back the way YAML writes them."""

from __future__ import annotations

import difflib

import yaml


def missing(path: tuple, problem, hint: str) -> None:
    problem(path[:-1], f"missing required key '{'.'.join(path)}'", hint)


def mapping(parent: dict, path: tuple, problem, required: bool = False) -> dict:
    value = parent.get(path[-1])
    if value is None:
        if required:
            missing(path, problem, "AutoTrain configs need data.path and data.column_mapping")
        return {}
    if not isinstance(value, dict):
        problem(path, "must be a mapping of keys to values", "indent its keys under it")
        return {}
    return value


def check_keys(mapping: dict, path: tuple, allowed, problem) -> None:
    for key in mapping:
        if key not in allowed:
            problem(path + (key,), f"unknown key '{key}' in an AutoTrain config", suggest(str(key), allowed), key=True)


def suggest(key: str, allowed) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else f"allowed keys here: {', '.join(allowed)}"


def string(mapping: dict, path: tuple, problem, required: bool = False, default=None):
    value = mapping.get(path[-1])
    if value is None:
        if required:
            missing(path, problem, "see configs/text_classification/*.yml in AutoTrain for the format")
        return default
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        problem(path, f"must be a string, got {scalar(value)}", "write a plain value")
        return default
    return str(value)


def coerce(value, kind):
    if kind is bool:
        return value if isinstance(value, bool) else None
    if isinstance(value, bool):
        return None
    if kind is str:
        return value if isinstance(value, str) else None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, (int, float)):
        return None
    if kind is int:
        return int(value) if float(value).is_integer() else None
    return float(value)


def scalar(value) -> str:
    """A value as YAML writes it in flow style: 2.0e-05, true, null, [tensorboard], 'quoted: text'."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
    return text.removesuffix("...").strip()
