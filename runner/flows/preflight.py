"""Checks made before a run touches its folder: the folder itself (prepare), data files that a run
would replace, and the fingerprint that a resumed run must match."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from runner.console import is_main_process, say, shown
from runner.errors import SpecError
from runner.files import atomic_write_bytes, read_json, remove, sha256_file
from runner.files import make_folder as make_path
from runner.record.rundir import ASIDE, ENTRIES, RunDir
from runner.spec.document import Spec

# Files a folder may hold and still count as empty for a run: what file managers and `git` placeholders leave.
# Any other file, hidden ones too (`.git`, a home folder's dotfiles), makes the folder someone else's.
HARMLESS = (".DS_Store", ".gitkeep", ".keep", "Thumbs.db", "desktop.ini")


def check_place(run_dir: RunDir, where: str = "output.dir") -> None:
    """The output folder's name and place, read-only: a name the system takes, not a file, not inside another
    run's folder, not a symbolic link. `where` names what set it (`--output`, `spec.yaml:30:8 output.dir`)."""
    from runner.record.guard import enclosing_run

    try:
        link = run_dir.path.is_symlink()  # replacing a run through one would replace what it points to
        is_file = run_dir.path.exists() and not run_dir.path.is_dir()
        holder = enclosing_run(run_dir.path.parent)
    except OSError as exc:  # a name too long, a component that is no folder
        raise SpecError(f"output folder '{str(run_dir.path)[:80]}' cannot be used: {exc.strerror}",
                        "choose a shorter, plainer folder path", where) from None
    if link:
        raise SpecError(f"output folder '{run_dir.path}' is a symbolic link; runner never writes a run through one",
                        "give the path of a real folder (the one it points to, or a new one)", where)
    if is_file:
        raise SpecError(f"output folder '{run_dir.path}' is a file", "set output.dir to a folder path", where)
    if holder is not None:
        raise SpecError(f"output folder '{run_dir.path}' is inside the run folder '{holder}'",
                        "choose a folder outside any run folder: a run never writes into another one", where)


def prepare(run_dir: RunDir, overwrite: bool, resume: bool, where: str = "output.dir",
            make: bool = True) -> Path | None:
    """Check the run folder (and make it) before any input is read. Returns the checkpoint to resume from, if any.

    Nothing is removed here. A finished run is never replaced without --overwrite, nor resumed, and
    --overwrite replaces only what a run writes (rundir.ENTRIES) in a folder that a run wrote. `make=False`
    only checks (the launcher of several processes, before any starts).
    """
    from runner.train.trainer import latest_checkpoint

    if not is_main_process():  # rank 0 checks and makes the folder (it may already be writing to it)
        return latest_checkpoint(run_dir.path) if resume else None
    check_place(run_dir, where)
    aside = run_dir.aside_dir.is_dir()  # a run killed while an earlier one was set aside: judge by the earlier one
    status = RunDir(run_dir.aside_dir).status() if aside else run_dir.status()
    finished = status == "finished"
    if resume:
        if finished:
            raise SpecError(
                f"output folder '{run_dir.path}' holds a finished run: there is nothing to resume",
                "pass --overwrite to train it again from scratch, or set output.dir (--output) to a new folder",
                where,
            )
        checkpoint = latest_checkpoint(run_dir.path)
        if checkpoint is None:
            raise SpecError(
                f"nothing to resume: '{run_dir.path}/checkpoints' holds no "
                + ("complete checkpoint" if any(run_dir.checkpoints.glob("checkpoint-*")) else "checkpoint"),
                "run without --resume (with --overwrite) to start from scratch",
                where,
            )
        say(f"resuming from {shown(checkpoint)}")
        return checkpoint
    existing = run_dir.written_entries() + ([run_dir.aside_dir.name] if aside else [])
    recorded = aside or run_dir.has_record()  # a run.json of runner's, not a file of that name
    others = sorted(p.name for p in run_dir.path.iterdir() if p.name not in (*ENTRIES, ASIDE, *HARMLESS)) \
        if run_dir.path.is_dir() else []
    if others and not recorded:  # a data folder, the working folder: a run never writes among other files
        listed = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise SpecError(
            f"output folder '{run_dir.path}' holds {listed}, which no run wrote",
            "set output.dir (--output) to a new or empty folder: a run writes only into its own folder",
            where,
        )
    if existing and not recorded:
        raise SpecError(
            f"output folder '{run_dir.path}' holds {', '.join(existing)} but no run record (no run.json that "
            "runner wrote), so no run wrote them",
            "set output.dir (--output) to a new or empty folder; --overwrite only replaces a run's own files",
            where,
        )
    foreign = run_dir.foreign_files()
    if foreign:  # setting the run aside takes its folders whole: a file of the user's in one would go with them
        listed = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise SpecError(
            f"output folder '{run_dir.path}' holds files that runner does not write there: {listed}",
            "move them out of the run's folders first (--overwrite replaces model/, predictions/, checkpoints/... "
            "whole; your files at the top of the run folder are kept), or set output.dir (--output) to a new folder",
            where,
        )
    if existing and not overwrite:
        what = {
            "finished": "a finished run",
            "recording": "a run whose record was cut short (--resume completes it)",
        }.get(status, "an unfinished run")
        raise SpecError(
            f"output folder '{run_dir.path}' already holds {what}",
            "pass --overwrite to replace it, --resume to continue it, or set output.dir (--output) to a new folder",
            where,
        )
    if make:
        make_folder(run_dir, probe=True, where=where)
    return None


def make_folder(run_dir: RunDir, probe: bool = False, where: str = "output.dir") -> None:
    """Make the run folder (and, with `probe`, write a file in it): one that cannot be is the user's to fix."""
    try:
        make_path(run_dir.path)
        if probe:
            atomic_write_bytes(run_dir / ".write-test", b"")
            remove(run_dir / ".write-test")
    except OSError as exc:
        raise SpecError(
            f"cannot write to output folder '{run_dir.path}': {exc.strerror}",
            "set output.dir (or --output) to a folder you can write",
            where,
        ) from None


def input_inside_run(spec: Spec, files: dict, run_dir: RunDir) -> None:
    """A data file, or the base model (its tokenizer, a LoRA adapter's base), inside an entry the run writes
    would be replaced by the run itself."""
    entries = [(run_dir.path / entry).resolve() for entry in ENTRIES]
    for folder in local_model_folders(spec):
        if any(folder == entry or entry in folder.parents for entry in entries):
            raise SpecError(
                f"the base model is inside the run folder's own outputs ({folder})",
                "copy it elsewhere first: the run replaces that folder's outputs",
                spec.where("model", "name"),
            )
    for role, name in files.items():
        if not isinstance(name, (str, Path)):
            continue
        path = Path(name).resolve()
        if any(path == entry or entry in path.parents for entry in entries):
            key = {"train": "train", "validation": "validation_file", "test": "test_file"}.get(role, role)
            raise SpecError(
                f"the {role} data file is inside the run folder's own outputs ({path})",
                "copy it elsewhere first: the run replaces that folder's outputs",
                spec.where("data", key),
            )


def local_model_folders(spec: Spec) -> list[Path]:
    """The folders on this machine the base model and its tokenizer load from: model.name, and the base that a
    LoRA adapter there names (base_model_name_or_path). None for a Hub model."""
    from runner.train.model import resolve_model_source

    try:
        name, source = resolve_model_source(spec.model, spec.resolve, spec.where)
    except SpecError:  # the model's loader says what is wrong with the name
        return []
    if source == "hub":
        return []
    folders = [Path(name).resolve()]
    try:
        base = read_json(folders[0] / "adapter_config.json").get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError, RecursionError):
        base = None
    if isinstance(base, str) and base and Path(base).expanduser().exists():
        folders.append(Path(base).expanduser().resolve())
    return folders


def fingerprint(spec: Spec, files: dict) -> dict:
    """What must not change between a checkpoint and a resumed run: the spec's settings (less output and hub) and
    the data. `settings_sha256` hashes the parsed settings, not the file (run.json's `spec_sha256` is the file's
    bytes): a comment or a moved key changes the file, not the run."""
    values = {k: v for k, v in spec.values.items() if k not in ("output", "hub")}
    return {
        "settings_sha256": hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest(),
        "data_sha256": {role: sha256_file(path) for role, path in files.items() if role != "hub"},
    }


def check_fingerprint(run_dir: Path, spec: Spec, files: dict, resuming: bool, force: bool) -> dict:
    """Refuse to resume when the spec or data changed since the checkpoint. Returns the current
    fingerprint; the recipe writes it once the earlier run is set aside."""
    path = RunDir(run_dir).fingerprint_file
    current = fingerprint(spec, files)
    if resuming and path.exists() and not force:
        try:
            saved = read_json(path)
        except (OSError, ValueError):
            raise SpecError(
                "the checkpoint's fingerprint is damaged, so the spec and data cannot be checked",
                "pass --force-resume to continue anyway, or --overwrite to start again",
                str(path),
            ) from None
        saved = saved if isinstance(saved, dict) else {}
        # a checkpoint saved before the key was renamed calls it spec_sha256
        if saved.get("settings_sha256", saved.get("spec_sha256")) != current["settings_sha256"]:
            raise SpecError(
                "the spec changed since the checkpoint was saved",
                "resume with the same spec, or pass --force-resume to continue anyway",
                str(spec.path),
            )
        for role, digest in current["data_sha256"].items():
            if (saved.get("data_sha256") or {}).get(role) != digest:
                raise SpecError(
                    f"the {role} data file changed since the checkpoint was saved",
                    "resume with the same data, or pass --force-resume",
                    files[role],
                )
    return current
