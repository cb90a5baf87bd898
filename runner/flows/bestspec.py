"""best-spec.yaml: the user's spec with the search's best values, as a minimal edit of its text.

Only the searched keys change (rounded to 3 significant figures: the run trains with the rounded
values, so the file reproduces it), `search:` is removed, and the user's comments, order and
quoting stay. Two more edits make the file valid where it is written (the run folder), since a
spec's paths are relative to its own folder: the data files and a local model folder are written
relative to the new location (relative, not absolute, so the file holds no machine-specific
path and stays committable with the repository it lives in), and `output.dir` names a folder of
its own next to the search's run (`<run>-best`), so running it does not clash with the search run.

Edits go by the positions the YAML parser recorded (runner.spec.yamlsource); the result is parsed again
and checked, and when a spec's shape defeats the line edit (an AutoTrain config, an unusual layout)
the whole spec is written out instead (comments lost, said in the header).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

from runner.record.rundir import BEST_SPEC

PATH_KEYS = (("data", "train"), ("data", "validation_file"), ("data", "test_file"))
# search key -> its place in the spec (runner.flows.search.PLACES has them too, with the Trainer's field)
SPEC_PATHS = {
    "learning_rate": ("train", "learning_rate"),
    "batch_size": ("train", "batch_size"),
    "epochs": ("train", "epochs"),
    "weight_decay": ("train", "weight_decay"),
    "warmup_ratio": ("train", "warmup_ratio"),
    "lora_r": ("lora", "r"),
}


def three_figures(value):
    """Floats rounded to 3 significant figures; other values unchanged."""
    if isinstance(value, float) and value != 0 and math.isfinite(value):
        return float(f"{value:.3g}")
    return value


def rounded(params: dict) -> dict:
    return {key: three_figures(value) for key, value in params.items()}


def scalar(value) -> str:
    """YAML text that YAML 1.1 and 1.2 readers both read back as `value`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        text = f"{value:.3g}" if value else "0.0"
        if "e" in text:
            mantissa, exponent = text.split("e")
            text = f"{mantissa if '.' in mantissa else mantissa + '.0'}e{exponent}"
        return text if ("." in text or "e" in text) else text + ".0"
    import yaml

    return yaml.safe_dump(str(value), default_style='"', allow_unicode=True, width=1 << 20).strip().removesuffix(
        "..."
    ).strip()


def _token_end(line: str, start: int, flow: bool) -> int:
    """Where the scalar starting at `start` ends (exclusive)."""
    if line[start : start + 1] in ('"', "'"):
        quote, i = line[start], start + 1
        while i < len(line):
            if line[i] == "\\" and quote == '"':
                i += 2
                continue
            if line[i] == quote:
                if quote == "'" and line[i + 1 : i + 2] == "'":
                    i += 2
                    continue
                return i + 1
            i += 1
        return len(line.rstrip("\r\n"))
    end = len(line.rstrip("\r\n"))
    comment = line.find(" #", start)
    if comment != -1:
        end = min(end, comment)
    if flow:
        for stop in ",}]":
            found = line.find(stop, start)
            if found != -1:
                end = min(end, found)
    return len(line[:end].rstrip())


class _Editor:
    def __init__(self, text: str, positions: dict):
        self.lines = text.splitlines(keepends=True)
        self.positions = positions
        self.inserts: list[tuple[int, str]] = []
        self.appended: list[str] = []

    def _flow(self, parent: tuple) -> bool:
        at = self.positions.get(parent)
        if not at or not isinstance(at[0], int):
            return False
        return self.lines[at[0] - 1][at[1] - 1 : at[1]] == "{"

    def set(self, path: tuple, value_text: str) -> None:
        at = self.positions.get(path)
        if at and isinstance(at[0], int) and ("<key>",) + path in self.positions:
            line_index, start = at[0] - 1, at[1] - 1
            line = self.lines[line_index]
            end = _token_end(line, start, self._flow(path[:-1]))
            self.lines[line_index] = line[:start] + value_text + line[end:]
            return
        section, name = path[0], path[-1]
        parent = self.positions.get((section,))
        if ("<key>", section) in self.positions and parent and isinstance(parent[0], int) and len(path) == 2:
            line_index, column = parent[0] - 1, parent[1] - 1
            line = self.lines[line_index]
            if line[column : column + 1] == "{":
                self.lines[line_index] = line[: column + 1] + f"{name}: {value_text}, " + line[column + 1 :]
            elif line[column : column + 1] not in ("", "\n", "\r", "~", "n"):  # a block mapping's first key
                self.inserts.append((line_index, " " * column + f"{name}: {value_text}\n"))
            else:
                raise ValueError("section without a mapping")
            return
        if ("<key>", section) in self.positions or len(path) != 2:
            raise ValueError("no place for the key")
        self.appended.append(f"{section}:\n  {name}: {value_text}\n")

    def remove_block(self, key: str) -> None:
        at = self.positions.get(("<key>", key))
        if not at or at[1] != 1:
            return
        first = at[0] - 1
        last = first + 1
        while last < len(self.lines) and (not self.lines[last].strip() or self.lines[last][:1] in (" ", "\t")):
            last += 1
        while last > first + 1 and not self.lines[last - 1].strip():
            last -= 1  # keep the blank lines before the next key
        for i in range(first, last):
            self.lines[i] = ""

    def text(self) -> str:
        lines = list(self.lines)
        for index, new in sorted(self.inserts, reverse=True):
            lines.insert(index, new)
        out = "".join(lines)
        if self.appended:
            out = out.rstrip("\n") + "\n\n" + "".join(self.appended)
        return out


def _relative(target: Path, folder: Path) -> str:
    return Path(os.path.relpath(target.resolve(), folder.resolve())).as_posix()


def _moved_paths(spec, destination: Path) -> dict:
    """{spec path: new text} for the data files and a local model folder, relative to `destination`'s folder."""
    from runner.spec.specrules import looks_like_local_path

    folder = destination.parent
    out = {}
    for path in PATH_KEYS:
        value = spec.values[path[0]].get(path[1])
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            out[path] = _relative(spec.resolve(value), folder)
    model = spec.model.name
    if isinstance(model, str) and not Path(model).expanduser().is_absolute():
        if looks_like_local_path(model) or spec.resolve(model).exists():
            out[("model", "name")] = _relative(spec.resolve(model), folder)
    return out


def own_output_dir(spec, destination: Path) -> str:
    """`<search run folder>-best`, next to the search's run folder, relative to the file's folder."""
    run_dir = Path(spec.output_dir)
    return _relative(run_dir.with_name(run_dir.name + "-best"), destination.parent)


def best_spec_text(spec, params: dict, record: dict, destination) -> str:
    """The text of best-spec.yaml, to be written at `destination` (see the module's doc)."""
    from runner.errors import SpecError

    destination = Path(destination)
    params = rounded(params)
    edits = {SPEC_PATHS[key]: scalar(value) for key, value in params.items()}
    edits.update({path: scalar(text) for path, text in _moved_paths(spec, destination).items()})
    edits[("output", "dir")] = scalar(own_output_dir(spec, destination))
    expected = {SPEC_PATHS[key]: value for key, value in params.items()}
    header = _header(spec, params, record)
    text = None
    if spec.text and not spec.autotrain:
        try:
            editor = _Editor(spec.text, spec.positions)
            editor.remove_block("search")
            for path, value_text in edits.items():
                editor.set(path, value_text)
            text = _schema_line(editor.text(), spec, destination)
            _check(text, expected, edits)
        except (ValueError, IndexError, KeyError, SpecError):
            text = None
    if text is None:
        import copy

        import yaml

        values = copy.deepcopy(spec.values)
        values.pop("search", None)
        for path, value_text in edits.items():
            values[path[0]][path[1]] = yaml.safe_load(value_text)
        header.append("# The spec's layout could not be edited in place, so every value is written out (no comments).")
        text = yaml.safe_dump(values, sort_keys=False, allow_unicode=True)
    return "\n".join(header) + "\n" + text


def _header(spec, params: dict, record: dict) -> list[str]:
    shown = ", ".join(f"{key} {scalar(value)}" for key, value in params.items())
    return [
        f"# best-spec.yaml, written by `runner run` after a {len(record['trials'])}-trial search of "
        f"{Path(spec.path).name if spec.path else 'the spec'}: best trial {record['best']['number']}, validation "
        f"{record['metric']} {record['best']['value']:.4f} ({shown}; 3 significant figures, as the run trained).",
        "# Only the searched keys changed; `search` is removed; data paths are relative to this file's folder and "
        "output.dir is a folder of its own.",
    ]


def _schema_line(text: str, spec, destination: Path) -> str:
    """A relative `$schema=` modeline rewritten for the new folder."""
    match = re.search(r"(\$schema=)(\S+)", text.split("\n", 3)[0] + "\n" + "\n".join(text.split("\n", 3)[1:3]))
    if not match or "://" in match.group(2) or Path(match.group(2)).is_absolute():
        return text
    moved = _relative(spec.base_dir / match.group(2), destination.parent)
    return text.replace(match.group(0), match.group(1) + moved, 1)


def _check(text: str, expected: dict, edits: dict) -> None:
    """The edited text parses and holds the new values and no `search`; ValueError otherwise."""
    import yaml

    from runner.spec.yamlsource import parse_yaml

    document, _ = parse_yaml(text, BEST_SPEC)
    if not isinstance(document, dict) or "search" in document:
        raise ValueError("search left in")
    for (section, name), value in expected.items():
        got = (document.get(section) or {}).get(name)
        if got != value and not (isinstance(got, (int, float)) and math.isclose(got, value, rel_tol=1e-9)):
            raise ValueError(f"{section}.{name} not set")
    for (section, name), value_text in edits.items():
        if (document.get(section) or {}).get(name) != yaml.safe_load(value_text) and (section, name) not in expected:
            raise ValueError(f"{section}.{name} not set")
