"""The composite action's Python step (`python -m runner.action`): train every spec, report,
comment, push, annotate errors, set outputs.

action.yml installs the runner into a virtual environment of its own and runs this module with
that environment's Python; every input arrives as an environment variable (ACTION_INPUTS).
The GitHub side (comments, summary, outputs, workflow commands) is runner/github.py.
"""

import glob
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from runner.errors import RunError, RunnerError, SpecError
from runner.github import (
    HF_TOKEN_VARS,
    comment_on_pull_request,
    escape_data,
    escape_property,
    mask,
    set_outputs,
    warning,
    write_step_summary,
)
from runner.rundir import RunDir, metrics_path

# action.yml passes every input to the Python step through these variables (composite actions
# do not set INPUT_* themselves); tests/test_action.py checks that the two agree.
ACTION_INPUTS = {
    "spec": "INPUT_SPEC",
    "push": "INPUT_PUSH",
    "comment": "INPUT_COMMENT",
    "set": "INPUT_SET",
    "compute": "INPUT_COMPUTE",
    "base-metrics": "INPUT_BASE_METRICS",
    "tag": "INPUT_TAG",
    "upload-model": "INPUT_UPLOAD_MODEL",
    "artifact-name": "INPUT_ARTIFACT_NAME",
    "github-token": "GITHUB_TOKEN",
}

# Inputs the install steps of action.yml use (not the Python step).
INSTALL_INPUTS = ("python-version", "working-directory", "extra-packages", "torch-index-url")

# What the Python step writes to GITHUB_OUTPUT; action.yml maps these to its outputs.
ACTION_OUTPUTS = ("run-dir", "metrics", "model-url", "artifact-path", "artifact-name")

# Never in the artifact: Trainer checkpoints (weights + optimizer state) and any stray weights.
# The model folders (model/, merged/, onnx/) only with upload-model: true.
ALWAYS_EXCLUDED = ("**/checkpoints/**", "**/optimizer.pt", "**/scheduler.pt", "**/rng_state*.pth")
MODEL_EXCLUDED = (
    "**/model/**",
    "**/merged/**",
    "**/onnx/**",
    "**/*.safetensors",
    "**/*.bin",
    "**/*.pt",
    "**/*.pth",
    "**/*.onnx",
)

# (args, capture_stdout) -> (exit code, captured stdout, stderr it printed)
RunCli = Callable[[list[str], bool], tuple[int, str, str]]

STDERR_KEEP = 256 * 1024  # the end of stderr kept for error lines; all of it goes to the log
ERROR_LINES = 40  # at most this many error/hint lines in a comment


def run_runner_cli(args: list[str], capture: bool = False) -> tuple[int, str, str]:
    """Run the `runner` console script installed next to this Python, exactly as a user would.

    stdout is captured if asked, else streamed to the log; stderr always goes to the log as it
    comes (progress bars included) and its end is also returned, for the error lines."""
    exe = Path(sys.executable).with_name("runner")
    if not exe.exists():
        raise RunError(
            f"the `runner` command is not installed next to {sys.executable}",
            hint="run the action's install step first (or: pip install torch==2.13.0 .)",
            where="action",
        )
    proc = subprocess.Popen([str(exe), *args], stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE)
    kept = bytearray()

    def tee() -> None:
        log = getattr(sys.stderr, "buffer", None)
        while chunk := os.read(proc.stderr.fileno(), 65536):
            if log is not None:
                log.write(chunk)
                log.flush()
            else:
                sys.stderr.write(chunk.decode("utf-8", "replace"))
            kept.extend(chunk)
            del kept[:-STDERR_KEEP]

    reader = threading.Thread(target=tee, daemon=True)
    reader.start()
    out = proc.stdout.read() if capture else b""
    proc.wait()
    reader.join()
    return proc.returncode, out.decode("utf-8", "replace"), kept.decode("utf-8", "replace")


# --- inputs ---------------------------------------------------------------------------------------


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(ACTION_INPUTS[name], "").strip().lower()
    if not raw:
        return default
    if raw in ("true", "yes", "1", "on"):
        return True
    if raw in ("false", "no", "0", "off"):
        return False
    raise SpecError(f"input `{name}` must be true or false, not {raw!r}", hint=f"{name}: true", where="action")


def expand_specs(pattern: str) -> list[str]:
    """Spec paths from the `spec` input: one path or glob per line, sorted, duplicates dropped."""
    specs: list[str] = []
    for line in pattern.splitlines():
        line = line.strip()
        if not line:
            continue
        matches = sorted(glob.glob(line, recursive=True)) if glob.has_magic(line) else [line]
        for path in matches:
            if os.path.isfile(path) and path not in specs:
                specs.append(path)
    if not specs:
        raise SpecError(
            f"no spec file matches {pattern.strip()!r}",
            hint="set the action's `spec` input to a spec path or glob relative to working-directory",
            where="action",
        )
    return specs


def override_lines(text: str) -> list[str]:
    """The `set` input's key=value lines, comments and blank lines dropped."""
    lines = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line or line.startswith("="):
            raise SpecError(
                f"`set` line {line!r} is not key=value",
                hint="one override per line, e.g. train.epochs=1",
                where="action",
            )
        lines.append(line)
    return lines


def parse_overrides(text: str) -> list[str]:
    """The `set` input, one key=value per line, as `--set` arguments for `runner run`."""
    return [arg for line in override_lines(text) for arg in ("--set", line)]


def remote_arguments(compute: str, env: Mapping[str, str], fetch_model: bool) -> list[str]:
    """The `compute` input as `runner run --on` arguments; HF_TOKEN is required then (checked here, so
    the annotation says it before any spec is tried). The model comes back when it is pushed or uploaded."""
    if not compute:
        return []
    if not any(env.get(name) for name in HF_TOKEN_VARS):
        raise RunError(
            f"compute: {compute} trains on Hugging Face Jobs, which needs HF_TOKEN, and HF_TOKEN is not set",
            hint="add `HF_TOKEN: ${{ secrets.HF_TOKEN }}` (a write token allowed to run Jobs) under the step's env:",
            where="action",
        )
    return ["--on", compute] + (["--fetch-model"] if fetch_model else [])


def _slug(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", os.path.splitext(os.path.normpath(spec))[0]).strip("-.") or "spec"


def artifact_patterns(out_dir: Path, upload_model: bool) -> list[str]:
    """The upload-artifact `path`: the run folder(s) less checkpoints, and less weights unless asked."""
    excluded = ALWAYS_EXCLUDED + (() if upload_model else MODEL_EXCLUDED)
    return [str(out_dir)] + [f"!{out_dir}/{pattern}" for pattern in excluded]


# --- errors: annotations and the comment ------------------------------------------------------------

_ERROR = re.compile(r"^error: (?P<text>.*)$")
_LOCATED = re.compile(r"^(?P<file>[^\s:][^:]*):(?P<line>\d+)(?::(?P<col>\d+))? (?P<rest>.*)$")
_SPEC_PATH = re.compile(r"^(?P<path>[\w.\[\]-]+): ")


def error_lines(stderr: str) -> list[str]:
    """The `error:` and `hint:` lines the runner printed (its one-line errors), in order."""
    lines = [line.rstrip("\r") for line in re.split(r"\r?\n|\r", stderr)]
    return [line for line in lines if line.startswith(("error: ", "hint: "))][-ERROR_LINES:]


def _workflow_file(env: Mapping[str, str], needle: str) -> tuple[str, int] | None:
    """The workflow file (relative to the workspace) and line holding `needle`, the `set:` line."""
    workspace = Path(env.get("GITHUB_WORKSPACE") or ".")
    ref = env.get("GITHUB_WORKFLOW_REF", "")
    match = re.match(r"[^/]+/[^/]+/(.+?)@", ref)
    candidates = [workspace / match.group(1)] if match else []
    candidates += sorted((workspace / ".github" / "workflows").glob("*.y*ml"))
    for path in candidates:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for number, line in enumerate(lines, 1):
            if line.strip().removeprefix("- ").strip() == needle or line.strip().endswith(f"set: {needle}"):
                return path.relative_to(workspace).as_posix(), number
    return None


def _repo_path(file: str, env: Mapping[str, str]) -> str:
    """A path the runner printed (relative to the step's folder) as GitHub wants it: from the repository root."""
    workspace = env.get("GITHUB_WORKSPACE")
    if not workspace:
        return file
    path = os.path.relpath(os.path.abspath(file), os.path.abspath(workspace))
    return file if path.startswith("..") else Path(path).as_posix()


def annotations(stderr: str, spec: str, overrides: list[str], env: Mapping[str, str]) -> list[str]:
    """`::error file=...,line=...,col=...::` commands for each runner error in `stderr`.

    An error at a spec line is annotated there; an error caused by a `set:` line (the key it
    sets, or `--set ...` itself) at that line of the workflow file, since the spec is not where
    the mistake is."""
    keys = {line.split("=", 1)[0].strip(): line for line in overrides}
    commands = []
    lines = error_lines(stderr)
    for i, line in enumerate(lines):
        match = _ERROR.match(line)
        if not match:
            continue
        text = match.group("text")
        hint = lines[i + 1][len("hint: ") :] if i + 1 < len(lines) and lines[i + 1].startswith("hint: ") else ""
        located = _LOCATED.match(text)
        rest = located.group("rest") if located else text
        path = (_SPEC_PATH.match(rest) or [None, ""])[1] if not rest.startswith("--set") else ""
        override = next(
            (
                line
                for k, line in keys.items()
                if rest.startswith((f"--set {k}", f"--set '{k}")) or path == k or path.startswith(k + ".")
            ),
            None,
        )
        properties = {"title": f"runner: {spec}"}
        message = rest
        if override is not None:
            where = _workflow_file(env, override)
            if where:
                properties.update(file=where[0], line=str(where[1]))
            properties["title"] = f"runner: set: {override}"
        elif located:
            properties.update(file=_repo_path(located.group("file"), env), line=located.group("line"))
            if located.group("col"):
                properties["col"] = located.group("col")
        else:
            properties["file"] = _repo_path(spec, env)
        body = message + (f"\nhint: {hint}" if hint else "")
        order = ("file", "line", "col", "title")  # as GitHub documents them: file=SPEC,line=N,col=C
        props = ",".join(f"{k}={escape_property(properties[k])}" for k in order if k in properties)
        commands.append(f"::error {props}::{escape_data(body)}")
    return commands


def failure_body(spec: str, command: str, rc: int, stderr: str) -> str:
    """The comment for a spec whose `runner run` (or push) failed: the error lines themselves."""
    lines = error_lines(stderr)
    head = f"### runner: `{spec}` failed\n\n`runner {command}` failed with exit code {rc}"
    if not lines:
        return head + "; see the job log."
    return head + ":\n\n```text\n" + "\n".join(lines).replace("```", "'''") + "\n```"


def scrub(text: str, env: Mapping[str, str]) -> str:
    """Secrets out of text that leaves the log (the comment, the summary): the log masks them, these do not."""
    for name in (*HF_TOKEN_VARS, "GITHUB_TOKEN"):
        secret = env.get(name, "")
        if len(secret) >= 8:
            text = text.replace(secret, "***")
    return text


# --- the step --------------------------------------------------------------------------------------


def _footer(spec: str, env: Mapping[str, str]) -> str:
    parts = [f"spec `{spec}`"]
    if env.get("GITHUB_REPOSITORY") and env.get("GITHUB_RUN_ID"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        parts.append(f"[workflow run]({server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']})")
    if env.get("GITHUB_SHA"):
        parts.append(f"commit {env['GITHUB_SHA'][:7]}")
    return f"\n<sub>{' · '.join(parts)}</sub>\n"


def _train_and_report(
    spec: str,
    run_dir: Path,
    overrides: list[str],
    lines: list[str],
    push: bool,
    tag: str,
    compare: Path | None,
    run_cli: RunCli,
    env: Mapping[str, str],
) -> tuple[int, str]:
    """`runner run`, then `runner push` if asked, then `runner report`: (exit code, markdown)."""
    rc, _, err = run_cli(["run", spec, *overrides, "--output", str(run_dir)], False)
    if rc != 0:
        for command in annotations(err, spec, lines, env):
            print(command, flush=True)
        return rc, failure_body(spec, "run", rc, err)
    problems = []
    if push:
        rc, _, err = run_cli(["push", str(run_dir), *(["--tag", tag] if tag else [])], False)
        if rc != 0:
            problems.append(failure_body(spec, "push", rc, err).split("\n", 2)[2])
    report_rc, report, report_err = run_cli(
        ["report", str(run_dir), "--format", "markdown", *(["--compare", str(compare)] if compare else [])], True
    )
    if report_rc != 0 and report.strip():  # the quality gate failed: the report says why, the step fails
        for line in error_lines(report_err)[:1]:
            title = f"runner: quality gate ({escape_property(spec)})"
            print(f"::error title={title}::{escape_data(line[len('error: ') :])}", flush=True)
        return report_rc, "\n\n".join([report.strip(), *problems]).strip()
    if report_rc != 0:
        problems.append(f"`runner report` failed with exit code {report_rc}; showing the run's report.md.")
        report = (run_dir / "report.md").read_text(encoding="utf-8") if (run_dir / "report.md").is_file() else ""
        rc = rc or report_rc
    return rc, "\n\n".join([report.strip(), *problems]).strip()


def run_action(env: Mapping[str, str] = os.environ, run_cli: RunCli = run_runner_cli) -> int:
    """Train every spec, report, comment, push, set outputs; in the action's working-directory.

    Returns the first failing exit code, else 0; a spec that fails does not stop the others."""
    for name in HF_TOKEN_VARS:
        if env.get(name):
            mask(env[name])
    specs = expand_specs(env.get(ACTION_INPUTS["spec"], ""))
    lines = override_lines(env.get(ACTION_INPUTS["set"], ""))
    overrides = parse_overrides(env.get(ACTION_INPUTS["set"], ""))
    push = _flag(env, "push", False)
    comment = _flag(env, "comment", True)
    upload_model = _flag(env, "upload-model", False)
    overrides += remote_arguments(env.get(ACTION_INPUTS["compute"], "").strip(), env, push or upload_model)
    tag = env.get(ACTION_INPUTS["tag"], "").strip()
    base = env.get(ACTION_INPUTS["base-metrics"], "").strip()
    root = Path(env.get("RUNNER_TEMP") or ".").resolve() / "runner-runs"

    slugs: list[str] = []
    for spec in specs:
        slug, n = _slug(spec), 2
        while slug in slugs:
            slug, n = f"{_slug(spec)}-{n}", n + 1
        slugs.append(slug)

    exit_code = 0
    metrics: dict[str, dict] = {}
    model_urls: list[str] = []
    run_dirs: list[Path] = []
    for spec, slug in zip(specs, slugs):
        run_dir = root / slug
        run_dirs.append(run_dir)
        compare = _baseline(base, slug)
        rc, report = _train_and_report(spec, run_dir, overrides, lines, push, tag, compare, run_cli, env)
        exit_code = exit_code or rc
        run = RunDir(run_dir)
        if run.metrics_file.is_file():
            metrics[spec] = run.headline()
        hub_url = run.hub_url()
        if hub_url:
            model_urls.append(hub_url)
        body = scrub(report.strip() + "\n" + _footer(spec, env), env)

        write_step_summary(body, env)
        if comment:
            try:
                result = comment_on_pull_request(body, spec, env, summary_fallback=False)
            except RunError as e:
                warning(f"runner: could not comment on the pull request: {e.message} ({e.hint})")
            else:
                if result["url"]:
                    print(f"runner: {result['action']} the pull request comment {result['url']}", flush=True)

    single = len(specs) == 1
    out_dir = run_dirs[0] if single else root
    # A run that failed before it made its folder (a spec error) has nothing to point at or upload.
    exists = out_dir.is_dir()
    name = env.get(ACTION_INPUTS["artifact-name"], "").strip() or "-".join(
        ["runner", env.get("GITHUB_JOB", "job"), slugs[0] if single else "runs"]
        + ([f"attempt{env['GITHUB_RUN_ATTEMPT']}"] if env.get("GITHUB_RUN_ATTEMPT", "1") != "1" else [])
    )
    set_outputs(
        {
            "run-dir": str(out_dir) if exists else "",
            "metrics": metrics,
            "model-url": "\n".join(model_urls),
            "artifact-path": "\n".join(artifact_patterns(out_dir, upload_model)) if exists else "",
            "artifact-name": name,
        },
        env,
    )
    return exit_code


def _baseline(base: str, slug: str) -> Path | None:
    """What to compare against: a metrics.json or run folder as given, or the spec's own
    folder inside a folder of runs (a multi-spec artifact from the base branch)."""
    if not base:
        return None
    path = Path(base)
    if path.is_file() or metrics_path(path).is_file():
        return path
    if metrics_path(path / slug).is_file():
        return path / slug
    warning(f"runner: no baseline metrics at {base} for {slug}; reporting without a comparison.")
    return None


def main() -> int:
    """`python -m runner.action`: the action's entry point."""
    try:
        return run_action(os.environ)
    except RunnerError as e:
        for line in e.lines():
            print(line, file=sys.stderr)
        print(f"::error title=runner::{escape_data(chr(10).join(e.lines()))}", flush=True)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
