"""The guarded writer: every file or folder a command other than `runner run` writes is checked here
first, and written atomically.

It refuses (SpecError, exit 2) to write onto one of the command's inputs, onto a run folder's own
files or into a run folder, and onto an existing file or a folder that holds other files unless the
user passed the command's force flag. A file is written to a temporary file beside it and renamed; a
folder is built as a temporary folder beside it and renamed into place, so a reader sees the old
one or the new one, never a mix, and a failure leaves the old one as it was.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import stat
from contextlib import contextmanager
from pathlib import Path

from runner import files
from runner.errors import DataError, RunError, SpecError
from runner.files import atomic_write_bytes
from runner.record.rundir import RunDir


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
    """A folder a run wrote or is writing: it holds runner's record (RunDir.has_record), not a file named run.json."""
    return Path(path).is_dir() and RunDir(path).has_record()


def enclosing_run(path: Path) -> Path | None:
    """The run folder that `path` is inside of (or is), None when there is none."""
    for folder in (resolved(path), *resolved(path).parents):
        if is_run_folder(folder):
            return folder
    return None


def run_inputs(run_dir: Path) -> list[Path]:
    """The run folder and the data files its run.json records: what a command on a run must never replace.
    run.json holds them relative to the run folder, the spec's folder or the working folder (a file it
    names only, being outside all three, cannot be found and is left out)."""
    from runner.record.paths import recorded_path

    out = [Path(run_dir)]
    try:
        manifest = RunDir(run_dir).read_manifest(required=True)
        files = (manifest.get("data") or {}).get("files")
    except (OSError, ValueError, AttributeError, DataError):
        return out
    for entry in (files or {}).values() if isinstance(files, dict) else ():
        path = recorded_path(entry, run_dir, manifest) if isinstance(entry, dict) else None
        if path is not None:
            out.append(path)
    return out


def inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


# What each command writes as a file, and the mark that proves runner wrote an existing one: --force
# replaces a file only when it carries the mark of the same kind (never a spec, a data file, a note), and,
# for the kinds that can hold a comment (SEALED), only while it is unchanged since: runner's last line holds
# the SHA-256 of the lines above it, so a file the user edited after `runner init` is theirs.
FILE_KINDS = {
    "spec": ("a spec written by `runner init` or `runner convert`", lambda head: "spec-v1.schema.json" in head
             and ("written by `runner init`" in head or "by `runner convert`" in head)),
    "docs": ("a reference written by `runner docs`", lambda head: "by `runner docs`" in head),
    "sky": ("a SkyPilot task written by `runner sky`", lambda head: head.startswith("# SkyPilot task written by "
                                                                                      "`runner sky`")),
    "predictions": ("predictions written by `runner predict`", lambda head: _looks_like_predictions(head)),
}
FOLDER_MARK = ".runner"  # in every folder runner builds as a unit (an export): {"made_by": "runner export", ...}


# The columns of `runner predict`'s rows, in its order (runner.evaluate.strategies prediction_rows, then the text):
# single-label, multi-label, regression. A file is known as predictions only by exactly these, in this order: a
# data file with a label and a score beside its text (`text,label,score`, `text,value`) is not predict's.
PREDICTED = (["label", "score", "probabilities", "text"], ["labels", "probabilities", "text"], ["value", "text"])


def _looks_like_predictions(head: str) -> bool:
    """A JSONL line or a CSV header of `runner predict`'s rows: exactly its columns, in its order."""
    first = head.split("\n", 1)[0].rstrip("\r")
    try:
        row = json.loads(first)
    except ValueError:  # a CSV header, its names quoted or not (predict quotes every text: QUOTE_NONNUMERIC)
        import csv

        row = dict.fromkeys(next(csv.reader([first]), []))
    return isinstance(row, dict) and list(row) in PREDICTED


SEALED = {"spec": ("# ", ""), "sky": ("# ", ""), "docs": ("<!-- ", " -->")}  # kind: how its format writes a comment
# The kinds that cannot hold a comment (JSONL, CSV): runner keeps the SHA-256 of each such file it wrote in its
# ledger (runner.files.remember_written), and --force replaces one only while its content is in the ledger.
LEDGERED = {"predictions"}
SEAL_WORDS = "written by runner; SHA-256 of the lines above: "
SEAL_LIMIT = 4 << 20  # a larger file is not one of these kinds


def sealed(text: str, kind: str) -> str:
    """`text` as runner writes a file of `kind`: SEALED kinds end with the line that vouches for the rest."""
    if kind not in SEALED:
        return text
    body = text if text.endswith("\n") or not text else text + "\n"
    start, end = SEALED[kind]
    return f"{body}{start}{SEAL_WORDS}{hashlib.sha256(body.encode('utf-8')).hexdigest()}{end}\n"


def _seal_holds(data: bytes, kind: str) -> bool:
    text = data.decode("utf-8", errors="replace")
    body, _, last = text.rstrip("\n").rpartition("\n")
    return sealed(body + "\n", kind) == text if last.startswith(SEALED[kind][0] + SEAL_WORDS) else False


def made_by_runner(path: Path, kind: str) -> bool:
    """Whether the file at `path` carries the mark of `kind` in its first 4 KiB (FILE_KINDS) and, for SEALED
    kinds, is byte for byte what runner wrote."""
    try:
        with open(path, "rb") as stream:
            data = stream.read(SEAL_LIMIT + 1)
    except OSError:
        return False
    if not FILE_KINDS[kind][1](data[:4096].decode("utf-8", errors="replace")):
        return False
    return kind not in SEALED or (len(data) <= SEAL_LIMIT and _seal_holds(data, kind))


def check_file(path: str | Path, inputs=(), force: bool = False, option: str = "--output",
               force_flag: str = "--force", kind: str | None = None) -> Path:
    """Before any work: `path` may be written as a file. Returns it unchanged.

    An existing file is replaced only with the force flag, and only when it is a `kind` file runner
    wrote (FILE_KINDS); never through a symbolic link."""
    path = Path(path)
    where = str(path)
    _usable_name(path, option, where)
    if path.is_symlink():
        raise SpecError(f"{option} is a symbolic link; runner never writes through one",
                        f"give the path of a real file with {option}", where)
    for source in inputs:
        if source is not None and same_file(path, Path(source)):
            raise SpecError(f"{option} is the input file {source}; writing it would replace the input",
                            f"give another path with {option}", where)
    run = enclosing_run(path.parent)
    if run is not None:
        raise SpecError(f"{option} is inside the run folder {run}; a command never writes into a run's own folder",
                        f"give a path outside the run folder with {option}", where)
    if path.is_dir():
        example = {"spec": "new-spec.yaml", "docs": "reference.md", "sky": "task.yaml"}.get(kind, "predictions.jsonl")
        raise SpecError(f"{option} is a folder", f"give a file path such as {path / example}", where)
    special = _special_kind(path)
    if special:  # a FIFO would block the reading below (and a writer) forever; nothing but a regular file is replaced
        raise SpecError(f"{option} is not a regular file but {special}; runner writes only regular files",
                        f"give the path of a new or regular file with {option}", where)
    if not path.parent.is_dir():
        raise SpecError(f"folder {path.parent} does not exist",
                        "create it first (mkdir -p), or write into an existing folder", where)
    if path.exists() and not force:
        raise SpecError("the file already exists", f"choose another path, or pass {force_flag} to replace it", where)
    if path.exists() and kind is not None and not vouched_for(path, kind):
        edited = " or one edited since" if kind in SEALED or kind in LEDGERED else ""
        raise SpecError(f"{option} is a file runner did not write (not {FILE_KINDS[kind][0]}){edited}; "
                        f"{force_flag} replaces only runner's own unchanged earlier output",
                        f"choose another path with {option}, or move the file away yourself first "
                        f"(e.g. mv {shlex.quote(str(path))} {shlex.quote(str(path) + '.bak')})", where)
    return path


def _usable_name(path: Path, option: str, where: str) -> None:
    """A name the system refuses (too long, a component that is a file) is the user's to fix: one line, exit 2."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        import errno

        if exc.errno == errno.ENOTDIR:
            raise SpecError(f"{option} cannot be used: a part of it is a file, not a folder",
                            f"give a path inside an existing folder with {option}", where) from None
        raise SpecError(f"{option} cannot be used: {exc.strerror}", f"give a shorter, plainer path with {option}",
                        where) from None


def _special_kind(path: Path) -> str:
    """What a path that exists and is not a regular file is ("a FIFO", "a device"...): "" otherwise (os.stat,
    which never opens it)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return ""
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "" if stat.S_ISREG(mode) or stat.S_ISDIR(mode) else "another kind of file"


def vouched_for(path: Path, kind: str) -> bool:
    """An existing file --force may replace: it carries runner's mark of `kind` and, for LEDGERED kinds, its
    content is one runner wrote (its SHA-256 is in runner's ledger; a hand-written file with the same columns is
    not)."""
    return made_by_runner(path, kind) and (kind not in LEDGERED or files.was_written(path))


def write_file(path: str | Path, data: str | bytes, kind: str | None = None, force: bool = False,
               option: str = "--output", force_flag: str = "--force") -> None:
    """Atomically (temporary file, then rename); a failure is one RunError line. A file of a SEALED `kind`
    gets its seal (what a later --force checks). What check_file allowed is checked again at the write: without
    `force` no file that appeared meanwhile (another process's) is replaced, with it only runner's own."""
    data = sealed(data, kind) if kind and isinstance(data, str) else data
    data = data.encode("utf-8") if isinstance(data, str) else data
    appeared = RunError(f"{option}: a file was written there by someone else while this command ran; it was kept",
                        f"run the command again: it checks the file then (choose another path, or {force_flag} "
                        "for runner's own earlier output)", str(path))
    if force and kind is not None and Path(path).exists() and not vouched_for(Path(path), kind):
        raise appeared
    try:
        atomic_write_bytes(path, data, replace=force)
    except FileExistsError:
        raise appeared from None
    except OSError as exc:
        raise RunError(f"could not write the file: {exc.strerror or exc}",
                       "check the folder's permissions and free space", str(path)) from None
    if kind in LEDGERED:
        files.remember_written(data)


def check_folder(path: str | Path, inputs=(), option: str = "-o", own: Path | None = None,
                 foreign=None, named: str | None = None) -> Path:
    """Before any work: `path` may be replaced by a folder this command builds. Returns it resolved.

    `own` is the folder's default place inside the command's run folder (RUN/onnx), which the
    command may replace; `foreign(folder)` names what in an existing folder keeps it from being an earlier
    output of the same command (nothing: it is one, the only kind replaced). No flag replaces a folder holding
    anything runner did not make, a symbolic link, a mount point, the home folder or a repository. `named` is how
    the messages name the folder when the user gave none (the default place, e.g. run/onnx), else `option`."""
    where = str(path)
    _usable_name(Path(path), option, where)
    if Path(path).is_symlink():
        raise SpecError(f"{named or option} is a symbolic link; runner never replaces what one points to",
                        f"remove the link yourself, or give the path of a real folder with {option}", where)
    target = resolved(path)
    if target.exists() and os.path.ismount(target):
        raise SpecError(f"{named or option} is a mount point; runner never replaces one",
                        f"give a new folder inside it, e.g. {option} {Path(path) / 'exported'}", where)
    if target == resolved(Path.home()) or (target / ".git").exists():
        what = "the home folder" if target == resolved(Path.home()) else "a repository (it holds .git)"
        raise SpecError(f"{named or option} is {what}; runner never replaces it",
                        f"give a new folder, e.g. {option} {Path(path) / 'exported'}", where)
    if inside(resolved(Path.cwd()), target):
        raise SpecError(f"{named or option} is the current folder (or holds it); the command would replace it",
                        f"give a new folder, e.g. {option} exported", where)
    if target.exists() and not target.is_dir():
        raise SpecError(f"{named or option} is a file", f"give a folder with {option}", where)
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
        raise SpecError(f"{named or option} {what}; writing there would replace the run's own files",
                        f"give a folder outside any run folder with {option}", where)
    refuse_foreign(target, foreign, option, where)
    if not target.parent.is_dir():
        raise SpecError(f"folder {target.parent} does not exist",
                        "create it first (mkdir -p), or write into an existing folder", where)
    return target


def listing(names: list[str]) -> str:
    """The first three names, and how many more."""
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def refuse_foreign(target: Path, foreign, option: str, where: str) -> None:
    """A folder that holds anything but an earlier output of the command (`foreign(folder)`: what is not) is
    never replaced: one line naming those files only."""
    if not target.is_dir() or not any(target.iterdir()):
        return
    found = foreign(target) if foreign else sorted(p.name for p in target.iterdir())
    if found:
        raise SpecError(f"{option} is a folder that holds files runner did not write or that changed since "
                        f"({listing(found)})", f"give a new or empty folder with {option} (only an earlier, "
                        "unchanged output of the same command is replaced), or move those files away yourself", where)


def temporary_folder(target: Path, fixed: bool = False) -> Path:
    """An empty folder beside `target` to build it in; `fixed` names it .NAME.tmp (inside a locked run folder).
    A folder that cannot be written (read-only, full, not ours) is a one-line error, not an internal one."""
    try:
        return files.folder_beside(target, fixed)
    except OSError as exc:
        raise _cannot_write_beside(target, exc) from None


def _cannot_write_beside(target: Path, exc: OSError) -> RunError:
    import errno

    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return RunError(f"cannot write beside {target}: {exc.strerror or exc}",
                    "free disk space" if full else "write into a folder you can write (-o DIR)", str(target.parent))


def replace_folder(temporary: Path, target: Path, check=None) -> None:
    """Put the built folder in place of `target` (runner.files.swap_in: whole, or not at all); `check(old)` sees
    what is at `target` at the swap (set aside) and may refuse: it goes back unchanged."""
    files.swap_in(temporary, target, check)


@contextmanager
def target_lock(target: Path, option: str = "-o", what: str = "an export"):
    """A lock file beside `target` (.NAME.lock, removed after): two commands writing the same folder at once
    would both succeed, the last one's folder winning under the first one's record. The second refuses."""
    lock = files.exclusive(target.with_name(f".{target.name}.lock"))
    try:
        lock.__enter__()
    except BlockingIOError:
        raise RunError(f"{option} is being written by another runner process ({what})",
                       f"wait for it to finish, or give another folder with {option}", str(target)) from None
    except OSError as exc:  # a folder that cannot be written: the line temporary_folder says
        raise _cannot_write_beside(target, exc) from None
    try:
        yield
    finally:
        lock.__exit__(None, None, None)


@contextmanager
def no_new_empty_folder(path: Path):
    """A command refused or failed before it wrote anything: the folder it made for its output goes again."""
    path = resolved(path)
    new = [folder for folder in (path, *path.parents) if not folder.exists()]  # innermost first
    try:
        yield
    except BaseException:
        for folder in new:
            if not files.remove_empty_folder(folder):
                break
        raise

