"""`runner convert`: an AutoTrain config, checked as `runner validate` checks it, written out as a
native spec."""

from __future__ import annotations

import os
from pathlib import Path

from runner.errors import SpecError
from runner.spec.autotrain import is_autotrain_config, translate
from runner.spec.autotrain_values import scalar
from runner.spec.document import load_spec
from runner.spec.schema import schema_file
from runner.spec.yamlsource import parse_yaml


def convert_file(path: str | Path, spec_path: str | Path | None = None) -> str:
    """The native spec text for the AutoTrain config at `path` (see native_spec_text)."""
    path = Path(path)
    spec = load_spec(path)  # every check, with errors pointing at the AutoTrain config's lines
    document, _ = parse_yaml(spec.text, str(path))  # the same guards and numbers as the spec loader
    if not is_autotrain_config(document):
        raise SpecError(
            "this is already a native spec, not an AutoTrain config",
            "run it as it is: runner run " + str(path),
            str(path),
        )
    return native_spec_text(document, path, Path(spec_path) if spec_path is not None else None)


# ---------------------------------------------------------------------------------------------
# Writing the native spec


def native_spec_text(document: dict, config_path: Path, spec_path: Path | None = None) -> str:
    """The native spec for a checked AutoTrain config, as YAML text with a comment on each line whose
    meaning changed. Relative paths are rewritten for `spec_path` (default: beside the config)."""
    native, _, notes = translate(document, {}, str(config_path))
    spec_dir = Path(spec_path).parent if spec_path is not None else config_path.parent
    if spec_path is not None:
        _rebase_paths(native, config_path.parent, spec_dir)
    schema = schema_file()

    lines = [
        f"# yaml-language-server: $schema={Path(os.path.relpath(schema, spec_dir.resolve())).as_posix()}",
        f"# Converted from the AutoTrain config {config_path.name} by `runner convert`.",
        "# A comment marks each line that behaves differently from AutoTrain, or that AutoTrain's defaults decided.",
    ]
    lines += _render(native, notes, ())
    return "\n".join(lines) + "\n"


def _rebase_paths(native: dict, config_dir: Path, spec_dir: Path) -> None:
    data, model = native.get("data", {}), native["model"]
    for key in ("train", "validation_file"):
        if data.get(key) and not Path(data[key]).is_absolute():
            data[key] = Path(os.path.relpath(config_dir / data[key], spec_dir)).as_posix()
    name = model["name"]
    if not Path(name).expanduser().is_absolute() and (config_dir / name).exists():
        model["name"] = Path(os.path.relpath(config_dir / name, spec_dir)).as_posix()


def _render(mapping: dict, notes: dict, path: tuple, indent: str = "") -> list[str]:
    lines = []
    for key, value in mapping.items():
        here = path + (key,)
        comment = f"  # {notes[here]}" if here in notes else ""
        if isinstance(value, dict):
            lines.append(f"{indent}{key}:{comment}")
            lines += _render(value, notes, here, indent + "  ")
        else:
            lines.append(f"{indent}{key}: {scalar(value)}{comment}")
    for note_path, note in notes.items():  # settings with no line of their own
        if note_path[:-1] == path and note_path[-1] not in mapping:
            lines.append(f"{indent}# {note_path[-1]}: {note}")
    return lines
