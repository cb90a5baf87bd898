"""The record of a job started by `runner run --on hf-jobs`, in a local run folder: the folder checked before
anything is uploaded or downloaded, by the rules of a local run's folder (runner/flows/preflight.py) and its
lock; exit.json's exit code read and checked; the record placed as a local run writes its own
(runner/flows/lifecycle.py). `runner run --on` and `runner jobs fetch` both write their folder so.
"""

from __future__ import annotations

from pathlib import Path

from runner.console import say, shown
from runner.errors import RunError, SpecError
from runner.files import move, read_json, remove
from runner.record.rundir import RunDir

WRITER = "a job's record"  # what cannot share a run folder with the runner process that holds it


def check_local_output(run_dir: RunDir, overwrite: bool, where: str = "output.dir") -> None:
    """Refuse now, before any upload or download, what a local run's folder check refuses (preflight.prepare) and
    a folder another runner process holds: the record comes back as a local run writes. Nothing is made."""
    from runner.flows.preflight import prepare

    try:
        prepare(run_dir, overwrite=overwrite, resume=False, where=where, make=False)
    except SpecError as error:
        if "--resume" in error.hint:  # a job's record is never resumed into
            error.hint = f"pass --overwrite to replace it, or set {where} to a new folder"
        raise
    if run_dir.path.is_dir():  # a run still writing there holds the lock: taken and given back at once
        with run_dir.lock(WRITER):
            pass


def exit_code(path, shown: str, job_id: str) -> int | None:
    """exit.json's exit code, 0 to 255, which becomes this command's (None: no file; damaged: one RunError)."""
    if not path.is_file():
        return None
    hint = f"the job's record is damaged; see what it did: runner jobs logs {job_id}"
    try:
        value = read_json(path)
    except (OSError, ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise RunError(f"{shown} of job {job_id} is not JSON", hint) from None
    if not isinstance(value, dict) or "exit_code" not in value:
        raise RunError(f"{shown} of job {job_id} holds no exit_code", hint)
    code = value["exit_code"]
    if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 255:
        raise RunError(f"{shown} of job {job_id}: exit_code {str(code)[:40]} is not an exit code (0 to 255)", hint)
    return code


def place(output: Path, record: list[str], run_dir: RunDir, overwrite: bool, where: str) -> list[str]:
    """Move the record's entries in as a local run writes (flows/lifecycle.py): the folder checked again, made and
    locked; an earlier run set aside (--overwrite), back if the move fails, dropped once the record is in."""
    from runner.flows.lifecycle import RunFolder
    from runner.flows.preflight import check_place, prepare
    from runner.flows.preflight import make_folder as make_run_folder
    from runner.record.guard import no_new_empty_folder

    check_place(run_dir, where)
    with no_new_empty_folder(run_dir.path):
        make_run_folder(run_dir, where=where)
        with run_dir.lock(WRITER):
            if run_dir.restore():  # a run killed while it had set an earlier one aside: judge the earlier one
                say(f"restored the earlier run in {shown(run_dir.path)}, set aside by a run that did not finish")
            prepare(run_dir, overwrite=overwrite, resume=False, where=where)
            with RunFolder(run_dir, None, run_dir.written_entries(), True).replacing():
                for name in record:
                    move(output / name, run_dir / name)
            remove(run_dir.aside_dir)
    return record


def check_data_here(spec) -> None:
    """The data checks a local run makes before it trains, made here before anything is uploaded or billed: the
    files read as the job would read them (a missing column, a bad label, a text that is not a string exit 2
    now, not in a job), and the checks of the prepared splits (warnings; tuned thresholds on three classes
    refused). A Hub dataset is left to the job (reading it here would download it)."""
    if spec.data.hub:
        return
    from runner.data.datachecks import check_prepared
    from runner.data.prepare import prepare_data

    check_prepared(spec.predict, spec.task, prepare_data(spec.data, spec.task, spec.labels, spec.seed, spec.resolve),
                   spec.where)
