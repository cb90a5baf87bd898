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


def atomic_write_bytes(path: str | Path, data: bytes, replace: bool = True) -> None:
    """Write to a temporary file beside `path`, fsync it, then rename it over `path` (its folder is made).
    `replace=False`: a file that is at `path` by then stays (FileExistsError), e.g. one another process wrote."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with new_file(path, replace) as stream:
        stream.write(data)


def append_text(path: str | Path, text: str) -> None:
    """Add `text` at the end of a file that another program owns (GITHUB_OUTPUT, GITHUB_STEP_SUMMARY)."""
    with open(path, "a", encoding="utf-8") as stream:
        stream.write(text)


@contextmanager
def new_file(path: str | Path, replace: bool = True):
    """A binary stream onto a temporary file beside `path`, fsynced and renamed over `path` when the block
    ends: a reader sees the old file or the whole new one, never half of it (an error removes the temporary).
    `replace=False` links it in instead, which fails (FileExistsError) when a file is at `path` by then."""
    path = Path(path)
    sweep_leftovers(path.parent, f".{path.name}.")
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.{_stamp()}", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(handle, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(handle, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            _link_new(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _link_new(temporary: str, path: Path) -> None:
    """Put `temporary` at `path` only when nothing is there (FileExistsError otherwise): a hard link, atomic; where
    the file system has none (FAT, some network shares), the name is taken first (O_EXCL), then replaced."""
    try:
        os.link(temporary, path)
    except FileExistsError:
        raise
    except OSError:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        os.replace(temporary, path)
        return
    os.unlink(temporary)


def make_folder(path: str | Path, parents: bool = True, exist_ok: bool = True) -> Path:
    path = Path(path)
    path.mkdir(parents=parents, exist_ok=exist_ok)
    return path


def temporary_folder(parent: str | Path | None = None, prefix: str = "runner-") -> Path:
    """A new empty folder (in `parent`, or the system's temporary folder); what a killed command left there under
    the same prefix is removed first (sweep_leftovers)."""
    sweep_leftovers(parent if parent is not None else tempfile.gettempdir(), prefix)
    return Path(tempfile.mkdtemp(prefix=prefix + _stamp(), dir=parent))


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


def swap_in(temporary: str | Path, target: str | Path, check=None) -> None:
    """Put a built folder in place of `target`: the old one is renamed aside, the new one renamed in, and
    only then the old one removed; a failure in between puts the old one back. A signal that lands between
    the renames is raised after them (runner.stopping.shielded). `check(old)`, called on the old folder once it
    is set aside (what was there at the swap, not at the start), may raise to refuse: the old one goes back."""
    from runner import stopping

    temporary, target = Path(temporary), Path(target)
    with stopping.shielded():
        old = None
        if target.exists() or target.is_symlink():
            old = temporary_folder(target.parent, f".{target.name}.old-")
            os.rmdir(old)
            os.rename(target, old)
        try:
            if check is not None and old is not None:
                check(old)
            os.rename(temporary, target)
        except BaseException:
            if old is not None:
                os.rename(old, target)
            raise
    if old is not None:
        remove(old, ignore_errors=True)


@contextmanager
def exclusive(path: str | Path):
    """Hold an exclusive lock on the file `path` (made for it, removed on release) while the block runs;
    BlockingIOError at once when another process holds it. The file is checked to be the one locked (another
    holder may have removed it between our open and our lock), so two processes never both hold it."""
    import fcntl

    path = Path(path)
    while True:
        handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(handle)
            raise BlockingIOError(f"{path} is locked") from None
        try:
            same = os.fstat(handle).st_ino == os.stat(path).st_ino
        except OSError:
            same = False
        if same:
            break
        os.close(handle)
    try:
        yield path
    finally:
        Path(path).unlink(missing_ok=True)  # while still held: a waiter that opened it retries on the new one
        os.close(handle)


LEDGER_KEEP = 2000  # the newest SHA-256s kept in the ledger of files runner wrote


def cache_root() -> Path:
    """Where runner keeps what it can rebuild (tokenized data, library caches, the ledger): $RUNNER_CACHE_DIR, else
    $XDG_CACHE_HOME/runner, else ~/.cache/runner. Safe to delete."""
    if os.environ.get("RUNNER_CACHE_DIR"):
        return Path(os.environ["RUNNER_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "runner"


def _ledger() -> Path:
    return cache_root() / "written"


def remember_written(data: bytes) -> None:
    """Note in runner's cache (<cache>/written/<sha256>) that runner wrote a file with this content: a file
    format that cannot hold runner's mark (JSONL, CSV) is known again by it. Best effort: a cache that cannot be
    written only means a later --force refuses."""
    ledger = _ledger()
    try:
        ledger.mkdir(parents=True, exist_ok=True)
        entry = ledger / hashlib.sha256(data).hexdigest()
        entry.touch()
        os.utime(entry)
        names = os.listdir(ledger)
        if len(names) > LEDGER_KEEP:
            aged = sorted(names, key=lambda name: _mtime(ledger / name))
            for name in aged[:len(names) - LEDGER_KEEP]:
                (ledger / name).unlink(missing_ok=True)
    except OSError:
        pass


def was_written(path: str | Path) -> bool:
    """Whether runner wrote a file with exactly the content now at `path` (remember_written)."""
    try:
        return (_ledger() / sha256_file(path)).is_file()
    except OSError:
        return False


TRACEBACKS_KEPT = 5


def save_traceback(text: str) -> Path:
    """Write an internal error's traceback to $TMPDIR/runner-traceback-XXXX.txt, keeping only this user's newest
    TRACEBACKS_KEPT (older ones removed as a new one is written)."""
    folder, prefix = Path(tempfile.gettempdir()), "runner-traceback-"
    handle, name = tempfile.mkstemp(prefix=prefix, suffix=".txt")
    with os.fdopen(handle, "w", encoding="utf-8") as stream:
        stream.write(text)
    try:
        mine = [folder / entry for entry in os.listdir(folder) if entry.startswith(prefix) and entry.endswith(".txt")]
        mine = [entry for entry in mine if entry.is_file() and not entry.is_symlink()
                and entry.stat().st_uid == os.getuid()]
        for old in sorted(mine, key=_mtime, reverse=True)[TRACEBACKS_KEPT:]:
            if old != Path(name):
                old.unlink(missing_ok=True)
    except OSError:
        pass
    return Path(name)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


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
    """The lines of a text file's content, split at "\n" only (a "\r" before it dropped, and a byte order mark
    that an editor on Windows put at its start).

    `str.splitlines()` also splits at U+0085, U+2028, U+2029, form feed and other characters that are
    text inside a line (tweets hold them), so a JSONL record or a .txt input would break apart."""
    lines = text.removeprefix("\ufeff").split("\n")
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
