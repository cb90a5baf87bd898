"""The `runner` command line. Each command parses its arguments and calls one function.

Heavy libraries (torch, transformers) are imported inside the commands that need them, so
`runner validate` and `runner schema` start in a fraction of a second.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from runner import __version__
from runner.console import close_progress_bars, dash_is_stdout, shown
from runner.crashes import internal_error_lines
from runner.errors import RunnerError
from runner.remote.jobs_cli import jobs, remote_options, run_remote, sky
from runner.train.hardware import compile_cache_in_runner_cache, passive_wait_policy
from runner.train.progress import setup as progress_setup


def given_argv() -> list[str]:
    """The command as given, `runner` first: what click parsed (a caller's `main([...])` list, not its sys.argv)."""
    ctx = click.get_current_context(silent=True)
    return list(ctx.find_root().meta.get("runner.argv", ["runner", *sys.argv[1:]])) if ctx else ["runner"]


def debugging() -> bool:
    """`runner --debug ...`: tracebacks are shown (read from the command line, not a global)."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx and ctx.find_root().params.get("debug"))


class RunnerGroup(click.Group):
    """Turns every error into one clear line (plus a hint) and an exit code, no traceback.

    RunnerError: its own lines and exit code (2 bad input, 1 run time, 130/143 interrupted). Any
    other exception is a bug of ours or a library's: one line, the traceback saved to a file, exit 1.
    """

    def make_context(self, info_name, args, parent=None, **extra):
        given = ["runner", *args]  # before click consumes the list
        ctx = super().make_context(info_name, args, parent=parent, **extra)
        ctx.meta.setdefault("runner.argv", given)
        return ctx

    def invoke(self, ctx):
        from runner import stopping

        # What the process needs before a command imports torch (on each call, not on import, which changes nothing):
        passive_wait_policy()  # OMP_WAIT_POLICY=PASSIVE unless set: read once as torch's OpenMP loads
        compile_cache_in_runner_cache()  # torch.compile's cache out of TMPDIR, set before torch reads it
        progress_setup()  # off a terminal: progress lines, no bars (read by the libraries as they load)
        previous = stopping.install()  # SIGINT/SIGTERM unwind, never in an import or a shielded step; put back after
        try:
            try:
                return super().invoke(ctx)
            finally:  # the outcome is decided: a signal from now on (its lines being said, the interpreter shutting
                try:  # down) stops nothing; one that lands before the ignore took hold raises here, and is dropped
                    stopping.finished(previous)
                except KeyboardInterrupt:
                    stopping.finished(previous)
        except RunnerError as error:
            if ctx.params.get("debug"):
                raise
            close_progress_bars()
            for line in error.lines():
                click.echo(line, err=True)
            sys.exit(error.exit_code)
        except KeyboardInterrupt as stop:
            import shlex

            from runner.errors import Terminated, one_line

            close_progress_bars()
            name = "SIGTERM" if isinstance(stop, Terminated) else "SIGINT"
            again = shlex.join(given_argv())
            click.echo(one_line(f"interrupted ({name}) before the command finished; run it again: {again}"), err=True)
            sys.exit(143 if isinstance(stop, Terminated) else 130)
        except click.UsageError as error:  # a wrong option or argument: the same two lines, exit 2
            if ctx.params.get("debug"):
                raise
            from runner.errors import usage_error_lines

            for line in usage_error_lines(error):
                click.echo(line, err=True)
            sys.exit(2)
        except (click.exceptions.Exit, click.ClickException, SystemExit):
            raise
        except Exception as error:  # noqa: BLE001 - the catch-all: no traceback reaches the user
            if ctx.params.get("debug"):
                raise
            for line in internal_error_lines(error):
                click.echo(line, err=True)
            sys.exit(1)


@click.group(cls=RunnerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="runner")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
def main(debug: bool) -> None:
    """Fine-tune Hugging Face text classifiers from one YAML spec."""
    for stream in (sys.stdout, sys.stderr):  # a terminal that cannot show a character gets an escape, not a crash
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


@main.command()
@click.argument("specs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec value, e.g. train.epochs=1.")
def validate(specs, overrides) -> None:
    """Check specs for every mistake, with file:line:column. Exit 2 when one is invalid."""
    from runner.errors import SpecError
    from runner.spec.document import load_spec

    failed = 0  # the exit code: 2 when a spec is invalid, 1 when checking one crashed
    for path in specs:
        started = time.perf_counter()
        try:
            load_spec(path, overrides)
        except SpecError as error:
            failed = failed or 2
            for line in error.lines():
                click.echo(line, err=True)
            continue
        except Exception as error:  # noqa: BLE001 - a crash on one spec must not skip the next
            if debugging():
                raise
            failed = 1
            lines = internal_error_lines(error)
            click.echo(lines[0].replace("error: ", f"error: {path}: ", 1), err=True)
            click.echo(lines[1], err=True)
            continue
        click.echo(f"ok: {shown(path)} ({(time.perf_counter() - started) * 1000:.0f} ms)")
    if failed:
        sys.exit(failed)


@main.command()
def schema() -> None:
    """Print the spec's JSON Schema."""
    from runner.spec.schema import load_schema

    click.echo(json.dumps(load_schema(), indent=2))


@main.command()
@click.argument("spec", type=click.Path(path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a spec value, e.g. train.epochs=1.")
@click.option("--dry-run", is_flag=True, help="Print the resolved spec and the plan, then stop.")
@click.option("--output", "output_dir", type=click.Path(path_type=Path), help="Run folder (overrides output.dir).")
@click.option("--overwrite", is_flag=True, help="Replace a finished run folder.")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in the run folder.")
@click.option("--force-resume", is_flag=True, help="Resume even when the spec or data changed since the checkpoint.")
@click.option("--nproc", type=int, default=None,
              help="Train with N processes (torchrun, DDP). Overrides compute.nproc.")
@click.option("--launched", type=click.Path(path_type=Path), hidden=True, help="A worker's handoff from --nproc.")
@remote_options
def run(spec, overrides, dry_run, output_dir, overwrite, resume, force_resume, nproc, launched, on, **remote) -> None:
    """Train, evaluate, record and (when the spec says so) push: the whole flow."""
    from runner.spec.document import load_spec
    from runner.train.handoff import read_launch

    launched = read_launch(launched) if launched else None  # a worker of `--nproc N`: what the user ran and gave
    flags = {}  # options that set a spec value: taken as they are (a folder named 2024 or yes), placed at the option
    if output_dir:
        flags["output.dir"] = ("--output", str(output_dir))
    if nproc is not None:
        flags["compute.nproc"] = ("--nproc", nproc)
    for key, (option, value) in flags.items():
        if any(override.split("=", 1)[0].strip() == key for override in overrides):
            from runner.console import warn

            warn(f"{option} {value} replaces --set {key}: the option wins")
    loaded = load_spec(spec, overrides, flags=flags)
    resuming = "--resume" if resume else "--force-resume" if force_resume else ""
    if run_remote(loaded, on, dry_run, overwrite, resuming, remote):  # --on hf-jobs: runner/remote/dispatch.py
        return
    from runner.flows.lifecycle import check_before_launch

    if dry_run:  # what no flag lets a run write (someone else's folder, inside a run, a link), then the plan
        from runner.flows.plan import describe_plan

        check_before_launch(loaded, overwrite=True, resume=resume)  # a finished run there: the user adds --overwrite
        click.echo(describe_plan(loaded))
        return
    if loaded["compute"]["nproc"] > 1 or loaded["compute"]["nnodes"] > 1:
        from runner.train.distributed import launch, node_settings

        # the rank a launcher gives in the environment, before the folder
        nodes = node_settings(loaded.compute, loaded.where("compute", "nnodes"))
        check_before_launch(loaded, overwrite=overwrite or resume, resume=resume)
        code = launch(given_argv(), loaded["compute"]["nproc"], nodes, loaded["compute"]["node_rank"])
        if code:  # a caller of main gets a normal return on success, as from a single-process run
            sys.exit(code)
        return
    from runner.flows.recipe import run_spec

    run_spec(loaded, overwrite=overwrite or resume, resume=resume, force_resume=force_resume, argv=given_argv(),
             launched=launched)


@main.command()
@click.argument("data_file", type=click.Path(path_type=Path))
@click.option("-o", "--output", "output", type=click.Path(path_type=Path), default=None, callback=dash_is_stdout,
              help="Where to write the spec (default, or -: print it).")
@click.option("--model", default=None, help="Model to fine-tune: a Hub id, a folder, or package:NAME (default: a "
              "packaged model when one is installed, so it works offline; else distilbert-base-uncased).")
@click.option("--force", is_flag=True, help="Replace OUTPUT when it is a spec runner wrote (never the data file).")
@click.option("--encoding", default=None, help="The data file's text encoding, e.g. cp1252 (default: detected).")
def init(data_file, output, model, force, encoding) -> None:
    """Write a starter spec for DATA_FILE, guessing the text and label columns."""
    from runner.data.starter import starter_spec

    if output:
        check_new_file(output, force, data_file)
    text = starter_spec(data_file, model, spec_path=output, encoding=encoding)
    if output:
        write_new_file(output, text, force)
        click.echo(f"wrote {shown(output)}; check it with: runner validate {shown(output)}")
    else:
        click.echo(text, nl=False)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("texts", nargs=-1)
@click.option("--input", "input_file", type=click.Path(path_type=Path),
              help="File of texts (CSV/JSONL/Parquet with the spec's text column, or .txt with one text a line).")
@click.option("--output", "output_file", type=click.Path(path_type=Path), callback=dash_is_stdout,
              help="Write predictions here (.jsonl or .csv; default, or -: print them).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Texts per batch (default: predict.batch_size).")
@click.option("--backend", type=click.Choice(["torch", "onnx"]), default="torch", show_default=True,
              help="onnx: the model `runner export` wrote (int8 when there is one), with onnxruntime only.")
@click.option("--force", is_flag=True, help="Replace an --output file that runner predict wrote (never another).")
def predict(run_dir, texts, input_file, output_file, batch_size, backend, force) -> None:
    """Predict labels and class probabilities with a trained run."""
    from runner.inference.predict import predict_command

    predict_command(run_dir, list(texts), input_file, output_file, batch_size, backend, force)


@main.command(name="export")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--int8", is_flag=True, help="Also write an int8 model (model_int8.onnx): the quantisation that agrees "
              "most with PyTorch; left out with a warning when it agrees less than --min-agreement.")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Folder to write (default: RUN_DIR/onnx).")
@click.option("--min-agreement", type=click.FloatRange(0, 1), default=0.99, show_default=True,
              help="Refuse (exit 1) when fewer validation labels than this agree with PyTorch (int8: left out).")
@click.option("--parity-rows", type=click.IntRange(min=0), default=2000, show_default=True,
              help="Validation texts to check.")
@click.option("--force", is_flag=True, hidden=True,
              help="Accepted, changes nothing: an earlier export is replaced without it, anything else never.")
@click.option("--require-int8", is_flag=True,
              help="With --int8: exit 1 (writing nothing) when int8 falls short, not fp32 with a warning.")
def export(run_dir, int8, output, min_agreement, parity_rows, force, require_int8) -> None:
    """Export a trained run to ONNX (LoRA merged) with its tokenizer, checked against PyTorch."""
    from runner.inference.export import describe, export_command

    typed = given_argv()[1:]  # the hint after a signal repeats it as typed
    for line in describe(export_command(run_dir, output, int8 or require_int8, min_agreement, parity_rows,
                                        require_int8=require_int8, typed=typed)):
        click.echo(line)


@main.command(name="eval")
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--data", "data_file", required=True, type=click.Path(path_type=Path),
              help="A labelled file with the spec's columns.")
def evaluate_command(run_dir, data_file) -> None:
    """Metrics of a trained run on a new labelled file."""
    from runner.inference.predict import eval_command

    click.echo(json.dumps(eval_command(run_dir, data_file), indent=2))


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["markdown", "json"]), default="markdown", show_default=True)
@click.option("--compare", "base_dir", type=click.Path(path_type=Path), default=None,
              help="A baseline run folder (or metrics.json) to show deltas against.")
@click.option("--compare-name", "base_name", default=None, metavar="TEXT",
              help="How the report names the baseline (default: its path), e.g. the run it came from.")
def report(run_dir, fmt, base_dir, base_name) -> None:
    """The metrics summary of a run, as a pull-request comment or job summary shows it."""
    from runner.record.summary import another_spec_warning, finite_json, summary_json, summary_markdown

    summary = summary_json(run_dir, base_dir)
    if base_name and base_dir is not None:
        summary["base_name"] = base_name
    if line := another_spec_warning(summary):
        from runner.console import warn

        warn(line)
    click.echo(json.dumps(finite_json(summary), indent=2, allow_nan=False) if fmt == "json"
               else summary_markdown(run_dir, base_dir, summary))
    gate = summary.get("gate")
    if gate and not gate["passed"]:  # the quality gate of the run's spec: exit 1 and say why
        click.echo(f"error: gate: {'; '.join(gate['reasons'])}", err=True)
        click.echo("hint: the spec's gate section sets the limits; improve the run, or change the gate on purpose",
                   err=True)
        sys.exit(1)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--repo", "repo_id", default=None, help="Hub repo id (default: hub.repo_id of the spec).")
@click.option("--tag", default=None, help="Tag the pushed commit, e.g. v1.0.0.")
@click.option("--revision", default=None, help="Branch to push to (default: hub.revision of the spec).")
@click.option("--private/--public", "private", default=None,
              help="Visibility when the repo is created (default: hub.private).")
@click.option("--create-pr/--no-create-pr", "create_pr", default=None,
              help="Open a pull request on the Hub instead of committing to the branch.")
def push(run_dir, repo_id, tag, revision, private, create_pr) -> None:
    """Upload a finished run to the Hugging Face Hub (token from HF_TOKEN)."""
    from runner.publish.hub import push_run

    push_run(run_dir, repo_id=repo_id, tag=tag, private=private, create_pr=create_pr, revision=revision)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--base", "base_dir", type=click.Path(path_type=Path), default=None,
              help="Baseline run folder or metrics.json for deltas.")
@click.option("--key", default=None,
              help="Identifies this comment among the runner's comments (default: the spec name).")
def comment(run_dir, base_dir, key) -> None:
    """Post or update the pull-request comment with this run's metrics (GitHub Actions)."""
    from runner.publish.github import comment_on_pull_request
    from runner.record.summary import summary_markdown

    body = summary_markdown(run_dir, base_dir)
    result = comment_on_pull_request(body, key or Path(run_dir).name)
    click.echo(f"comment {result['action']}" + (f": {result['url']}" if result.get("url") else ""))


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--output", "output_dir", type=click.Path(path_type=Path), default=None,
              help="Where the repeated run goes (default: RUN_DIR-reproduce).")
@click.option("--overwrite", is_flag=True, help="Replace an earlier run in the --output folder (never other files).")
def reproduce(run_dir, output_dir, overwrite) -> None:
    """Re-run from a run's manifest and report whether the metrics match."""
    from runner.flows.reproduce import reproduce_run

    if not reproduce_run(run_dir, output_dir, overwrite):
        sys.exit(1)


@main.command()
@click.argument("config", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None, callback=dash_is_stdout,
              help="Write the native spec here (default, or -: print it).")
@click.option("--force", is_flag=True, help="Replace OUTPUT when it is a spec runner wrote (never the config).")
def convert(config, output, force) -> None:
    """Translate an AutoTrain text-classification config into a native spec."""
    from runner.spec.convert import convert_file

    if output:
        check_new_file(output, force, config)
    text = convert_file(config, spec_path=output)
    if output:
        write_new_file(output, text, force)
        click.echo(f"wrote {shown(output)}")
    else:
        click.echo(text, nl=False)


def check_new_file(output: Path, force: bool, source: Path) -> None:
    """`-o FILE` of init and convert (the guarded writer): never the command's input, a run folder's file or an
    existing file unless --force; in a folder that exists (a typo in the path should not leave new folders behind)."""
    from runner.record.guard import check_file

    check_file(output, [source], force, option="-o", kind="spec")


def write_new_file(output: Path, text: str, force: bool = False) -> None:
    from runner.record.guard import write_file

    write_file(output, text, kind="spec", force=force, option="-o")


@main.command()
def doctor() -> None:
    """What this machine offers a run: torch, CUDA, driver, GPU, bf16, CPU, caches. Exit 1 when
    an NVIDIA GPU is here but torch cannot use it (the preflight of `runner run`)."""
    from runner.train.doctor import check_gpu_usable, doctor_lines

    for line in doctor_lines():
        click.echo(line)
    click.echo(f"{'preflight':<14}{check_gpu_usable('auto')}")


@main.command(name="docs")
@click.option("--check", is_flag=True, help="Fail when spec/reference.md is out of date instead of writing it.")
@click.option("--output", type=click.Path(path_type=Path), default=Path("spec/reference.md"), show_default=True)
@click.option("--force", is_flag=True, help="Replace an existing reference that `runner docs` wrote.")
def docs_command(check, output, force) -> None:
    """Regenerate the spec reference (spec/reference.md) from the JSON Schema."""
    from runner.record.guard import check_file, sealed, write_file
    from runner.spec.reference import render_reference

    text = render_reference()  # as written: sealed, so --force replaces it only while unchanged
    if check:
        current = output.read_bytes() if output.is_file() else b""  # bytes: a CRLF copy is not what docs writes
        if current != sealed(text, "docs").encode("utf-8"):
            from runner.errors import RunError
            raise RunError("out of date: not byte for byte what `runner docs` writes", f"run: runner docs --output "
                           f"{output} --force (an edited copy, or one with other line endings: move it away first)",
                           str(output))
        click.echo(f"{shown(output)} is up to date")
        return
    check_file(output, force=force, kind="docs")  # never a spec, a run's file, or a file of someone else's
    write_file(output, text, kind="docs", force=force)
    click.echo(f"wrote {shown(output)}")


main.add_command(jobs)
main.add_command(sky)


def entry() -> None:
    """The `runner` program (console script, `python -m runner`): once the command's work is done and said, stop
    signals are ignored (runner.stopping.finished); in-process callers of `main` keep their own handlers."""
    from runner import stopping
    stopping.AS_PROGRAM = True
    main()


if __name__ == "__main__":
    entry()
