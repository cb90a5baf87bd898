"""`runner run SPEC --on hf-jobs[:FLAVOR]`: train on a Hugging Face Jobs machine instead of this one.

The spec is checked here first (a bad spec exits 2 and costs no GPU minute), then:

1. the local run folder (a local run's rules, flows/preflight.py, and its lock), a search (the image has no
   Optuna), the token and the jobs repository (private, or made private) are checked, before any upload;
2. what the run needs is uploaded in one commit to a private dataset repository, `<user>/runner-jobs`
   (RUNNER_JOBS_REPO), in a folder of its own, `jobs/<time>-<name>-<random>/input/` (the job's label
   `runner-job` is its key): the spec as resolved here (paths rewritten), the local data and model files;
3. a job starts on the runner image of the version running here (RUNNER_JOBS_IMAGE or --image, the tag
   added when missing), with the command `runner jobs exec REPO FOLDER` and HF_TOKEN as a secret only;
4. its log streams here, with the job's URL; in the job, `runner jobs exec` (runner/remote/execute.py)
   downloads the inputs, runs `runner run`, and uploads the run record and its exit code to
   `.../output/` and `.../exit.json`;
5. the record comes back into the spec's output folder as a local run writes its own (the folder checked
   again and locked, an earlier run set aside and dropped once the record is in), and the remote exit
   code (0-255, from exit.json, checked) is this command's.

Ctrl-C asks whether to cancel the job (without a terminal: it cancels); --detach returns once the job
has started. `runner jobs logs|status|cancel|fetch ID` follow it later.

Following survives the network (runner/remote/follow.py). A job that ends ERROR or CANCELED exits non-zero
with its status message, unless its run finished and its whole record came back: then a warning names the
status, and the run's exit code (0) stands.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import os
import re
import secrets
import sys
import time
from collections.abc import Callable
from pathlib import Path

from runner import __version__
from runner.errors import Interrupted, RunError, SpecError, Terminated
from runner.files import make_folder, remove, remove_empty_folder, temporary_folder
from runner.record.rundir import ENTRIES, MANIFEST, RunDir
from runner.remote.follow import TERMINAL_STAGES, follow_log, stage_of  # noqa: F401 - jobs_cli imports them here
from runner.remote.record import check_data_here, check_local_output, exit_code, place
from runner.spec.document import Spec
from runner.spec.specrules import looks_like_local_path

BACKEND = "hf-jobs"
DEFAULT_FLAVOR = "a10g-small"
DEFAULT_TIMEOUT = "2h"
IMAGE_ENV, REPO_ENV = "RUNNER_JOBS_IMAGE", "RUNNER_JOBS_REPO"
# The image the project publishes from its Dockerfile; the running version is its tag.
DEFAULT_IMAGE = "ghcr.io/OWNER/runner"
JOBS_REPO_NAME = "runner-jobs"
INPUT, OUTPUT, EXIT_FILE = "input", "output", "exit.json"
LABEL = "runner-job"  # the job's label: the key of its folder, jobs/KEY, in the jobs repository
# job_key's names: UTC time, the spec's name made plain, 6 hex digits (never a path: no `/`, never `..` alone)
KEY_PATTERN = re.compile(r"[0-9]{8}-[0-9]{6}-[A-Za-z0-9_.-]{0,40}-[0-9a-f]{6}")
# Never uploaded from a local model folder: training state and hidden files.
SKIPPED_MODEL_PARTS = ("checkpoints", "optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin")


class RemoteFailed(RunError):
    """The job ran and failed: the exit code is the remote one."""

    def __init__(self, message: str, hint: str, exit_code: int):
        super().__init__(message, hint)
        self.exit_code = exit_code


# ---------------------------------------------------------------------------------------------
# Settings, checked before anything leaves this machine


def parse_target(target: str) -> str:
    """The flavor of `--on hf-jobs[:FLAVOR]`."""
    from huggingface_hub import JobHardware

    backend, _, flavor = target.partition(":")
    if backend != BACKEND:
        raise SpecError(f"--on {target}: unknown backend '{backend}'",
                        f"use --on {BACKEND} or --on {BACKEND}:FLAVOR, e.g. --on {BACKEND}:a10g-small")
    flavor = flavor or DEFAULT_FLAVOR
    known = [hardware.value for hardware in JobHardware]
    if flavor not in known:
        close = difflib.get_close_matches(flavor, known, n=1)
        raise SpecError(f"--on {target}: unknown flavor '{flavor}'",
                        (f"did you mean {close[0]}? " if close else "") + f"flavors: {', '.join(known)}")
    return flavor


def check_timeout(timeout: str) -> str:
    if not re.fullmatch(r"[1-9][0-9]*(\.[0-9]+)?[smhd]?", str(timeout)):
        raise SpecError(f"--job-timeout {timeout}: not a duration", "write e.g. 90m, 2h or 1d (s, m, h, d)")
    return str(timeout)


def job_image(image: str | None = None) -> str:
    """--image, else RUNNER_JOBS_IMAGE, else the published image; tagged with this version when untagged."""
    name = image or os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE
    if "OWNER" in name.split("/")[:-1]:
        raise SpecError(f"no runner image is published at {DEFAULT_IMAGE} for this copy of runner",
                        f"build and push the Dockerfile's image (docker build -t REGISTRY/runner:{__version__} . && "
                        f"docker push REGISTRY/runner:{__version__}), then set {IMAGE_ENV}=REGISTRY/runner")
    if "@" not in name and ":" not in name.rsplit("/", 1)[-1]:
        name += f":{__version__}"
    return name


def check_search(spec: Spec) -> None:
    """A search needs Optuna, which the runner image (the Dockerfile's `pip install .`) does not install."""
    if spec.values.get("search"):
        raise SpecError(f"a search cannot run on --on {BACKEND}: the runner image has no Optuna "
                        "(its Dockerfile installs runner without the search extra)",
                        "run the search here (pip install \".[search]\"), then train its best-spec.yaml with "
                        f"--on {BACKEND}; or remove search: from the spec", spec.where("search"))


def job_inputs(spec: Spec) -> tuple[dict, list[tuple[str, Path]]]:
    """The spec's values with local paths rewritten, and (path under input/, local file) to upload."""
    values = copy.deepcopy(spec.values)
    files: list[tuple[str, Path]] = []
    data = values["data"]
    for key, role in (("train", "train"), ("validation_file", "validation"), ("test_file", "test")):
        if data.get(key):
            local = spec.resolve(data[key])
            data[key] = f"data/{role}/{local.name}"
            files.append((data[key], local))
    model = values["model"]["name"]
    local = spec.resolve(model)
    if looks_like_local_path(model) or local.is_dir():
        for path in sorted(local.rglob("*")):
            parts = path.relative_to(local).parts
            if path.is_file() and not any(p.startswith(".") or p in SKIPPED_MODEL_PARTS for p in parts):
                files.append(("model/" + "/".join(parts), path))
        values["model"]["name"] = "./model"
    values["output"]["dir"] = "run"
    return values, files


def spec_text(values: dict, source: Path | None) -> str:
    import yaml

    header = f"# {source.name if source else 'spec'} as `runner run --on {BACKEND}` resolved it; paths point here\n"
    return header + yaml.safe_dump(values, sort_keys=False, allow_unicode=True)


def describe_job(spec: Spec, target: str, timeout: str, image: str | None) -> list[str]:
    """What `--on ... --dry-run` would start, without a token or the network."""
    check_search(spec)
    _, inputs = job_inputs(spec)
    size = sum(path.stat().st_size for _, path in inputs)
    return [f"job: {BACKEND} flavor {parse_target(target)}, image {job_image(image)}, timeout {check_timeout(timeout)}",
            f"uploads: spec.yaml and {len(inputs)} files ({size / 1e6:.1f} MB) to <user>/{JOBS_REPO_NAME} "
            f"(or ${REPO_ENV}), folder jobs/<time>-{spec.name}-<random>/{INPUT}/",
            f"record back into: {spec.output_dir}"]


# ---------------------------------------------------------------------------------------------
# Talking to the Hub


def hub_call(what: str, action: Callable, token: str):
    """One Hub call; a failure becomes one RunError line with the token masked."""
    from runner.publish.hub import _describe, _status

    try:
        return action()
    except (RunError, SpecError, KeyboardInterrupt):
        raise
    except Exception as error:  # noqa: BLE001 - every failure becomes a RunError
        status = _status(error)
        if status in (401, 403):
            raise RunError(f"the Hub refused the token ({status}) while {what}",
                           "use a token with write access and the Jobs permission "
                           "(https://huggingface.co/settings/tokens)") from None
        raise RunError(f"{what} failed: {_describe(error, token)}", "check the network and the Hub status, then retry"
                       ) from None


def connect(token: str | None = None):
    """(HfApi, token, namespace): the token checked with whoami."""
    from huggingface_hub import HfApi

    from runner.publish.hub import _find_token

    token = token or _find_token()
    api = HfApi(token=token, library_name="runner", library_version=__version__)
    namespace = hub_call("checking the token", api.whoami, token)["name"]
    return api, token, namespace


def job_key(name: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{stamp}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)[:40]}-{secrets.token_hex(3)}"


def check_folder_name(folder) -> str:
    """A job's folder in the jobs repository, as job_key made it: `jobs/KEY`, never an absolute path or `..`."""
    if not (isinstance(folder, str) and folder.startswith("jobs/") and KEY_PATTERN.fullmatch(folder[5:])):
        raise SpecError(f"'{str(folder)[:120]}' is not a job folder that `runner run --on {BACKEND}` made",
                        "it is jobs/<UTC time>-<name>-<6 hex digits> in the jobs repository")
    return folder


def job_location(job) -> tuple[str, str]:
    """(repo, folder) of a runner job: the folder from the job's own label (jobs/KEY, checked), the repository
    from its command `runner jobs exec REPO FOLDER`, which must name that same folder."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    command = list(job.command or [])
    key = (job.labels or {}).get(LABEL) if isinstance(job.labels, dict) else None
    if command[1:3] != ["jobs", "exec"] or len(command) < 5 or key is None:
        raise SpecError(f"job {job.id} was not started by `runner run --on {BACKEND}`",
                        "give the id of a job that runner started (it has the label runner-job)")
    hint = "its record cannot be trusted to be where runner puts one; give the id of a job that runner started"
    if not (isinstance(key, str) and KEY_PATTERN.fullmatch(key)):
        raise SpecError(f"job {job.id}: its label {LABEL}={str(key)[:120]!r} is not a job folder's key "
                        f"that `runner run --on {BACKEND}` made", hint)
    folder = f"jobs/{key}"
    if command[4] != folder:
        raise SpecError(f"job {job.id}: its command names the folder {str(command[4])[:120]!r}, not {folder!r} "
                        f"of its label {LABEL}", hint)
    try:
        validate_repo_id(command[3])
    except HFValidationError:
        raise SpecError(f"job {job.id}: its command names {str(command[3])[:120]!r}, not a Hub repository",
                        hint) from None
    return command[3], folder


def jobs_repository(api, token: str, repo_id: str) -> None:
    """The jobs repository is private (made so when runner creates it); a public one would publish the data."""
    from huggingface_hub.utils import RepositoryNotFoundError

    def private():
        try:
            return api.repo_info(repo_id, repo_type="dataset").private
        except RepositoryNotFoundError:
            return None

    found = hub_call(f"reading {repo_id}", private, token)
    if found is None:
        hub_call(f"creating {repo_id}", lambda: api.create_repo(repo_id, repo_type="dataset", private=True,
                                                                 exist_ok=True), token)
    elif not found:
        raise SpecError(f"the jobs repository datasets/{repo_id} is public: the job's inputs (your data) and its "
                        "record would be public", f"make it private in its settings, set {REPO_ENV} to a private "
                        f"dataset repository, or unset {REPO_ENV} to let runner create a private one",
                        REPO_ENV if os.environ.get(REPO_ENV) else "")


# ---------------------------------------------------------------------------------------------
# The whole dispatch


def dispatch(spec: Spec, target: str, *, overwrite: bool = False, detach: bool = False, fetch_model: bool = False,
             timeout: str = DEFAULT_TIMEOUT, image: str | None = None) -> int:
    """Run SPEC on Hugging Face Jobs; returns the remote exit code (0) or raises with it."""
    from huggingface_hub import CommitOperationAdd

    from runner.flows.lifecycle import output_place
    from runner.flows.preflight import input_inside_run

    flavor, timeout, image = parse_target(target), check_timeout(timeout), job_image(image)
    check_search(spec)
    run_dir, where = RunDir(spec.output_dir), output_place(spec)
    check_local_output(run_dir, overwrite, where)
    values, inputs = job_inputs(spec)
    for _, path in inputs:
        if not path.is_file():
            raise SpecError(f"'{path}' is not a readable file", "check the spec's paths", str(path))
    input_inside_run(spec, {name.split("/")[1]: path for name, path in inputs if name.startswith("data/")}, run_dir)
    check_data_here(spec)
    api, token, namespace = connect()
    repo_id = os.environ.get(REPO_ENV) or f"{namespace}/{JOBS_REPO_NAME}"
    key = job_key(values["name"])
    folder = f"jobs/{key}"
    jobs_repository(api, token, repo_id)
    operations = [CommitOperationAdd(f"{folder}/{INPUT}/spec.yaml", spec_text(values, spec.path).encode())]
    operations += [CommitOperationAdd(f"{folder}/{INPUT}/{name}", str(path)) for name, path in inputs]
    hub_call(f"uploading {len(operations)} files to {repo_id}",
             lambda: api.create_commit(repo_id, operations, repo_type="dataset", commit_message=f"runner job {key}"),
             token)
    command = ["runner", "jobs", "exec", repo_id, folder] + (["--fetch-model"] if fetch_model else [])
    job = hub_call("starting the job", lambda: api.run_job(
        image=image, command=command, secrets={"HF_TOKEN": token}, flavor=flavor, timeout=timeout,
        namespace=namespace, name=f"runner-{values['name']}"[:60], labels={LABEL: key}), token)
    print(f"job {job.id} on {flavor} ({image}), inputs in datasets/{repo_id}/{folder}: {job.url}", flush=True)
    if detach:
        print(f"detached; follow it with `runner jobs logs {job.id} --follow`, bring the record back with "
              f"`runner jobs fetch {job.id} --output DIR`, stop it with `runner jobs cancel {job.id}`")
        return 0
    errors: list[str] = []
    final = follow(api, job, namespace, errors, run_dir.path)
    code, placed = collect(api, token, repo_id, folder, run_dir, overwrite, where, job.id)
    return outcome(final, code, placed, run_dir, errors, f"datasets/{repo_id}/{folder}")


def follow(api, job, namespace: str, errors: list[str], output: Path | None = None):
    """Print the job's log until it ends; the final JobInfo. Ctrl-C: cancel (asked on a terminal)."""

    def show(line: str) -> None:
        print(line, flush=True)
        if line.startswith("error: "):
            errors.append(line[len("error: "):])

    try:
        return follow_log(api, job.id, namespace, show, output)
    except KeyboardInterrupt as stop:
        code = 143 if isinstance(stop, Terminated) else 130
        cancel = True
        if sys.stdin.isatty() and not isinstance(stop, Terminated):  # SIGTERM has nobody to ask: cancel
            import click

            try:
                cancel = click.confirm(f"\ncancel job {job.id}? (if not, it keeps running and billing)", default=True)
            except (click.Abort, KeyboardInterrupt, EOFError):
                cancel = True
        if not cancel:
            raise Interrupted(f"left job {job.id} running", f"`runner jobs logs {job.id} --follow`, "
                              f"`runner jobs fetch {job.id} --output DIR`, `runner jobs cancel {job.id}`",
                              exit_code=code) from None
        try:
            hub_call(f"canceling job {job.id}", lambda: api.cancel_job(job_id=job.id, namespace=namespace),
                     api.token or "")
        except RunError as error:
            error.hint = f"it may still be running: `runner jobs cancel {job.id}`"
            error.exit_code = code
            raise
        raise Interrupted(f"canceled job {job.id}", "its inputs stay on the Hub; run again to start over",
                          exit_code=code) from None


def collect(api, token: str, repo_id: str, folder: str, run_dir: RunDir, overwrite: bool, where: str,
            job_id: str) -> tuple[int | None, list[str]]:
    """Download the job's record and place it in the run folder: (the remote exit code, None when the job left
    none; the entries placed). A folder this made for it and left empty goes again."""
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
                          f"{job_id} --output {shlex.quote(str(run_dir.path))}`")
            raise
        code = exit_code(staging / folder / EXIT_FILE, f"datasets/{repo_id}/{folder}/{EXIT_FILE}", job_id)
        output = staging / folder / OUTPUT
        record = sorted(item.name for item in output.iterdir() if item.name in ENTRIES) if output.is_dir() else []
        # Only a run record comes in; a failed job's never replaces an earlier run (a failed local run puts it back)
        if MANIFEST in record and code is not None and (code == 0 or not run_dir.written_entries()):
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
    from runner.errors import _one_line

    stage, message = stage_of(final), _one_line(str(final.status.message or ""))[:300]
    status = stage + (f": {message}" if message else "")
    job = f"job {final.id} on {final.flavor}"
    if code is None:
        raise RunError(f"{job} ended {stage} without a run record" + (f": {message}" if message else ""),
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
    print(f"job {final.id} finished; the run record is in {run_dir.path}")
    return 0


def remote_arguments(compute: str, token_given: bool, fetch_model: bool) -> list[str]:
    """The action's `compute` input as `runner run --on` arguments; the hf-token input is required then (checked
    before any spec is tried, from whether it is set: the step that checks never holds the token). The model
    comes back when it is pushed or uploaded."""
    if not compute:
        return []
    if not token_given:
        raise RunError(
            f"compute: {compute} trains on Hugging Face Jobs, which needs a token, and the hf-token input is not set",
            hint="add `hf-token: ${{ secrets.HF_TOKEN }}` (a write token allowed to run Jobs) under the step's with:",
            where="action",
        )
    return ["--on", compute] + (["--fetch-model"] if fetch_model else [])
