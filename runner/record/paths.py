"""Paths in what a run publishes (run.json): never one of the machine that ran it. A path is written
relative to the run folder, the spec's folder or the working folder that holds it (published_path), or
by its file name alone, marked outside; the commands that read a run's record back find it again from the
run folder (recorded_path, recorded_spec_file)."""

from __future__ import annotations

import os
from pathlib import Path

from runner.record.rundir import SPEC, absolute_path


def published_path(path: str | Path, run_dir: str | Path, spec_dir: str | Path | None = None) -> dict:
    """A path as run.json records it: {"path": relative, "relative_to": "run" | "spec" | "cwd"}, relative to
    the first of the run folder, the spec's folder and the working folder that holds it; {"path": its file
    name, "outside": true} when none does (the name is all that is published of it).

    A path the working folder holds beside the spec (`../data/train.csv` from specs/) is written relative
    to the spec's folder, `..` and all: it is found again from the run folder wherever a command runs."""
    where = _relative(path, (("run", run_dir), ("spec", spec_dir), ("cwd", Path.cwd())))
    if where.get("relative_to") == "cwd" and spec_dir is not None and _holds(Path.cwd(), spec_dir):
        return {"path": Path(os.path.relpath(absolute_path(path), absolute_path(spec_dir))).as_posix(),
                "relative_to": "spec"}
    return where


def _holds(folder: str | Path, path: str | Path) -> bool:
    folder, path = absolute_path(folder), absolute_path(path)
    return path == folder or folder in path.parents


def _relative(path: str | Path, bases) -> dict:
    for name, base in bases:
        if base is not None and _holds(base, path):
            return {"path": absolute_path(path).relative_to(absolute_path(base)).as_posix(), "relative_to": name}
    return {"path": absolute_path(path).name, "outside": True}


def published_arg(arg: str) -> str:
    """A command-line argument (or another path the user gave) as run.json records it: an absolute path
    (alone, or after `=` as in `--output=/x` or `output.dir=/x`) relative to the working folder (where a
    path typed is relative to) when it holds it, else its file name; anything else as it is."""
    key, equals, value = arg.partition("=") if "=" in arg and not os.path.isabs(arg) else ("", "", arg)
    if not os.path.isabs(value):
        return arg
    return key + equals + _relative(value, (("cwd", Path.cwd()),))["path"]


def published_argv(argv) -> list[str]:
    """The command line as run.json records it: the program as `runner` (never the path of the executable
    that ran it), absolute paths among the arguments relative (published_arg)."""
    argv = [str(a) for a in argv]
    return ["runner", *(published_arg(a) for a in argv[1:])] if argv else []


def recorded_spec_dir(run_dir: str | Path, manifest: dict) -> Path | None:
    """The folder of the spec a run was made from: run.json's spec_dir (relative to the run folder), the
    folder of an absolute spec_file (records written before paths were made relative), or the folder
    spec.yaml's first line names; None when none says."""
    run_dir = Path(run_dir)
    if isinstance(manifest.get("spec_dir"), str):
        return absolute_path(run_dir / manifest["spec_dir"])
    if isinstance(manifest.get("spec_file"), str) and os.path.isabs(manifest["spec_file"]):
        return Path(manifest["spec_file"]).parent
    from runner.spec.document import RELATIVE_TO

    try:
        header = RELATIVE_TO.match((run_dir / SPEC).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None
    return absolute_path(run_dir / header.group(1)) if header else None


def recorded_spec_file(run_dir: str | Path, manifest: dict) -> Path | None:
    """The spec file a run was made from (see recorded_spec_dir); None when run.json does not name it."""
    name = manifest.get("spec_file")
    if not isinstance(name, str) or not name:
        return None
    if os.path.isabs(name):
        return Path(name)
    folder = recorded_spec_dir(run_dir, manifest)
    return folder / Path(name).name if folder is not None else None


def recorded_path(entry, run_dir: str | Path, manifest: dict) -> Path | None:
    """Where a path run.json records (published_path's {path, relative_to}, or an absolute path as older
    records hold) is on this machine; None for a path recorded by its name only (outside) or not at all."""
    path = entry.get("path") if isinstance(entry, dict) else entry
    if not isinstance(path, str) or not path or (isinstance(entry, dict) and entry.get("outside")):
        return None
    if os.path.isabs(path):
        return Path(path)
    base = entry.get("relative_to", "run") if isinstance(entry, dict) else "run"
    if base == "spec":
        folder = recorded_spec_dir(run_dir, manifest)
        return folder / path if folder is not None else None
    return (Path.cwd() if base == "cwd" else Path(run_dir)) / path
