"""A spec section's values as its typed class (runner/spec/sections.py): `spec.train` is a `TrainSection`.

A copy: changing the spec's values later never changes a view taken before, and a view never changes
the spec (`Spec.replace` makes a changed spec). A key the values leave out is None, as in the values.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from collections.abc import Mapping
from functools import cache

from runner.spec.sections import SECTIONS


class ReadOnlyMap(dict):
    """A mapping with free keys inside a section (train.class_weights: label -> weight), read-only.
    A dict, so it dumps to JSON and YAML as one."""

    def _refuse(self, *args, **kwargs):
        raise TypeError("a spec's values are read-only; use Spec.replace")

    __setitem__ = __delitem__ = __ior__ = update = pop = setdefault = clear = popitem = _refuse

    def __reduce__(self):  # copy and deepcopy build a new one instead of setting keys one by one
        return (type(self), (dict(self),))


@cache
def _fields(cls: type) -> tuple[tuple[str, type | None, bool], ...]:
    """(name, nested dataclass or None, free-key mapping?) of each field of `cls`."""
    hints = typing.get_type_hints(cls)
    out = []
    for item in dataclasses.fields(cls):
        options = typing.get_args(hints[item.name]) or (hints[item.name],)
        nested = next((o for o in options if dataclasses.is_dataclass(o)), None)
        mapping = any(typing.get_origin(o) is Mapping for o in options)
        out.append((item.name, nested, mapping))
    return tuple(out)


def build(cls: type, values: dict | None):
    """An instance of the section class `cls` from its values (None stays None)."""
    if values is None:
        return None
    kwargs = {}
    for name, nested, mapping in _fields(cls):
        value = values.get(name)
        if nested is not None and isinstance(value, dict):
            value = build(nested, value)
        elif mapping and isinstance(value, dict):
            value = ReadOnlyMap(copy.deepcopy(value))
        elif isinstance(value, (list, dict)):
            value = copy.deepcopy(value)
        kwargs[name] = value
    return cls(**kwargs)


def section_view(name: str, values: dict | None):
    """`spec.<name>`: the section's typed instance, or None where the section is null."""
    return build(SECTIONS[name], values)


def section_values(section):
    """The values of a section instance as plain dicts and lists (for JSON, YAML or `Spec.replace`)."""
    if dataclasses.is_dataclass(section):
        return {item.name: section_values(getattr(section, item.name)) for item in dataclasses.fields(section)}
    if isinstance(section, dict):
        return {key: section_values(value) for key, value in section.items()}
    return list(map(section_values, section)) if isinstance(section, list) else section
