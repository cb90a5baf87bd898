"""YAML with positions: parse a spec (or an AutoTrain config, or a `--set` value) into plain values
and a map from each value's path to its line and column, safely.

Safe means more than `yaml.safe_load`: no Python objects, and also no input that can make the
parser take unbounded time or memory or end in a traceback. Aliases may not expand to more than
MAX_NODES nodes (the "billion laughs" shape), nesting may not go deeper than MAX_DEPTH, an alias
may not refer to itself, keys are strings, and every number form YAML 1.2 and JSON accept (`5e-5`,
`1E-3`, `.5`, `+1e3`) is a number. Each refusal is a SpecError with its `file:line:column`; no
message repeats the file's content beyond a key's name.

Light on purpose: `runner validate` imports it without torch.
"""

from __future__ import annotations

import re

import yaml

from runner.errors import SpecError
from runner.spec.schema import dotted

MAX_DEPTH = 50  # a spec is 4 levels deep; the composer recurses, so this also keeps Python's stack safe
MAX_NODES = 20_000  # values after alias expansion; a real spec has about a hundred

SYNTAX_HINT = "fix the YAML syntax there (indentation, colons, quotes, brackets)"
STR_TAG = "tag:yaml.org,2002:str"
MERGE_TAG = "tag:yaml.org,2002:merge"
KIND_BY_TAG = {
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:bool": "true or false",
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:timestamp": "a date",
}

# YAML 1.2 core schema / JSON floats that YAML 1.1 (PyYAML) reads as strings: 5e-5, 1E-3, +1e3.
FLOAT_12 = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")


class _Loader(yaml.SafeLoader):
    """Safe YAML that bounds nesting while composing (the composer is recursive)."""

    def __init__(self, stream):
        super().__init__(stream)
        self.depth = 0
        self.source = "<spec>"

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise SpecError(
                    f"the YAML is nested more than {MAX_DEPTH} levels deep",
                    "a spec needs a few levels; flatten the structure",
                    _place(self.source, mark),
                )
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep)
        except (
            ValueError,
            OverflowError,
            TypeError,
            RecursionError,
        ) as exc:  # a date like 2024-13-45, a 5000-digit int
            if isinstance(exc, yaml.YAMLError):
                raise
            raise SpecError(
                f"this value cannot be read ({type(exc).__name__}: a date or number out of range)",
                "write a plain number, word or date",
                _place(self.source, node.start_mark),
            ) from None


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", FLOAT_12, list("-+.0123456789"))


def _place(source: str, mark) -> str:
    return f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source


def parse_yaml(text: str, source: str) -> tuple[object, dict]:
    """Return the document and a map from path (tuple) to (line, column), both 1-based.

    A key's own position is stored under ("<key>",) + path so unknown keys point at the key.
    """
    try:
        loader = _Loader(text)  # refuses control characters before parsing anything
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        raise SpecError(
            f"the spec holds a control character YAML does not allow (#x{exc.character:04x})",
            "delete it; a spec is plain text",
            f"{source}:{line}:{column}",
        ) from None
    loader.source = source
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        check_node_graph(node, source)
        positions: dict = {}
        record_positions(node, (), positions, source)
        document = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        raise syntax_error(exc, source) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"YAML error: {type(exc).__name__}", SYNTAX_HINT, source) from None
    except RecursionError:
        raise SpecError("the YAML is nested too deeply to read", "flatten the structure", source) from None
    finally:
        loader.dispose()
    return document, positions


def parse_value(text: str, source: str):
    """One value written on the command line (`--set key=VALUE`), with the same guards and numbers."""
    try:
        document, _ = parse_yaml(text, source)
    except SpecError as exc:
        exc.where = source  # the line and column inside a one-line value say nothing
        raise
    return document


def syntax_error(exc: yaml.MarkedYAMLError, source: str) -> SpecError:
    """Where the broken construct started (an unclosed quote or bracket) and where the parser gave up."""
    problem = (exc.problem or exc.context or "cannot parse").strip()
    context, start, broke = exc.context, exc.context_mark, exc.problem_mark
    if start is not None and broke is not None and (start.line, start.column) != (broke.line, broke.column):
        what = f"{context.strip()} (starting here)" if context else "in the construct starting here"
        return SpecError(
            f"YAML syntax error {what}: {problem} at {_place(source, broke)}", SYNTAX_HINT, _place(source, start)
        )
    return SpecError(f"YAML syntax error: {problem}", SYNTAX_HINT, _place(source, broke or start))


def check_node_graph(root, source: str) -> None:
    """Refuse aliases that refer to the node holding them, and alias expansion beyond MAX_NODES.

    Each distinct node is visited once (sizes are memoised), so a 500-byte alias bomb is refused
    in microseconds instead of being expanded into billions of values.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise SpecError(
                "an alias refers to the value that holds it (a recursive structure)",
                "aliases (*name) may only repeat a value defined before and outside them",
                _place(source, node.start_mark),
            )
        total = 1
        if isinstance(node, (yaml.SequenceNode, yaml.MappingNode)):
            open_nodes.add(key)
            children = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
            for child in children:
                total += size(child)
                if total > MAX_NODES:
                    raise SpecError(
                        f"aliases expand this value to more than {MAX_NODES:,} values",
                        "repeat fewer aliases; a spec needs no more than a few hundred values",
                        _place(source, node.start_mark),
                    )
            open_nodes.discard(key)
        sizes[key] = total
        return total

    size(root)


def record_positions(node, path: tuple, positions: dict, source: str) -> None:
    """Fill `positions` for `node` and every value under it; refuse duplicate and non-string keys."""
    positions[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        seen = {}
        for key_node, value_node in node.value:
            line, column = key_node.start_mark.line + 1, key_node.start_mark.column + 1
            if key_node.tag == MERGE_TAG:  # `<<: *defaults`: its keys are recorded under the mapping
                if isinstance(value_node, yaml.MappingNode):
                    record_positions(value_node, path, positions, source)
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != STR_TAG:
                kind = KIND_BY_TAG.get(
                    key_node.tag,
                    "a list or mapping" if not isinstance(key_node, yaml.ScalarNode) else "not a plain string",
                )
                raise SpecError(
                    f"a key here is {kind}, not a name",
                    "keys are names; quote a key that YAML reads otherwise, e.g. 'yes': or '1':",
                    f"{source}:{line}:{column} {dotted(path)}",
                )
            key = key_node.value
            if key in seen:
                raise SpecError(
                    f"duplicate key '{key}' (first at line {seen[key]})",
                    "keep one of the two entries",
                    f"{source}:{line}:{column} {dotted(path + (key,))}",
                )
            seen[key] = line
            positions[("<key>",) + path + (key,)] = (line, column)
            record_positions(value_node, path + (key,), positions, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            record_positions(item, path + (index,), positions, source)
