"""GitHub side of a run: the pull request comment, the job summary, step outputs, and the action.

Everything reads the environment the Actions runner provides (GITHUB_*), passed in as `env`
so tests can hand in a dict. The REST API is spoken with urllib; the token is only ever put in
an Authorization header, never in a message.
"""

import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping

from runner import __version__
from runner.console import emit
from runner.errors import RunError
from runner.files import append_text

ACTIONS_BOT = "github-actions[bot]"
HF_TOKEN_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")

# --- workflow commands and files ------------------------------------------------------------


def escape_data(text: str) -> str:
    """The message of a workflow command (`::error ...::MESSAGE`), line breaks kept."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """A property value of a workflow command (`file=...,line=...`)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def notice(message: str) -> None:
    """One `::notice::` line: shown as an annotation on the run, plain text elsewhere."""
    emit(f"::notice::{escape_data(message)}", file=sys.stderr, flush=True)


def warning(message: str) -> None:
    emit(f"::warning::{escape_data(message)}", file=sys.stderr, flush=True)


def mask(value: str) -> None:
    """Ask the runner to hide `value` in every later log line (each line of it, if several)."""
    for line in str(value).splitlines():
        if line.strip():
            emit(f"::add-mask::{line}", flush=True)


def write_step_summary(body: str, env: Mapping[str, str] = os.environ) -> bool:
    """Append markdown to the job summary (after the renderer's last guard); False when not running in Actions.

    A step's summary may hold 1 MiB (GitHub shows none of a larger one): the body is cut to the room left,
    with a note that says where the whole report is, or left out with a notice when there is no room."""
    from runner.record.render import SUMMARY_LIMIT, fit, publish, size_in_bytes

    path = env.get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    try:
        room = SUMMARY_LIMIT - os.path.getsize(path) - 2  # 2: the blank line after it
    except OSError:
        room = SUMMARY_LIMIT
    if room < 2048:
        notice("runner: the job summary is full (GitHub takes 1 MiB a step); this part was left out of it.")
        return True
    body = publish(fit(publish(body), room, size_in_bytes, "bytes"))
    append_text(path, (body if body.endswith("\n") else body + "\n") + "\n")
    return True


def set_outputs(outputs: Mapping[str, object], env: Mapping[str, str] = os.environ) -> bool:
    """Write step outputs to GITHUB_OUTPUT; non-strings as JSON, multi-line values as heredocs."""
    path = env.get("GITHUB_OUTPUT")
    if not path:
        return False
    lines = []
    for name, value in outputs.items():
        if value is None:
            value = ""
        elif not isinstance(value, str):
            value = json.dumps(value, sort_keys=True)
        if "\n" in value or "\r" in value:
            delimiter = f"ghadelimiter_{uuid.uuid4().hex}"
            lines.append(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
        else:
            lines.append(f"{name}={value}\n")
    append_text(path, "".join(lines))
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
    from runner.record.render import GITHUB_COMMENT_LIMIT, fit, length, publish

    marker = comment_marker(key)
    body = publish(body)  # no marker of any spec inside, <details> balanced: only ours goes on top
    # GitHub refuses a longer comment: cut (with a note that says where the whole report is), never refused
    body = publish(fit(body, GITHUB_COMMENT_LIMIT - length(marker) - 64))
    text = f"{marker}\n{body}"
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
