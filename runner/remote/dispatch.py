"""`runner run SPEC --on hf-jobs[:FLAVOR]`: train on a Hugging Face Jobs machine instead of this one.

The spec is checked here first (a bad spec exits 2 and costs no GPU minute), then:

1. the token (HF_TOKEN or the cached login) and the local run folder are checked, before any upload;
2. what the run needs is uploaded in one commit to a private dataset repository, `<user>/runner-jobs`
   (RUNNER_JOBS_REPO), in a folder of its own, `jobs/<time>-<name>-<random>/input/`: the spec as it
   was resolved here (paths rewritten), the local data files and a local model folder;
3. a job starts on the runner image of the version running here (RUNNER_JOBS_IMAGE or --image, the tag
   added when missing), with the command `runner jobs exec REPO FOLDER` and HF_TOKEN as a secret only;
4. its log streams here, with the job's URL; in the job, `runner jobs exec` (runner/remote/execute.py)
   downloads the inputs, runs `runner run`, and uploads the run record and its exit code to
   `.../output/` and `.../exit.json`;
5. the record comes back into the spec's output folder and the remote exit code is this command's.

Ctrl-C asks whether to cancel the job (without a terminal: it cancels); --detach returns once the job
has started. `runner jobs logs|status|cancel|fetch ID` follow it later.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from runner import __version__
from runner.errors import Interrupted, RunError, SpecError
from runner.record.rundir import RunDir, remove_entry
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


def check_local_output(run_dir: RunDir, overwrite: bool) -> None:
    """The record comes back into the spec's output folder: refuse now what would be refused then."""
    if run_dir.path.exists() and not run_dir.path.is_dir():
        raise SpecError(f"output folder '{run_dir.path}' is a file", "set output.dir to a folder path", "output.dir")
    existing = run_dir.written_entries()
    if existing and not overwrite:
        raise SpecError(f"output folder '{run_dir.path}' already holds a run",
                        "pass --overwrite to replace it with the job's record, or set --output to a new folder",
                        "output.dir")
    if existing and not (run_dir.manifest_file.exists() or run_dir.fingerprint_file.exists()):
        raise SpecError(f"output folder '{run_dir.path}' holds {', '.join(existing)} but no run record",
                        "set --output to a new or empty folder", "output.dir")


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
    _, files = job_inputs(spec)
    size = sum(path.stat().st_size for _, path in files)
    return [f"job: {BACKEND} flavor {parse_target(target)}, image {job_image(image)}, timeout {check_timeout(timeout)}",
            f"uploads: spec.yaml and {len(files)} files ({size / 1e6:.1f} MB) to <user>/{JOBS_REPO_NAME} "
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


def job_location(job) -> tuple[str, str]:
    """(repo, folder) of a runner job, from its command `runner jobs exec REPO FOLDER`."""
    command = list(job.command or [])
    if command[1:3] != ["jobs", "exec"] or len(command) < 5:
        raise SpecError(f"job {job.id} was not started by `runner run --on {BACKEND}`",
                        "give the id of a job that runner started")
    return command[3], command[4]


# ---------------------------------------------------------------------------------------------
# The whole dispatch


def dispatch(spec: Spec, target: str, *, overwrite: bool = False, detach: bool = False, fetch_model: bool = False,
             timeout: str = DEFAULT_TIMEOUT, image: str | None = None) -> int:
    """Run SPEC on Hugging Face Jobs; returns the remote exit code (0) or raises with it."""
    from huggingface_hub import CommitOperationAdd

    flavor, timeout, image = parse_target(target), check_timeout(timeout), job_image(image)
    run_dir = RunDir(spec.output_dir)
    check_local_output(run_dir, overwrite)
    values, files = job_inputs(spec)
    for _, path in files:
        if not path.is_file():
            raise SpecError(f"'{path}' is not a readable file", "check the spec's paths", str(path))
    api, token, namespace = connect()
    repo_id = os.environ.get(REPO_ENV) or f"{namespace}/{JOBS_REPO_NAME}"
    key = job_key(values["name"])
    folder = f"jobs/{key}"
    hub_call(f"creating {repo_id}", lambda: api.create_repo(repo_id, repo_type="dataset", private=True,
                                                             exist_ok=True), token)
    operations = [CommitOperationAdd(f"{folder}/{INPUT}/spec.yaml", spec_text(values, spec.path).encode())]
    operations += [CommitOperationAdd(f"{folder}/{INPUT}/{name}", str(path)) for name, path in files]
    hub_call(f"uploading {len(operations)} files to {repo_id}",
             lambda: api.create_commit(repo_id, operations, repo_type="dataset", commit_message=f"runner job {key}"),
             token)
    command = ["runner", "jobs", "exec", repo_id, folder] + (["--fetch-model"] if fetch_model else [])
    job = hub_call("starting the job", lambda: api.run_job(
        image=image, command=command, secrets={"HF_TOKEN": token}, flavor=flavor, timeout=timeout,
        namespace=namespace, name=f"runner-{values['name']}"[:60], labels={"runner-job": key}), token)
    print(f"job {job.id} on {flavor} ({image}), inputs in datasets/{repo_id}/{folder}: {job.url}", flush=True)
    if detach:
        print(f"detached; follow it with `runner jobs logs {job.id} --follow`, bring the record back with "
              f"`runner jobs fetch {job.id} --output DIR`, stop it with `runner jobs cancel {job.id}`")
        return 0
    errors: list[str] = []
    final = follow(api, job, namespace, errors)
    code = collect(api, token, repo_id, folder, run_dir, overwrite)
    return outcome(final, code, run_dir, errors)


def follow(api, job, namespace: str, errors: list[str]):
    """Print the job's log until it ends; the final JobInfo. Ctrl-C: cancel (asked on a terminal)."""
    try:
        for line in api.fetch_job_logs(job_id=job.id, namespace=namespace, follow=True):
            print(line, flush=True)
            if line.startswith("error: "):
                errors.append(line[len("error: "):])
        return api.wait_for_job(job.id, namespace=namespace, poll_interval=2)
    except (RunError, SpecError):
        raise
    except Exception as error:  # noqa: BLE001 - the network went away; the job does not stop with it
        from runner.publish.hub import _describe

        raise RunError(f"lost job {job.id} while following it: {_describe(error, api.token or '')}",
                       f"it keeps running: `runner jobs logs {job.id} --follow`, then "
                       f"`runner jobs fetch {job.id} --output DIR`; or `runner jobs cancel {job.id}`") from None
    except KeyboardInterrupt:
        cancel = True
        if sys.stdin.isatty():
            import click

            try:
                cancel = click.confirm(f"\ncancel job {job.id}? (if not, it keeps running and billing)", default=True)
            except (click.Abort, KeyboardInterrupt, EOFError):
                cancel = True
        if not cancel:
            raise Interrupted(f"left job {job.id} running", f"`runner jobs logs {job.id} --follow`, "
                              f"`runner jobs fetch {job.id} --output DIR`, `runner jobs cancel {job.id}`") from None
        api.cancel_job(job_id=job.id, namespace=namespace)
        raise Interrupted(f"canceled job {job.id}", "its inputs stay on the Hub; run again to start over") from None


def collect(api, token: str, repo_id: str, folder: str, run_dir: RunDir, overwrite: bool) -> int | None:
    """Download the job's record into the run folder; the remote exit code (None: the job left none)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    parent = run_dir.path.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{run_dir.path.name}.job-", dir=parent))
    try:
        hub_call("downloading the run record", lambda: snapshot_download(
            repo_id, repo_type="dataset", allow_patterns=[f"{folder}/{EXIT_FILE}", f"{folder}/{OUTPUT}/*"],
            local_dir=staging, token=token, endpoint=api.endpoint), token)
        exit_file = staging / folder / EXIT_FILE
        code = json.loads(exit_file.read_text())["exit_code"] if exit_file.is_file() else None
        output = staging / folder / OUTPUT
        # A failed job's record never replaces an earlier run (as a failed local run puts it back).
        if output.is_dir() and any(output.iterdir()) and (code == 0 or not run_dir.written_entries()):
            place(output, run_dir, overwrite)
        return code
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def place(output: Path, run_dir: RunDir, overwrite: bool) -> None:
    """Move the downloaded record into the run folder, replacing an earlier run only with --overwrite."""
    check_local_output(run_dir, overwrite)  # nothing was written there while the job ran
    run_dir.path.mkdir(parents=True, exist_ok=True)
    for entry in run_dir.written_entries():
        remove_entry(run_dir.path / entry)
    for item in sorted(output.iterdir()):
        os.replace(item, run_dir.path / item.name)


def outcome(final, code: int | None, run_dir: RunDir, errors: list[str]) -> int:
    """0 when the job's run finished; else the remote exit code, raised with one line."""
    stage, message = str(getattr(final.status.stage, "value", final.status.stage)), final.status.message
    where = f"job {final.id} on {final.flavor}"
    if code is None:
        raise RunError(f"{where} ended {stage} without a run record" + (f": {message}" if message else ""),
                       f"see its log: runner jobs logs {final.id}")
    if code != 0:
        reason = errors[-1] if errors else f"stage {stage}" + (f": {message}" if message else "")
        kept = (f"; {run_dir.path} is as it was (the job's record: runner jobs fetch {final.id} --output DIR)"
                if run_dir.written_entries() else "")
        raise RemoteFailed(f"{where} failed (exit {code}): {reason}",
                           f"the full log: runner jobs logs {final.id}{kept}", code)
    print(f"job {final.id} finished; the run record is in {run_dir.path}")
    return 0


def remote_arguments(compute: str, env: Mapping[str, str], fetch_model: bool) -> list[str]:
    """The `compute` input as `runner run --on` arguments; HF_TOKEN is required then (checked here, so
    the action's annotation says it before any spec is tried). The model comes back when it is pushed or uploaded."""
    if not compute:
        return []
    if not any(env.get(name) for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")):
        raise RunError(
            f"compute: {compute} trains on Hugging Face Jobs, which needs HF_TOKEN, and HF_TOKEN is not set",
            hint="add `HF_TOKEN: ${{ secrets.HF_TOKEN }}` (a write token allowed to run Jobs) under the step's env:",
            where="action",
        )
    return ["--on", compute] + (["--fetch-model"] if fetch_model else [])
