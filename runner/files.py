"""The one door for writes: every file or folder runner creates, replaces or removes goes through here.

A structural test (tests/packaging/test_structure.py) fails on `open(..., "w"/"a"/"x")`, `Path.write_*`,
`mkdir`, `shutil.rmtree/move/copy*`, `os.replace/rename/remove/unlink/rmdir/makedirs` or `tempfile.mk*`
anywhere else in runner/. Where a command may write (never onto its inputs, into a run folder, over
someone else's files) is decided before, by runner.record.guard (commands on a run) and
runner.flows.preflight (a run's own folder); this module does the writing, atomically: a file is
written beside its place and renamed over it, a folder is built beside its place and swapped in, so a
reader sees the old or the new, never a mix. Reads and hashes live here too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import tempfile
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync it, then rename it over `path` (its folder is made)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with new_file(path) as stream:
        stream.write(data)


def append_text(path: str | Path, text: str) -> None:
    """Add `text` at the end of a file that another program owns (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY)."""
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(text)


@contextmanager
def new_file(path: str | Path):
    """A binary stream onto a temporary file beside `path`, fsynced and renamed over `path` when the block
    ends: a reader sees the old file or the whole new one, never half of it (an error removes the temporary)."""
    path = Path(path)
    sweep_leftovers(path.parent, f".{path.name}.")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.{_stamp()}", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(handle, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(handle, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def make_folder(path: str | Path, parents: bool = True, exist_ok: bool = True) -> Path:
    path = Path(path)
    path.mkdir(parents=parents, exist_ok=exist_ok)
    return path


def temporary_folder(parent: str | Path | None = None, prefix: str = "runner-") -> Path:
    """A new empty folder (in `parent`, or the system's temporary folder); what a killed command left there under
    the same prefix is removed first (sweep_leftovers)."""
    sweep_leftovers(parent if parent is not None else tempfile.gettempdir(), prefix)
    return Path(tempfile.mkdtemp(prefix=prefix + _stamp(), dir=parent))


def temporary_file(prefix: str = "runner-", suffix: str = "") -> Path:
    """A new empty file in the system's temporary folder (a traceback's)."""
    handle, path = tempfile.mkstemp(prefix=prefix, suffix=suffix)
    os.close(handle)
    return Path(path)


def move(source: str | Path, target: str | Path) -> None:
    """Rename `source` to `target` (same file system; an existing file `target` is replaced)."""
    os.replace(source, target)


def remove(path: str | Path, ignore_errors: bool = False) -> None:
    """A file, a link (never what it points to) or a folder with everything in it; nothing when absent."""
    path = Path(path)
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=ignore_errors)
        elif path.exists() or path.is_symlink():
            path.unlink(missing_ok=True)
    except OSError:
        if not ignore_errors:
            raise


def remove_empty_folder(path: str | Path) -> bool:
    """Remove a folder only when it is empty; whether it was removed."""
    try:
        os.rmdir(path)
        return True
    except OSError:
        return False


def folder_beside(target: str | Path, fixed: bool = False) -> Path:
    """An empty folder beside `target` to build it in: .NAME.tmp-XXXX, or with `fixed` .NAME.tmp (inside a
    locked run folder, where an interrupted command's leftover is replaced by the next one)."""
    target = Path(target)
    if fixed:
        folder = target.with_name(f".{target.name}.tmp")
        remove(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        return folder
    folder = temporary_folder(target.parent, f".{target.name}.tmp-")
    os.chmod(folder, 0o777 & ~_umask())  # it becomes the target: the usual mode, not mkdtemp's 0700
    return folder


def swap_in(temporary: str | Path, target: str | Path) -> None:
    """Put a built folder in place of `target`: the old one is renamed aside, the new one renamed in, and
    only then the old one removed; a failure in between puts the old one back. A signal that lands between
    the renames is raised after them (runner.stopping.shielded)."""
    from runner import stopping

    temporary, target = Path(temporary), Path(target)
    with stopping.shielded():
        old = None
        if target.exists() or target.is_symlink():
            old = temporary_folder(target.parent, f".{target.name}.old-")
            os.rmdir(old)
            os.rename(target, old)
        try:
            os.rename(temporary, target)
        except BaseException:
            if old is not None:
                os.rename(old, target)
            raise
    if old is not None:
        remove(old, ignore_errors=True)


def sweep_leftovers(parent: str | Path, prefix: str) -> None:
    """Remove what a command killed outright (SIGKILL, a power cut) left in `parent`: the temporary files and
    folders above are named PREFIX + this machine's stamp + the process id, and a leftover is removed only when
    it carries this machine's stamp and its process is gone; another machine's, or a live process's (a
    concurrent command), is never touched. A caught signal cleans up by itself; this is for the rest."""
    mine = prefix + _machine() + "-"
    try:
        names = [name for name in os.listdir(parent) if name.startswith(mine)]
    except OSError:
        return
    for name in names:
        pid = name[len(mine):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            remove(Path(parent) / name, ignore_errors=True)


def _stamp() -> str:
    return f"{_machine()}-{os.getpid()}-"


@lru_cache(maxsize=1)
def _machine() -> str:
    """Eight hex digits naming this machine and process-id namespace (two containers may share a folder and a
    process id): a leftover's process can only be looked up where it ran."""
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    return hashlib.sha256(f"{socket.gethostname()}/{namespace}".encode()).hexdigest()[:8]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, value) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=False, default=str) + "\n")


def text_lines(text: str) -> list[str]:
    """The lines of a text file's content, split at "\n" only (a "\r" before it dropped).

    `str.splitlines()` also splits at U+0085, U+2028, U+2029, form feed and other characters that are
    text inside a line (tweets hold them), so a JSONL record or a .txt input would break apart."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_jsonl(path: str | Path) -> list:
    """The records of a JSONL file, blank lines skipped (ValueError for a line that is not JSON)."""
    return [json.loads(line) for line in text_lines(Path(path).read_text(encoding="utf-8")) if line.strip()]


def read_json(path: str | Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
