"""The composite action's Python steps (`python -m runner.publish.action PHASE`): train every spec,
report, push, comment, annotate errors, set outputs.

action.yml installs the runner into a virtual environment of its own and runs this module with
that environment's Python, once per phase, each a step of its own so that each holds only the
secret it needs: `prepare` (GitHub token: refuse untrusted specs, fetch the baseline), `train`
(no token: `runner run` and `runner report`), `push` (only HF_TOKEN), `publish` (GitHub token:
summary, comments, the exit code). The phases hand over through a JSON file under RUNNER_TEMP.
Every input arrives as an environment variable (ACTION_INPUTS).
"""

import functools
import glob
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from runner.console import say
from runner.errors import RunError, RunnerError, SpecError
from runner.files import atomic_write_text, make_folder
from runner.publish.action_errors import annotations, error_lines, failure_body, gate_annotation, scrub
from runner.publish.action_names import artifact_name, comment_key, remote_arguments, run_identity, slug_of
from runner.publish.baseline import Baseline, explicit_baseline, fetch_baseline, spec_key, write_index
from runner.publish.github import (
    HF_TOKEN_VARS,
    comment_on_pull_request,
    escape_data,
    mask,
    set_outputs,
    warning,
    write_step_summary,
)
from runner.publish.trust import check_spec, refusal_body, refusal_commands, untrusted_reason
from runner.record.render import code
from runner.record.rundir import RunDir

# re-exported: tests and callers use action.*
__all__ = ["annotations", "artifact_name", "comment_key", "error_lines", "failure_body", "run_identity", "scrub"]

# action.yml passes every input to the Python step through these variables (composite actions
# do not set INPUT_* themselves); tests/publish/test_action.py checks that the two agree.
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
    "baseline": "INPUT_BASELINE",
    "baseline-artifact": "INPUT_BASELINE_ARTIFACT",
    "allow-untrusted-code": "INPUT_ALLOW_UNTRUSTED_CODE",
    "extra-packages": "INPUT_EXTRA_PACKAGES",
    "hf-token": "INPUT_HF_TOKEN",
}

# Inputs the install steps of action.yml use (not the Python step).
INSTALL_INPUTS = ("python-version", "working-directory", "torch-cuda", "torch-index-url")

# Never passed to `runner run` or `runner report`: a spec's code could read them.
GITHUB_SECRETS = (
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "ACTIONS_RUNTIME_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
)
PHASES = ("prepare", "train", "push", "publish")

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


def run_runner_cli(
    args: list[str], capture: bool = False, hf_token: bool = True, extra_env: Mapping[str, str] | None = None
) -> tuple[int, str, str]:
    """Run the `runner` console script installed next to this Python, exactly as a user would.

    Its environment never holds a GitHub token, nor a Hugging Face token unless `hf_token` (or
    it is `runner push`). stdout is captured if asked, else streamed to the log; stderr always
    goes to the log as it comes (progress bars included) and its end is also returned."""
    exe = Path(sys.executable).with_name("runner")
    if not exe.exists():
        raise RunError(
            f"the `runner` command is not installed next to {sys.executable}",
            hint="run the action's install step first (or: pip install torch==2.13.0 .)",
            where="action",
        )
    drop = set(GITHUB_SECRETS) | (set() if hf_token or args[:1] == ["push"] else set(HF_TOKEN_VARS))
    child_env = {k: v for k, v in os.environ.items() if k not in drop} | dict(extra_env or {})
    proc = subprocess.Popen(
        [str(exe), *args], stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE, env=child_env
    )
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


def artifact_patterns(out_dir: Path, upload_model: bool) -> list[str]:
    """The upload-artifact `path`: the run folder(s) less checkpoints, and less weights unless asked."""
    excluded = ALWAYS_EXCLUDED + (() if upload_model else MODEL_EXCLUDED)
    return [str(out_dir)] + [f"!{out_dir}/{pattern}" for pattern in excluded]


# --- the phases -------------------------------------------------------------------------------------

# Which inputs each step of action.yml hands its phase (tests/publish/test_action.py checks the two agree).
PHASE_INPUTS = {
    "prepare": tuple(
        "spec set push comment upload-model artifact-name base-metrics baseline baseline-artifact "
        "allow-untrusted-code extra-packages github-token compute".split()
    ),
    "train": ("hf-token",),  # only with compute set (action.yml's expression): the step that starts Jobs
    "push": ("tag", "hf-token"),
    "publish": ("github-token",),
}


def _state_file(env: Mapping[str, str]) -> Path:
    return Path(env.get("RUNNER_TEMP") or ".").resolve() / "runner-action" / "state.json"


def _load(env: Mapping[str, str]) -> dict:
    try:
        return json.loads(_state_file(env).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise RunError(
            "the action's prepare step left no state", hint="run the action's steps in order", where="action"
        ) from None


def _save(state: dict, env: Mapping[str, str]) -> None:
    path = _state_file(env)
    make_folder(path.parent)
    atomic_write_text(path, json.dumps(state, indent=1))


def _footer(spec: str, env: Mapping[str, str]) -> str:
    parts = [f"spec {code(spec)}"]
    if env.get("GITHUB_REPOSITORY") and env.get("GITHUB_RUN_ID"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        parts.append(f"[workflow run]({server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']})")
    if env.get("GITHUB_SHA"):
        parts.append(f"commit {env['GITHUB_SHA'][:7]}")
    return f"\n<sub>{' · '.join(parts)}</sub>\n"


def prepare(env: Mapping[str, str]) -> dict:
    """Inputs checked, untrusted specs refused (annotations at their lines), the baseline found."""
    for name in HF_TOKEN_VARS:
        if env.get(name):
            mask(env[name])
    specs = expand_specs(env.get(ACTION_INPUTS["spec"], ""))
    lines = override_lines(env.get(ACTION_INPUTS["set"], ""))
    flags = {name: _flag(env, name, name == "comment") for name in ("push", "comment", "upload-model")}
    allow = _flag(env, "allow-untrusted-code", False)
    mode = env.get(ACTION_INPUTS["baseline"], "").strip().lower() or "auto"
    if mode not in ("auto", "none"):
        raise SpecError(f"input `baseline` must be auto or none, not {mode!r}", hint="baseline: auto", where="action")
    workspace = Path(env.get("GITHUB_WORKSPACE") or ".")
    compute, fetch_model = env.get(ACTION_INPUTS["compute"], "").strip(), flags["push"] or flags["upload-model"]
    token_given = env.get("INPUT_HF_TOKEN_GIVEN", "").strip().lower() == "true" or any(
        env.get(name) for name in HF_TOKEN_VARS)  # the input (whether set: never the token here), or the step's env
    remote = remote_arguments(compute, token_given, fetch_model)
    base = env.get(ACTION_INPUTS["base-metrics"], "").strip()
    baseline = Baseline()
    if not base and mode == "auto":
        baseline = fetch_baseline(env, env.get(ACTION_INPUTS["baseline-artifact"], "").strip() or "runner-baseline")
    reason = None if allow else untrusted_reason(env)
    root = Path(env.get("RUNNER_TEMP") or ".").resolve() / "runner-runs"
    entries, slugs = [], []
    for spec in specs:
        key = spec_key(spec, env.get("GITHUB_WORKSPACE"))  # from the repository root, whatever working-directory
        slug, n = slug_of(key), 2
        while slug in slugs:
            slug, n = f"{slug_of(key)}-{n}", n + 1
        slugs.append(slug)
        compare, note = explicit_baseline(base, key, slug) if base else baseline.lookup(key)
        compare = str(compare) if compare else None
        # the report names the baseline by where it came from, never by the runner's temporary folder
        compare_name = (base if base else f"{key} from {baseline.label}") if compare else None
        entry = {"spec": spec, "key": key, "slug": slug, "run_dir": str(root / slug), "compare": compare}
        entry |= {"compare_name": compare_name, "comment_key": comment_key(key, lines)}
        entry |= {"note": note, "rc": 0, "body": "", "problems": []}
        findings = check_spec(spec, workspace, env.get(ACTION_INPUTS["extra-packages"], "")) if reason else []
        if findings:
            for command in refusal_commands(spec, findings, reason, workspace):
                say(command, flush=True)
            entry.update(rc=2, body=refusal_body(spec, findings, reason), refused=True)
        entries.append(entry)
    name = artifact_name(env, run_identity([entry["key"] for entry in entries], lines))
    # Hugging Face tokens reach `runner run` only on trusted runs (a private model to download).
    state = {"entries": entries, "set": lines, "root": str(root), "artifact_name": name, "untrusted": reason or ""}
    state |= {"flags": flags, "model_urls": [], "remote": remote}
    _save(state, env)
    return state


def _compare(entry: dict) -> list[str]:
    if not entry["compare"]:
        return []
    named = ["--compare-name", entry["compare_name"]] if entry.get("compare_name") else []
    return ["--compare", entry["compare"], *named]


def train(env: Mapping[str, str], run_cli: RunCli | None = None) -> dict:
    """`runner run` then `runner report` for each spec not refused, without any GitHub token."""
    state = _load(env)
    token = env.get(ACTION_INPUTS["hf-token"], "").strip()  # action.yml gives it to this step only with compute set
    if token:
        mask(token)
    if run_cli is None and state.get("remote") and token:  # the job starts with the hf-token input
        run_cli = functools.partial(run_runner_cli, extra_env={"HF_TOKEN": token})
    elif run_cli is None:  # local training: an HF_TOKEN the workflow put in the step's env, on trusted runs only
        run_cli = functools.partial(run_runner_cli, hf_token=not state["untrusted"])
    overrides = [arg for line in state["set"] for arg in ("--set", line)]
    metrics: dict[str, dict] = {}
    for entry in state["entries"]:
        if entry.get("refused"):
            continue
        spec, run_dir = entry["spec"], Path(entry["run_dir"])
        rc, _, err = run_cli(["run", spec, *overrides, *state.get("remote", []), "--output", str(run_dir)], False)
        if rc != 0:
            for command in annotations(err, spec, state["set"], env):
                say(command, flush=True)
            entry.update(rc=rc, body=failure_body(spec, "run", rc, err))
            continue
        report_rc, report, report_err = run_cli(["report", str(run_dir), "--format", "markdown", *_compare(entry)],
                                                True)
        if report_rc != 0 and report.strip():  # the quality gate failed: the report says why, the step fails
            for line in error_lines(report_err)[:1]:
                say(gate_annotation(line[len("error: "):], spec, env), flush=True)
            entry["gate_failed"] = True
        elif report_rc != 0:
            entry["problems"].append(f"`runner report` failed with exit code {report_rc}; showing the run's report.md.")
            report_file = RunDir(run_dir).report_file
            report = report_file.read_text(encoding="utf-8") if report_file.is_file() else ""
        entry.update(rc=report_rc, body=report.strip())
        run = RunDir(run_dir)
        if run.metrics_file.is_file():
            metrics[spec] = run.headline()
    root = Path(state["root"])
    recorded = {e["key"]: e["slug"] for e in state["entries"] if RunDir(e["run_dir"]).metrics_file.is_file()}
    if recorded:
        write_index(root, recorded, env)
    single = len(state["entries"]) == 1
    run_dir = Path(state["entries"][0]["run_dir"]) if single else root
    upload = state["flags"]["upload-model"]
    set_outputs(
        {
            "run-dir": str(run_dir) if run_dir.is_dir() else "",
            "metrics": metrics,
            # The folder of runs with its index, so that it can serve as the baseline of later runs.
            "artifact-path": "\n".join(artifact_patterns(root, upload)) if recorded or root.is_dir() else "",
            "artifact-name": state["artifact_name"],
        },
        env,
    )
    state["trained"] = True
    _save(state, env)
    return state


def push(env: Mapping[str, str], run_cli: RunCli = run_runner_cli) -> dict:
    """`runner push` for each spec that trained and passed its gate: the only phase with HF_TOKEN."""
    state = _load(env)
    if not state["flags"]["push"]:
        set_outputs({"model-url": ""}, env)
        return state
    tag = env.get(ACTION_INPUTS["tag"], "").strip()
    token = env.get(ACTION_INPUTS["hf-token"], "").strip()
    for secret in (token, *(env.get(name, "") for name in HF_TOKEN_VARS)):
        if secret:
            mask(secret)
    if token and run_cli is run_runner_cli:
        run_cli = functools.partial(run_runner_cli, extra_env={"HF_TOKEN": token})
    for entry in state["entries"]:
        if entry["rc"] != 0 or entry.get("refused"):
            continue
        rc, _, err = run_cli(["push", entry["run_dir"], *(["--tag", tag] if tag else [])], False)
        if rc != 0:
            entry["rc"] = rc
            problem = failure_body(entry["spec"], "push", rc, err).split("\n", 2)[2]
            entry["problems"].append(scrub(problem, {**env, "HF_TOKEN": token}))
        url = RunDir(Path(entry["run_dir"])).hub_url()
        if url:
            state["model_urls"].append(url)
            # The report again, now with the model's Hub link (run.json has it).
            report_rc, report, _ = run_cli(["report", entry["run_dir"], "--format", "markdown", *_compare(entry)],
                                           True)
            if report_rc == 0 and report.strip():
                entry["body"] = report.strip()
    set_outputs({"model-url": "\n".join(state["model_urls"])}, env)
    _save(state, env)
    return state


def publish(env: Mapping[str, str]) -> int:
    """The job summary and one comment per spec; the first failing exit code, else 0."""
    state = _load(env)
    exit_code = 0
    for entry in state["entries"]:
        spec = entry["spec"]
        if not state.get("trained") and not entry.get("refused"):  # the train step died (killed, out of memory)
            entry.update(
                rc=entry["rc"] or 1,
                body=f"### runner: {code(spec)} failed\n\nThe train step did not finish; see the job log.",
            )
        exit_code = exit_code or entry["rc"]
        parts = [entry["body"], *entry["problems"], entry["note"] and f"<sub>{entry['note']}</sub>"]
        body = scrub("\n\n".join(p for p in parts if p).strip() + "\n" + _footer(spec, env), env)
        write_step_summary(body, env)
        if not state["flags"]["comment"]:
            continue
        try:
            result = comment_on_pull_request(body, entry.get("comment_key") or spec, env, summary_fallback=False)
        except RunError as e:
            warning(f"runner: could not comment on the pull request: {e.message} ({e.hint})")
        else:
            if result["url"]:
                say(f"runner: {result['action']} the pull request comment {result['url']}", flush=True)
    return exit_code


def run_action(env: Mapping[str, str] = os.environ, run_cli: RunCli = run_runner_cli) -> int:
    """Every phase in one process (tests, and running the action's logic by hand)."""
    prepare(env)
    train(env, run_cli)
    push(env, run_cli)
    return publish(env)


def main(argv: list[str] | None = None) -> int:
    """`python -m runner.publish.action [PHASE]`: the action's entry point; no phase runs them all."""
    argv = argv or []
    try:
        if not argv:
            return run_action(os.environ)
        if argv[0] not in PHASES:
            raise SpecError(f"unknown phase {argv[0]!r}", hint=f"one of {', '.join(PHASES)}", where="action")
        result = {"prepare": prepare, "train": train, "push": push, "publish": publish}[argv[0]](os.environ)
        return result if isinstance(result, int) else 0
    except RunnerError as e:
        for line in e.lines():
            say(line, file=sys.stderr)
        say(f"::error title=runner::{escape_data(chr(10).join(e.lines()))}", flush=True)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
