"""The command line of remote runs: the `--on` options of `runner run` and `runner jobs ...`.

Only click is imported here; huggingface_hub and the rest load inside the commands.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from runner.console import dash_is_stdout, shown

if TYPE_CHECKING:
    from runner.spec.document import Spec

REMOTE_ONLY = ("detach", "fetch_model", "job_timeout", "image")


def remote_options(command):
    """The options of `runner run` that send the run to Hugging Face Jobs."""
    options = [
        click.option("--on", "on", metavar="hf-jobs[:FLAVOR]", default=None,
                     help="Train on Hugging Face Jobs (default flavor a10g-small); the record comes back here."),
        click.option("--detach", is_flag=True, help="With --on: return once the job has started, with its id."),
        click.option("--fetch-model", is_flag=True, help="With --on: bring the trained model back too."),
        click.option("--job-timeout", default=None, metavar="DURATION",
                     help="With --on: stop the job after this long, e.g. 90m, 2h (default 2h)."),
        click.option("--image", default=None,
                     help="With --on: an image with runner installed (default $RUNNER_JOBS_IMAGE; tagged with this "
                          "version); without one, a stock Python image installs this runner's wheel."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def run_remote(loaded: Spec, on: str | None, dry_run: bool, overwrite: bool, resume: str, remote: dict) -> bool:
    """Handle `runner run ... --on`: False when the run is local (no --on), else dispatch and exit. `resume`: the
    resume option given (--resume, --force-resume) or ""."""
    if not on:
        given = [name for name in REMOTE_ONLY if remote.get(name)]
        if given:
            raise click.UsageError(f"--{given[0].replace('_', '-')} needs --on hf-jobs[:FLAVOR]")
        return False
    from runner.remote import dispatch as jobs

    if resume:
        raise click.UsageError(f"{resume} continues a local run; a job on --on starts from scratch")
    timeout = remote.get("job_timeout") or jobs.DEFAULT_TIMEOUT
    if dry_run:
        from runner.flows.plan import describe_plan

        # refused before the plan is printed
        lines = jobs.describe_job(on, timeout, remote.get("image"), name=loaded.name, data=loaded.data,
                                  model=loaded.model, search=loaded.search, resolve=loaded.resolve,
                                  where=loaded.where, output_dir=loaded.output_dir)
        click.echo(describe_plan(loaded))
        for line in lines:
            click.echo(line)
        return True
    sys.exit(jobs.dispatch(loaded, on, overwrite=overwrite, detach=remote.get("detach", False),
                           fetch_model=remote.get("fetch_model", False), timeout=timeout, image=remote.get("image")))


@click.group(name="jobs")
def jobs() -> None:
    """Follow, cancel or fetch runs started with `runner run SPEC --on hf-jobs`."""


@jobs.command()
@click.argument("job_id")
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the job ends.")
def logs(job_id, follow) -> None:
    """Print a job's log. With --follow a broken stream or a failed status call is tried again for a while, and
    the log goes on where it stopped."""
    from runner.remote.follow import follow_log
    from runner.remote.hubapi import connect, hub_call

    api, token, namespace = connect()
    if follow:
        hub_call(f"following the log of job {job_id}", lambda: follow_log(api, job_id, namespace, click.echo), token)
        return
    lines = api.fetch_job_logs(job_id=job_id, namespace=namespace, follow=False)
    hub_call(f"reading the log of job {job_id}", lambda: [click.echo(line) for line in lines], token)


@jobs.command()
@click.argument("job_id")
def status(job_id) -> None:
    """A job's stage, flavor, image and URL. Exit 1 when it failed or was canceled."""
    from runner.remote.hubapi import connect, hub_call

    api, token, namespace = connect()
    job = hub_call(f"reading job {job_id}", lambda: api.inspect_job(job_id=job_id, namespace=namespace), token)
    stage = str(getattr(job.status.stage, "value", job.status.stage))
    click.echo(f"{job.id} {stage}" + (f": {job.status.message}" if job.status.message else ""))
    click.echo(f"flavor {job.flavor}, image {job.docker_image or job.space_id}, created {job.created_at}")
    click.echo(job.url)
    if stage in ("ERROR", "CANCELED", "DELETED"):
        sys.exit(1)


@jobs.command()
@click.argument("job_id")
def cancel(job_id) -> None:
    """Cancel a job (its billing stops)."""
    from runner.remote.hubapi import connect, hub_call

    api, token, namespace = connect()
    hub_call(f"canceling job {job_id}", lambda: api.cancel_job(job_id=job_id, namespace=namespace), token)
    click.echo(f"canceled job {job_id}")


@jobs.command()
@click.argument("job_id")
@click.option("--output", "output_dir", required=True, type=click.Path(path_type=Path), help="Run folder to write.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier run in that folder (never other files).")
def fetch(job_id, output_dir, overwrite) -> None:
    """Bring a finished job's run record back (after --detach). Exit with the job's exit code.

    The folder follows the rules of `runner run --output`: a new or empty folder, or an earlier run's with
    --overwrite (not while a runner process holds it); never a folder of other files, nor one inside a run."""
    from runner.errors import RunError
    from runner.record.rundir import RunDir
    from runner.remote.hubapi import connect, hub_call
    from runner.remote.joblabels import job_location
    from runner.remote.record import check_local_output
    from runner.remote.retrieve import collect, outcome

    run_dir, where = RunDir(output_dir), "--output"
    check_local_output(run_dir, overwrite, where)
    api, token, namespace = connect()
    job = hub_call(f"reading job {job_id}", lambda: api.inspect_job(job_id=job_id, namespace=namespace), token)
    repo_id, folder = job_location(job)
    if str(getattr(job.status.stage, "value", job.status.stage)) in ("SCHEDULING", "RUNNING"):
        raise RunError(f"job {job_id} is still running", f"wait for it: runner jobs logs {job_id} --follow")
    code, placed = collect(api, token, repo_id, folder, run_dir, overwrite, where, job)
    outcome(job, code, placed, run_dir, [], f"datasets/{repo_id}/{folder}")


@jobs.command(name="exec", hidden=True)
@click.argument("repo_id")
@click.argument("folder")
@click.option("--fetch-model", is_flag=True)
@click.option("--flavor", default="", help="The job's flavor: a GPU flavor stops at once without CUDA.")
def exec_command(repo_id, folder, fetch_model, flavor) -> None:
    """Inside the job: download the inputs, run, upload the record (see runner/remote/execute.py)."""
    from runner.remote.execute import exec_job
    from runner.remote.joblabels import check_folder_name

    sys.exit(exec_job(repo_id, check_folder_name(folder), fetch_model, flavor=flavor))


@click.command(name="sky")
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a spec value.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, callback=dash_is_stdout,
              help="Write the task here (default, or -: print it).")
@click.option("--force", is_flag=True, help="Replace OUTPUT when it is a task runner sky wrote (never another file).")
@click.option("--accelerators", default=None, help="SkyPilot accelerators per node, e.g. A100:8.")
@click.option("--image", default=None, help="The runner image (default $RUNNER_JOBS_IMAGE; tagged with this version).")
@click.option("--rdzv-port", type=click.IntRange(1, 65535), default=29500, show_default=True,
              help="Port on node 0 where the nodes meet.")
def sky(spec: Path, overrides, output, force, accelerators, image, rdzv_port) -> None:
    """Write a SkyPilot task that trains SPEC on compute.nnodes machines (sky launch -c CLUSTER TASK)."""
    from runner.record.guard import check_file, write_file
    from runner.remote.dispatch import job_image
    from runner.remote.sky import check_with_skypilot, sky_image, sky_task, task_yaml
    from runner.spec.document import load_spec

    loaded = load_spec(spec, overrides)
    if output:  # before any work: never the spec, its data, a run's file or another file of the user's
        from runner.remote.sky import local_files

        reads = [path for _, path in local_files(loaded.data, loaded.model, loaded.resolve)]
        check_file(output, [spec, *reads], force, option="-o", kind="sky")
    task = sky_task(loaded, sky_image(job_image(image)), accelerators, overrides, rdzv_port)
    unchecked = check_with_skypilot(task)
    text = task_yaml(task)
    if output:
        write_file(output, text, kind="sky", force=force, option="-o")
        click.echo(f"wrote {shown(output)}; start it with: sky launch -c CLUSTER {shown(output)}"
                   + (" --secret HF_TOKEN" if "secrets" in task else ""))
    else:
        click.echo(text, nl=False)
    if unchecked:
        click.echo(f"note: {unchecked}", err=True)
