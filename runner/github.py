"""GitHub side of a run: the pull request comment, the job summary, step outputs, and the action.

Everything reads the environment the Actions runner provides (GITHUB_*), passed in as `env`
so tests can hand in a dict. The REST API is spoken with urllib; the token is only ever put in
an Authorization header, never in a message.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path

from runner import __version__
from runner.errors import RunError, RunnerError, SpecError

ACTIONS_BOT = "github-actions[bot]"
HF_TOKEN_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")

# action.yml passes every input to the Python step through these variables (composite actions
# do not set INPUT_* themselves); tests/test_action.py checks that the two agree.
ACTION_INPUTS = {
    "spec": "INPUT_SPEC",
    "push": "INPUT_PUSH",
    "comment": "INPUT_COMMENT",
    "set": "INPUT_SET",
    "base-metrics": "INPUT_BASE_METRICS",
    "tag": "INPUT_TAG",
    "upload-model": "INPUT_UPLOAD_MODEL",
    "artifact-name": "INPUT_ARTIFACT_NAME",
    "github-token": "GITHUB_TOKEN",
}

# What the Python step writes to GITHUB_OUTPUT; action.yml maps these to its outputs.
ACTION_OUTPUTS = ("run-dir", "metrics", "model-url", "artifact-path", "artifact-name")

# (args, capture_stdout) -> (exit code, captured stdout)
RunCli = Callable[[list[str], bool], tuple[int, str]]


# --- workflow commands and files ------------------------------------------------------------


def _escape_command(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def notice(message: str) -> None:
    """One `::notice::` line: shown as an annotation on the run, plain text elsewhere."""
    print(f"::notice::{_escape_command(message)}", file=sys.stderr, flush=True)


def warning(message: str) -> None:
    print(f"::warning::{_escape_command(message)}", file=sys.stderr, flush=True)


def mask(value: str) -> None:
    """Ask the runner to hide `value` in every later log line (each line of it, if several)."""
    for line in str(value).splitlines():
        if line.strip():
            print(f"::add-mask::{line}", flush=True)


def write_step_summary(body: str, env: Mapping[str, str] = os.environ) -> bool:
    """Append markdown to the job summary; False when not running in Actions."""
    path = env.get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    with open(path, "a", encoding="utf-8") as f:
        f.write(body if body.endswith("\n") else body + "\n")
        f.write("\n")
    return True


def set_outputs(outputs: Mapping[str, object], env: Mapping[str, str] = os.environ) -> bool:
    """Write step outputs to GITHUB_OUTPUT; non-strings as JSON, multi-line values as heredocs."""
    path = env.get("GITHUB_OUTPUT")
    if not path:
        return False
    with open(path, "a", encoding="utf-8") as f:
        for name, value in outputs.items():
            if value is None:
                value = ""
            elif not isinstance(value, str):
                value = json.dumps(value, sort_keys=True)
            if "\n" in value or "\r" in value:
                delimiter = f"ghadelimiter_{uuid.uuid4().hex}"
                f.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
            else:
                f.write(f"{name}={value}\n")
    return True


# --- the REST API -----------------------------------------------------------------------------


def _request(method: str, url: str, token: str, payload: dict | None = None):
    data = json.dumps(payload).encode() if payload is not None else None
    headers = {
        "Accept": "application/vnd.github+json",
        "Authorization": f"Bearer {token}",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": f"runner/{__version__}",
    }
    if data is not None:
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, _json(response.read())
    except urllib.error.HTTPError as e:
        return e.code, e.headers, _json(e.read())
    except (urllib.error.URLError, TimeoutError) as e:
        reason = getattr(e, "reason", e)
        raise RunError(
            f"cannot reach the GitHub API at {_origin(url)}: {reason}",
            hint="check GITHUB_API_URL and the runner's network access",
            where="github",
        ) from None


def _json(raw: bytes):
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return None


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _api_error(what: str, status: int, data) -> RunError:
    detail = data.get("message") if isinstance(data, dict) else None
    message = f"GitHub answered {status} to {what}" + (f": {detail}" if detail else "")
    if status == 401:
        hint = "the token was rejected; pass a valid token as GITHUB_TOKEN (the action's github-token input)"
    elif status == 429 or (status == 403 and "rate limit" in str(detail).lower()):
        hint = "rate limited; re-run the job later"
    else:
        hint = "re-run the job; if it keeps failing, check https://www.githubstatus.com"
    return RunError(message, hint=hint, where="github")


def _next_link(headers) -> str | None:
    match = re.search(r'<([^>]+)>\s*;\s*rel="next"', headers.get("Link", "") if headers else "")
    return match.group(1) if match else None


def pull_request_number(env: Mapping[str, str] = os.environ) -> int | None:
    """The pull request (or issue) the triggering event is about, from GITHUB_EVENT_PATH."""
    path = env.get("GITHUB_EVENT_PATH")
    if not path or not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        event = json.load(f)
    for key in ("pull_request", "issue"):
        number = (event.get(key) or {}).get("number")
        if isinstance(number, int):
            return number
    return None


def comment_marker(key: str) -> str:
    """The hidden line that identifies our comment for `key` (a spec path) on later runs."""
    key = re.sub(r"\s+", " ", key.strip()).replace(">", "&gt;")
    return f"<!-- runner:comment key={key} -->"


def _token_login(api: str, token: str) -> str:
    status, _, data = _request("GET", f"{api}/user", token)
    if status == 200 and isinstance(data, dict) and data.get("login"):
        return data["login"]
    if status in (403, 404):
        # The Actions token is an app installation token: /user refuses it, and its comments
        # are authored by github-actions[bot].
        return ACTIONS_BOT
    raise _api_error("GET /user", status, data)


def _find_comment(api: str, repo: str, number: int, token: str, marker: str, login: str):
    """Our earlier comment: carries the marker and was written by this token's identity.

    Returns (comment or None, status of the first failed listing or None)."""
    url = f"{api}/repos/{repo}/issues/{number}/comments?per_page=100&page=1"
    while url:
        status, headers, data = _request("GET", url, token)
        if status != 200:
            return None, status
        for comment in data or []:
            author = (comment.get("user") or {}).get("login")
            if author == login and marker in (comment.get("body") or ""):
                return comment, None
        url = _next_link(headers)
        if url and _origin(url) != _origin(api):
            # The token goes with every request: never follow a link off the API host.
            raise RunError(
                f"GitHub's pagination link points to another host ({_origin(url)})",
                hint="check GITHUB_API_URL",
                where="github",
            )
    return None, None


def comment_on_pull_request(
    body: str, key: str, env: Mapping[str, str] = os.environ, *, summary_fallback: bool = True
) -> dict:
    """Create or update this run's comment on the pull request; never fails for lack of access.

    Not in a pull request, or a token that may not write (a fork's pull request: 403/404): the
    body goes to the job summary (unless summary_fallback is False, for callers that already
    wrote it) and a one-line notice says so. Other API failures raise RunError.
    Returns {"action": "created" | "updated" | "summary-only", "url": ..., "comment_id": ...}.
    """
    marker = comment_marker(key)
    text = body if marker in body else f"{marker}\n{body}"
    api = env.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
    repo = env.get("GITHUB_REPOSITORY", "")
    token = env.get("GITHUB_TOKEN", "")
    number = pull_request_number(env)

    def summary_only(reason: str) -> dict:
        if summary_fallback and not write_step_summary(body, env):
            where = "GITHUB_STEP_SUMMARY is not set either, so the metrics were not posted"
        else:
            where = "the metrics are in the job summary instead"
        notice(f"runner: {reason}; {where}.")
        return {"action": "summary-only", "url": None, "comment_id": None}

    if number is None:
        return summary_only("not a pull request event, so no comment")
    if not repo or not token:
        missing = "GITHUB_REPOSITORY" if not repo else "GITHUB_TOKEN"
        return summary_only(f"{missing} is not set, so no comment on pull request #{number}")

    cannot_write = (
        f"the token cannot comment on pull request #{number} (HTTP {{}}; a pull request from a "
        "fork gets a read-only token)"
    )
    login = _token_login(api, token)
    existing, status = _find_comment(api, repo, number, token, marker, login)
    if status in (403, 404):
        return summary_only(cannot_write.format(status))
    if status is not None:
        raise _api_error(f"GET /repos/{repo}/issues/{number}/comments", status, None)

    if existing:
        method, url, action = "PATCH", f"{api}/repos/{repo}/issues/comments/{existing['id']}", "updated"
    else:
        method, url, action = "POST", f"{api}/repos/{repo}/issues/{number}/comments", "created"
    status, _, data = _request(method, url, token, {"body": text})
    if status in (403, 404):
        return summary_only(cannot_write.format(status))
    if status not in (200, 201):
        raise _api_error(f"{method} {urllib.parse.urlsplit(url).path}", status, data)
    return {"action": action, "url": data.get("html_url"), "comment_id": data.get("id")}


# --- the composite action's step ------------------------------------------------------------


def run_runner_cli(args: list[str], capture: bool = False) -> tuple[int, str]:
    """Run the `runner` console script, exactly as a user would; stdout captured if asked."""
    # The script installed next to this interpreter first: another `runner` may be on PATH.
    exe = str(Path(sys.executable).with_name("runner"))
    if not os.path.exists(exe):
        exe = shutil.which("runner") or exe
    if not os.path.exists(exe):
        raise RunError(
            "the `runner` command is not installed in this environment",
            hint="install it first: pip install torch==2.13.0 .",
            where="action",
        )
    proc = subprocess.run([exe, *args], stdout=subprocess.PIPE if capture else None, text=True)
    return proc.returncode, proc.stdout or ""


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


def parse_overrides(text: str) -> list[str]:
    """The `set` input, one key=value per line, as `--set` arguments for `runner run`."""
    args: list[str] = []
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
        args += ["--set", line]
    return args


def _slug(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", os.path.splitext(os.path.normpath(spec))[0]).strip("-.") or "spec"


def _baseline(base: str, slug: str) -> Path | None:
    """What to compare against: a metrics.json or run folder as given, or the spec's own
    folder inside a folder of runs (a multi-spec artifact from the base branch)."""
    if not base:
        return None
    path = Path(base)
    if path.is_file() or (path / "metrics.json").is_file():
        return path
    if (path / slug / "metrics.json").is_file():
        return path / slug
    warning(f"runner: no baseline metrics at {base} for {slug}; reporting without a comparison.")
    return None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _footer(spec: str, env: Mapping[str, str]) -> str:
    parts = [f"spec `{spec}`"]
    if env.get("GITHUB_REPOSITORY") and env.get("GITHUB_RUN_ID"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        parts.append(f"[workflow run]({server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']})")
    if env.get("GITHUB_SHA"):
        parts.append(f"commit {env['GITHUB_SHA'][:7]}")
    return f"\n<sub>{' · '.join(parts)}</sub>\n"


def _train_and_report(
    spec: str, run_dir: Path, overrides: list[str], push: bool, tag: str, compare: Path | None, run_cli: RunCli
) -> tuple[int, str]:
    """`runner run`, then `runner push` if asked, then `runner report`: (exit code, markdown)."""
    rc, _ = run_cli(["run", spec, *overrides, "--output", str(run_dir)], False)
    if rc != 0:
        return rc, f"### runner: `{spec}` failed\n\n`runner run` failed with exit code {rc}; see the job log."
    problems = []
    if push:
        rc, _ = run_cli(["push", str(run_dir), *(["--tag", tag] if tag else [])], False)
        if rc != 0:
            problems.append(f"`runner push` failed with exit code {rc}; see the job log.")
    report_rc, report = run_cli(
        ["report", str(run_dir), "--format", "markdown", *(["--compare", str(compare)] if compare else [])], True
    )
    if report_rc != 0:
        problems.append(f"`runner report` failed with exit code {report_rc}; showing the run's report.md.")
        report = (run_dir / "report.md").read_text(encoding="utf-8") if (run_dir / "report.md").is_file() else ""
        rc = rc or report_rc
    return rc, "\n\n".join([report.strip(), *problems]).strip()


def run_action(env: Mapping[str, str] = os.environ, run_cli: RunCli = run_runner_cli) -> int:
    """The composite action's step: train every spec, report, comment, push, set outputs.

    Runs in the action's working-directory. Returns the first failing exit code, else 0;
    a spec that fails does not stop the others.
    """
    for name in HF_TOKEN_VARS:
        if env.get(name):
            mask(env[name])
    specs = expand_specs(env.get(ACTION_INPUTS["spec"], ""))
    overrides = parse_overrides(env.get(ACTION_INPUTS["set"], ""))
    push = _flag(env, "push", False)
    comment = _flag(env, "comment", True)
    upload_model = _flag(env, "upload-model", False)
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
        rc, report = _train_and_report(spec, run_dir, overrides, push, tag, compare, run_cli)
        exit_code = exit_code or rc
        if (run_dir / "metrics.json").is_file():
            metrics[spec] = _read_json(run_dir / "metrics.json").get("headline") or {}
        hub_url = (_read_json(run_dir / "run.json").get("hub") or {}).get("url")
        if hub_url:
            model_urls.append(hub_url)
        body = report.strip() + "\n" + _footer(spec, env)

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
    patterns = [str(out_dir)] + ([] if upload_model else [f"!{out_dir}/**/model/**"])
    name = env.get(ACTION_INPUTS["artifact-name"], "").strip() or "-".join(
        ["runner", env.get("GITHUB_JOB", "job"), slugs[0] if single else "runs"]
        + ([f"attempt{env['GITHUB_RUN_ATTEMPT']}"] if env.get("GITHUB_RUN_ATTEMPT", "1") != "1" else [])
    )
    set_outputs(
        {
            "run-dir": str(out_dir),
            "metrics": metrics,
            "model-url": "\n".join(model_urls),
            "artifact-path": "\n".join(patterns),
            "artifact-name": name,
        },
        env,
    )
    return exit_code


def main() -> int:
    """`python -m runner.github`: the action's entry point."""
    try:
        return run_action(os.environ)
    except RunnerError as e:
        for line in e.lines():
            print(line, file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
