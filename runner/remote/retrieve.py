"""The record of a job coming back: downloaded from the jobs repository, placed in the local run folder
(runner/remote/record.py), told about the job, and the job's end said as one exit code and at most one line.

run.json of a run that trained on Hugging Face Jobs gets a `job` object: the backend, the job's id, URL, flavor
and image, how runner got there (`image`, or `wheel`: a stock image that installed this runner's wheel), and what
the job saw (exit.json): torch's build (e.g. 2.13.0+cu126), the CUDA version it was built for, the NVIDIA driver
and the GPU.
"""

from __future__ import annotations

import contextlib
import re

from runner.console import say, shown
from runner.errors import RunError
from runner.files import atomic_write_json, make_folder, read_json, remove, remove_empty_folder, temporary_folder
from runner.record.rundir import ENTRIES, MANIFEST, RunDir
from runner.remote.follow import stage_of
from runner.remote.hubapi import EXIT_FILE, OUTPUT, RemoteFailed, hub_call
from runner.remote.joblabels import BACKEND, check_folder_name
from runner.remote.record import exit_code, place

SEEN = ("torch", "cuda", "driver", "gpu")  # what exit.json says the job saw


def collect(api, token: str, repo_id: str, folder: str, run_dir: RunDir, overwrite: bool, where: str,
            job) -> tuple[int | None, list[str]]:
    """Download the job's record and place it in the run folder: (the remote exit code, None when the job left
    none; the entries placed), run.json told about the job (job_record). A folder this made for it and left empty
    goes again."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import disable_progress_bars

    folder = check_folder_name(folder)
    disable_progress_bars()
    parent = run_dir.path.parent
    made = [f for f in (run_dir.path, *run_dir.path.parents) if not f.exists()]  # innermost first
    placed: list[str] = []
    staging = None
    try:
        make_folder(parent)
        staging = temporary_folder(parent, prefix=f".{run_dir.path.name}.job-")
        try:
            with quiet_when_nothing_matched():
                hub_call("downloading the run record", lambda: snapshot_download(
                    repo_id, repo_type="dataset", allow_patterns=[f"{folder}/{EXIT_FILE}", f"{folder}/{OUTPUT}/*"],
                    local_dir=staging, token=token, endpoint=api.endpoint), token)
        except RunError as error:  # the job has ended; its record waits on the Hub
            import shlex

            error.hint = (f"the job has ended and its record stays on the Hub: bring it back with `runner jobs fetch "
                          f"{job.id} --output {shlex.quote(str(run_dir.path))}`")
            raise
        code = exit_code(staging / folder / EXIT_FILE, f"datasets/{repo_id}/{folder}/{EXIT_FILE}", job.id)
        output = staging / folder / OUTPUT
        record = sorted(item.name for item in output.iterdir() if item.name in ENTRIES) if output.is_dir() else []
        # Only a run record comes in; a failed job's never replaces an earlier run (a failed local run puts it back)
        if MANIFEST in record and code is not None and (code == 0 or not run_dir.written_entries()):
            job_record(output / MANIFEST, job, staging / folder / EXIT_FILE)
            placed = place(output, record, run_dir, overwrite, where)
        return code, placed
    finally:
        if staging is not None:
            remove(staging)
        for folder_made in made:  # innermost first; one that holds something now keeps its parents
            if folder_made.exists() and not remove_empty_folder(folder_made):
                break


@contextlib.contextmanager
def quiet_when_nothing_matched():
    """Without huggingface_hub's `No files matched ...` warning: a job that left no record is said once, by outcome."""
    import logging

    log = logging.getLogger("huggingface_hub._snapshot_download")

    def keep(record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("No files matched")

    log.addFilter(keep)
    try:
        yield
    finally:
        log.removeFilter(keep)


def outcome(final, code: int | None, placed: list[str], run_dir: RunDir, errors: list[str], where: str) -> int:
    """0 when the job's run finished and its record (run.json) came back, else raised with the remote exit code.
    A job that ended ERROR or CANCELED fails with its status message, unless its run finished and the record is
    here: then a warning names the status (the machine failed after the work was done and saved)."""
    from runner.console import warn
    from runner.errors import one_line

    stage, message = stage_of(final), one_line(str(final.status.message or ""))[:300]
    status = stage + (f": {message}" if message else "")
    job = f"job {final.id} on {final.flavor}"
    if code is None:  # the job's own `error:` line (a failed install), else the service's message
        reason = errors[-1] if errors else message
        raise RunError(f"{job} ended {stage} without a run record" + (f": {reason}" if reason else ""),
                       f"see its log: runner jobs logs {final.id}")
    if code != 0:
        reason = errors[-1] if errors else f"stage {status}"
        if errors and stage != "COMPLETED" and message and not re.search(rf"\b{code}\b", message):
            reason += f" (the job ended {status})"  # e.g. a timeout: the run's own error alone would hide it
        kept = (f"; {run_dir.path} is as it was (the job's record: runner jobs fetch {final.id} --output DIR)"
                if run_dir.written_entries() and MANIFEST not in placed else "")
        raise RemoteFailed(f"{job} failed (exit {code}): {reason}",
                           f"the full log: runner jobs logs {final.id}{kept}", code)
    if MANIFEST not in placed:
        ended = f"; the job ended {status}" if stage != "COMPLETED" else ""
        raise RunError(f"{job} exited 0 but left no run record ({where}/{OUTPUT}/{MANIFEST} is missing){ended}",
                       f"nothing was written to {run_dir.path}; see what the job did: runner jobs logs {final.id}")
    if stage != "COMPLETED":
        warn(f"{job} ended {status}, after its run had finished and uploaded its whole record; the record is "
             f"complete (see the job's log: runner jobs logs {final.id})")
    say(f"job {final.id} finished; the run record is in {shown(run_dir.path)}")
    return 0


def job_record(manifest_file, job, exit_file) -> None:
    """Add `job` to the record's run.json (before it is placed): what started the run and what it ran on."""
    from runner.redact import redact

    manifest = read_json(manifest_file)
    seen = read_json(exit_file)
    if not isinstance(manifest, dict):
        return
    image = job.docker_image or job.space_id
    command = list(job.command or [])
    manifest["job"] = redact({
        "backend": BACKEND, "id": job.id, "url": job.url, "flavor": job.flavor, "image": image,
        "runner_from": "image" if command[:1] == ["runner"] else "wheel",
        **{key: _plain(seen.get(key)) for key in SEEN},
    })
    atomic_write_json(manifest_file, manifest)


def _plain(value) -> str | None:
    return str(value)[:200] if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None
