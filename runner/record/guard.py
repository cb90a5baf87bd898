"""The guarded writer: every file or folder a command other than `runner run` writes is checked here
first, and written atomically.

It refuses (SpecError, exit 2) to write onto one of the command's inputs, onto a run folder's own
files or into a run folder, and onto an existing file or a folder that holds other files unless the
user passed the command's force flag. A file is written to a temporary file beside it and renamed; a
folder is built as a temporary folder beside it and renamed into place, so a reader sees the old
one or the new one, never a mix, and a failure leaves the old one as it was.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from runner.errors import RunError, SpecError
from runner.files import atomic_write_bytes
from runner.record.rundir import MANIFEST, METRICS

RUN_MARKERS = (MANIFEST, METRICS)


def resolved(path: str | Path) -> Path:
    """The absolute path with links and `..` resolved (a path that does not exist yet is fine)."""
    return Path(os.path.abspath(path)).resolve()


def same_file(first: Path, second: Path) -> bool:
    """The same file: equal resolved paths, or (both existing) the same inode, so a hard link counts."""
    if resolved(first) == resolved(second):
        return True
    try:
        return os.path.samefile(first, second)
    except OSError:
        return False


def is_run_folder(path: Path) -> bool:
    path = Path(path)
    """A folder a run wrote (run.json, metrics.json) or is writing (its checkpoints' fingerprint)."""
    return path.is_dir() and (any((path / m).is_file() for m in RUN_MARKERS)
                              or (path / "checkpoints" / "fingerprint.json").is_file())


def enclosing_run(path: Path) -> Path | None:
    """The run folder that `path` is inside of (or is), None when there is none."""
    for folder in (resolved(path), *resolved(path).parents):
        if is_run_folder(folder):
            return folder
    return None


def run_inputs(run_dir: Path) -> list[Path]:
    """The run folder and the data files its run.json records: what a command on a run must never replace."""
    import json

    out = [Path(run_dir)]
    try:
        files = (json.loads((Path(run_dir) / MANIFEST).read_text(encoding="utf-8")).get("data") or {}).get("files")
    except (OSError, ValueError, AttributeError):
        return out
    for entry in (files or {}).values():
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            out.append(Path(entry["path"]))
    return out


def inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_file(path: str | Path, inputs=(), force: bool = False, option: str = "--output",
               force_flag: str = "--force") -> Path:
    """Before any work: `path` may be written as a file. Returns it unchanged."""
    path = Path(path)
    where = str(path)
    for source in inputs:
        if source is not None and same_file(path, Path(source)):
            raise SpecError(f"{option} is the input file {source}; writing it would replace the input",
                            f"give another path with {option}", where)
    run = enclosing_run(path.parent)
    if run is not None:
        raise SpecError(f"{option} is inside the run folder {run}; a command never writes into a run's own folder",
                        f"give a path outside the run folder with {option}", where)
    if path.is_dir():
        raise SpecError(f"{option} is a folder", "give a file path such as predictions.jsonl", where)
    if not path.parent.is_dir():
        raise SpecError(f"folder {path.parent} does not exist",
                        "create it first (mkdir -p), or write into an existing folder", where)
    if (path.exists() or path.is_symlink()) and not force:
        raise SpecError("the file already exists", f"choose another path, or pass {force_flag} to replace it", where)
    return path


def write_file(path: str | Path, data: str | bytes) -> None:
    """Atomically (temporary file, then rename); a failure is one RunError line."""
    try:
        atomic_write_bytes(path, data.encode("utf-8") if isinstance(data, str) else data)
    except OSError as exc:
        raise RunError(f"could not write the file: {exc.strerror or exc}",
                       "check the folder's permissions and free space", str(path)) from None


def check_folder(path: str | Path, inputs=(), force: bool = False, option: str = "-o", force_flag: str = "--force",
                 own: Path | None = None, replaceable=None) -> Path:
    """Before any work: `path` may be replaced by a folder this command builds. Returns it resolved.

    `own` is the folder's default place inside the command's run folder (RUN/onnx), which the
    command may replace; `replaceable(folder)` says whether an existing folder is an earlier output
    of the same command (replaced without the force flag)."""
    target = resolved(path)
    where = str(path)
    if inside(resolved(Path.cwd()), target):
        raise SpecError(f"{option} is the current folder (or holds it); the command would replace it",
                        f"give a new folder, e.g. {option} exported", where)
    if target.exists() and not target.is_dir():
        raise SpecError(f"{option} is a file", f"give a folder with {option}", where)
    for source in inputs:
        source = resolved(source)
        if inside(source, target):
            raise SpecError(f"{option} holds the command's input {source}; replacing it would delete the input",
                            f"give another folder with {option}", where)
    if own is not None and target == resolved(own):
        return target
    run = enclosing_run(target)
    if run is not None:
        what = "is a run folder" if run == target else f"is inside the run folder {run}"
        raise SpecError(f"{option} {what}; writing there would replace the run's own files",
                        f"give a folder outside any run folder with {option}", where)
    if target.is_dir() and any(target.iterdir()) and not force and not (replaceable and replaceable(target)):
        raise SpecError(f"{option} is a folder that already holds other files",
                        f"give a new or empty folder, or pass {force_flag} to replace it", where)
    if not target.parent.is_dir():
        raise SpecError(f"folder {target.parent} does not exist",
                        "create it first (mkdir -p), or write into an existing folder", where)
    return target


def temporary_folder(target: Path, fixed: bool = False) -> Path:
    """An empty folder beside `target` to build it in; `fixed` names it .NAME.tmp (inside a locked run folder)."""
    target = Path(target)
    if fixed:
        folder = target.with_name(f".{target.name}.tmp")
        remove(folder)
        folder.mkdir(parents=True)
        return folder
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))


def replace_folder(temporary: Path, target: Path) -> None:
    """Put the built folder in place of `target`: the old one is renamed aside, the new one renamed in,
    and only then the old one removed; a failure in between puts the old one back."""
    target = Path(target)
    old = None
    if target.exists() or target.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rmdir(old)
        os.rename(target, old)
    try:
        os.rename(temporary, target)
    except BaseException:
        if old is not None:
            os.rename(old, target)
        raise
    if old is not None:
        remove(old)


@contextmanager
def no_new_empty_folder(path: Path):
    """A command refused or failed before it wrote anything: the folder it made for its output goes again."""
    path = resolved(path)
    new = [folder for folder in (path, *path.parents) if not folder.exists()]  # innermost first
    try:
        yield
    except BaseException:
        for folder in new:
            try:
                folder.rmdir()  # only when empty
            except OSError:
                break
        raise


def remove(path: Path) -> None:
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)
