"""spec/reference.md, generated from the JSON Schema (`runner docs`; a test fails when it is stale)."""

from __future__ import annotations

import json

from runner.spec.schema import load_schema


def _type_of(prop: dict) -> str:
    if "const" in prop:
        return f"`{json.dumps(prop['const'])}`"
    if "enum" in prop:
        return " \\| ".join(f"`{v}`" for v in prop["enum"] if v is not None) + (
            " \\| null" if None in prop["enum"] else ""
        )
    kinds = prop.get("type", "any")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "array" in kinds and "items" in prop:
        item = prop["items"]
        inner = " \\| ".join(f"`{v}`" for v in item["enum"]) if "enum" in item else item.get("type", "any")
        kinds = [f"list of {inner}" if k == "array" else k for k in kinds]
    return " \\| ".join(kinds)


def _limits(prop: dict) -> str:
    parts = []
    for key, symbol in (("minimum", ">="), ("exclusiveMinimum", ">"), ("maximum", "<="), ("exclusiveMaximum", "<")):
        if key in prop:
            parts.append(f"{symbol} {prop[key]}")
    if "pattern" in prop:
        parts.append(f"pattern `{prop['pattern']}`".replace("|", "\\|"))  # a table cell: | escaped, also in code
    if prop.get("uniqueItems"):
        parts.append("unique")
    return ", ".join(parts)


def _rows(properties: dict, required: list, prefix: str, out: list, sections: list) -> None:
    for key, prop in properties.items():
        path = f"{prefix}{key}"
        default = "required" if key in required else (f"`{json.dumps(prop['default'])}`" if "default" in prop else "")
        description = prop.get("description", "").replace("\n", " ").replace("|", "\\|")
        out.append(f"| `{path}` | {_type_of(prop)} | {default} | {_limits(prop)} | {description} |")
        if "properties" in prop:
            sections.append((path, prop))


def render_reference() -> str:
    schema = load_schema()
    lines = [
        "# Spec reference (v1)",
        "",
        "<!-- Generated from schemas/spec-v1.schema.json by `runner docs`. Do not edit by hand. -->",
        "",
        schema["description"],
        "",
        "Unknown keys are errors. Relative paths are resolved against the spec file's folder.",
        "Put this first line in a spec for editor completion and checking:",
        "",
        "```yaml",
        "# yaml-language-server: $schema=../schemas/spec-v1.schema.json",
        "```",
        "",
        "## Top level",
        "",
        "| key | type | default | limits | description |",
        "| --- | --- | --- | --- | --- |",
    ]
    sections: list = []
    _rows(schema["properties"], schema.get("required", []), "", lines, sections)
    while sections:
        path, prop = sections.pop(0)
        lines += [
            "",
            f"## `{path}`",
            "",
            prop.get("description", ""),
            "",
            "| key | type | default | limits | description |",
            "| --- | --- | --- | --- | --- |",
        ]
        nested: list = []
        _rows(prop["properties"], prop.get("required", []), f"{path}.", lines, nested)
        sections = nested + sections
    return "\n".join(lines) + "\n"
