"""Publish a finished run to the Hugging Face Hub: the model (or LoRA adapter), its card, the metrics,
the manifest and the resolved spec, in one commit, optionally tagged.

The token comes only from `HF_TOKEN` or the user's cached login; it is never written or printed.
Nothing in the run folder changes unless the push succeeds; then run.json gains a `hub` record.
"""

from __future__ import annotations

import importlib
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

from runner import __version__
from runner.console import say, warn
from runner.errors import DataError, RunError, SpecError
from runner.record.rundir import CHECKPOINTS, FINISHED, MANIFEST, MERGED, METRICS, MODEL, ONNX, REPORT, SPEC, RunDir

# Files of the run folder that travel with the model, at the root of the repository.
RUN_FILES = (METRICS, MANIFEST, SPEC, REPORT)
# Trainer state that is useless for inference and may be large or pickled: never pushed.
NEVER_PUSHED = ("optimizer.pt", "optimizer.bin", "scheduler.pt", "scaler.pt", "trainer_state.json", "training_args.bin")
NEVER_PUSHED_PREFIXES = ("rng_state", "checkpoint-", "optimizer", "scheduler", ".")

HUB_DEFAULTS = {"repo_id": None, "private": True, "revision": "main", "tag": None, "create_pr": False}
DEFAULT_ATTEMPTS = 4
DEFAULT_BASE_DELAY = 2.0
MAX_DELAY = 60.0


def push_run(
    run_dir: str | Path,
    repo_id: str | None = None,
    tag: str | None = None,
    private: bool | None = None,
    create_pr: bool | None = None,
    revision: str | None = None,
    *,
    endpoint: str | None = None,
    attempts: int = DEFAULT_ATTEMPTS,
    retry_base_delay: float | None = None,
) -> dict:
    """Push RUN_DIR to the Hub in one commit and record where it went in run.json.

    Arguments left as None come from the `hub:` section of RUN_DIR/spec.yaml. `endpoint` defaults to
    `HF_ENDPOINT` read now (not at import). `retry_base_delay` defaults to RUNNER_HUB_RETRY_BASE_DELAY
    or 2 seconds; transient failures are retried `attempts` times in all, doubling the delay.
    Returns {"repo_id", "url", "commit", "tag", "revision"} plus "pr_url" when a pull request was opened.
    """
    from huggingface_hub import HfApi

    run = RunDir(run_dir)
    if run.status() not in (None, FINISHED):
        raise SpecError(
            f"the run is not finished (status: {run.status()})",
            "finish it first: `runner run SPEC --resume`",
            str(run.path),
        )
    settings = hub_settings(run)
    overrides = {"repo_id": repo_id, "tag": tag, "private": private, "create_pr": create_pr, "revision": revision}
    settings.update({key: value for key, value in overrides.items() if value is not None})
    repo_id = check_repo_id(settings["repo_id"])
    retry = retry_command(run.path, settings)
    files = pushable_files(run.path)
    message = commit_message(run)

    if not run.path.is_dir():
        raise SpecError("run folder does not exist", where=str(run.path), hint="pass the folder `runner run` wrote")
    with run.lock("a push"):  # a run still writing the folder, or a second push, must wait
        token = find_token()
        endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or _default_endpoint()).rstrip("/")
        if retry_base_delay is None:
            retry_base_delay = float(os.environ.get("RUNNER_HUB_RETRY_BASE_DELAY", DEFAULT_BASE_DELAY))
        api = HfApi(endpoint=endpoint, token=token, library_name="runner", library_version=__version__)

        def call(what: str, action: Callable):
            return _call_hub(what, action, token=token, retry=retry, attempts=attempts, base_delay=retry_base_delay)

        call("checking the token", api.whoami)
        repo_url = call(
            f"creating {repo_id}", lambda: api.create_repo(repo_id, private=settings["private"], exist_ok=True)
        )
        if settings["revision"] != "main" and not settings["create_pr"]:
            call(
                f"creating branch {settings['revision']}",
                lambda: api.create_branch(repo_id, branch=settings["revision"], exist_ok=True),
            )
        if settings["tag"]:
            refs = call("listing tags", lambda: api.list_repo_refs(repo_id))
            if any(existing.name == settings["tag"] for existing in refs.tags):
                raise RunError(
                    f"tag {settings['tag']!r} already exists on {repo_id}",
                    where="hub.tag",
                    hint=f"choose a new tag (--tag) or delete the old one on the Hub, then run: {retry}",
                )

        def commit():
            # Operations are consumed by a commit attempt, so each attempt builds its own.
            operations = _operations(files)
            return api.create_commit(
                repo_id,
                operations,
                commit_message=message,
                revision=settings["revision"],
                create_pr=settings["create_pr"],
            )

        info = call(f"uploading {len(files)} files to {repo_id}", commit)
        if settings["tag"]:
            # The tag was free a moment ago, so a conflict now means an earlier attempt of this call made it.
            call(
                f"tagging {info.oid[:8]} as {settings['tag']}",
                lambda: api.create_tag(
                    repo_id, tag=settings["tag"], revision=info.oid, tag_message=message, exist_ok=True
                ),
            )

        record = {
            "repo_id": repo_id,
            "url": str(repo_url),
            "commit": info.oid,
            "tag": settings["tag"],
            "revision": settings["revision"],
        }
        if settings["create_pr"]:
            record["pr_url"] = info.pr_url
        _record_push(run, record)
        say(f"Pushed {repo_id} ({len(files)} files): {record['url']}")
        say(
            f"Commit {info.oid}"
            + (f", tagged {settings['tag']}" if settings["tag"] else "")
            + (f", pull request {info.pr_url}" if settings["create_pr"] else "")
        )
        return record


def hub_settings(run: RunDir) -> dict:
    """The `hub:` section of the run's resolved spec, with defaults for anything missing."""
    section = run.spec_values().get("hub") or {}
    if not isinstance(section, dict):
        raise SpecError("hub must be a mapping", where=f"{run.spec_file}: hub")
    return {**HUB_DEFAULTS, **{key: section[key] for key in HUB_DEFAULTS if section.get(key) is not None}}


def check_repo_id(repo_id) -> str:
    """`repo_id` if it names a model repository as `namespace/name`, else a SpecError."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not repo_id:
        raise SpecError(
            "no Hub repository to push to",
            where="hub.repo_id",
            hint="pass --repo your-name/model-name or set `repo_id:` under `hub:` in the spec",
        )
    problem = None
    if not isinstance(repo_id, str) or repo_id.count("/") != 1:
        problem = f"{repo_id!r} is not of the form namespace/name"
    else:
        try:
            validate_repo_id(repo_id)
        except HFValidationError as error:
            problem = str(error).split(". ")[0]
    if problem:
        raise SpecError(
            problem,
            where="hub.repo_id",
            hint="use `your-name/model-name`: letters, digits, '-', '_' and '.', at most 96 characters",
        )
    return repo_id


def pushable_files(run_dir: str | Path) -> list[tuple[str, Path]]:
    """(path in the repository, local path) of every file a push uploads, sorted by repository path.

    The model folder goes to the repository root (model/README.md becomes the model card); merged/ is
    used only when there is no model/. The run's metrics, manifest, spec, report and plots sit next to
    it, and the files of `runner export` (RUN_DIR/onnx/) go to onnx/. Checkpoints, optimizer and scheduler state
    and hidden files are never included.
    """
    run_dir = Path(run_dir)
    model_dir = next((run_dir / name for name in (MODEL, MERGED) if _has_files(run_dir / name)), None)
    if model_dir is None:
        raise SpecError(
            "no saved model to push: model/ is missing or empty",
            where=str(run_dir),
            hint="push a finished run folder (the one `runner run` printed)",
        )
    files = {}
    for path in sorted(model_dir.rglob("*")):
        relative = path.relative_to(model_dir)
        if path.is_file() and not any(_never_pushed(part) for part in relative.parts):
            files[relative.as_posix()] = path
    for path in sorted(run_dir.iterdir()):
        if path.is_file() and (path.name in RUN_FILES or path.suffix == ".png"):
            files[path.name] = path
    onnx = RunDir(run_dir).onnx_dir  # `runner export`: the ONNX models with their tokenizer and config, under onnx/
    for path in sorted(onnx.iterdir()) if onnx.is_dir() else ():
        if path.is_file() and not _never_pushed(path.name):
            files[f"{ONNX}/{path.name}"] = path
    links = [str(path.relative_to(run_dir)) for path in files.values() if _through_a_link(run_dir, path)]
    if links:  # what a link points to may be any file of the user's: a push publishes only the run's own
        raise SpecError(f"{', '.join(links[:3])}{' and more' if len(links) > 3 else ''} in the run folder: a symbolic "
                        "link; push never uploads what a link points to", "put the file itself there (cp "
                        "--remove-destination TARGET LINK), or remove the link", str(run_dir))
    return sorted(files.items())


def _through_a_link(run_dir: Path, path: Path) -> bool:
    parts = path.relative_to(run_dir).parts
    return any(run_dir.joinpath(*parts[:end]).is_symlink() for end in range(1, len(parts) + 1))


def commit_message(run: RunDir) -> str:
    """e.g. "Train emotions: validation f1_macro=0.8312"."""
    name = run.spec_values().get("name") or run.path.resolve().name
    message = f"Train {name}"
    headline = run.headline()
    try:
        message += f": {headline['split']} {headline['name']}={float(headline['value']):.4f}"
    except (KeyError, TypeError, ValueError):
        pass
    return message


def retry_command(run_dir: Path, settings: dict) -> str:
    """The `runner push` command that repeats this push."""
    words = ["runner", "push", str(run_dir), "--repo", str(settings["repo_id"])]
    if settings["tag"]:
        words += ["--tag", settings["tag"]]
    if settings["revision"] != "main":
        words += ["--revision", settings["revision"]]
    if settings["create_pr"]:
        words.append("--create-pr")
    if not settings["private"]:
        words.append("--public")
    return shlex.join(words)


# ---------------------------------------------------------------------------------------------
# Talking to the Hub


def _call_hub(what: str, action: Callable, *, token: str, retry: str, attempts: int, base_delay: float):
    """Run one Hub call, retrying transient failures with exponential backoff; RunError on failure."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except Exception as error:  # noqa: BLE001 - every failure becomes a RunError below
            status = status_of(error)
            if status in (401, 403):
                raise RunError(
                    f"the Hub rejected the token {_token_source()} ({status}) while {what}",
                    hint="check that the token is valid and has write access to the repository's namespace"
                    f" (https://huggingface.co/settings/tokens), then run: {retry}",
                ) from None
            if not _is_transient(error, status):
                raise RunError(
                    f"push failed while {what}: {describe_error(error, token)}",
                    hint=f"fix the cause, then run: {retry}",
                ) from error
            if attempt == attempts:
                raise RunError(
                    f"push failed while {what} after {attempts} attempts: {describe_error(error, token)}",
                    hint=f"the Hub or the network may be down; to retry, run: {retry}",
                ) from error
            delay = min(MAX_DELAY, max(base_delay * 2 ** (attempt - 1), retry_after(error)))
            say(
                f"Hub call failed while {what} ({describe_error(error, token)}); "
                f"retrying in {delay:g}s (attempt {attempt + 1} of {attempts})",
                file=sys.stderr,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


def _transport_errors() -> tuple[type[Exception], ...]:
    """Connection and timeout errors of the HTTP clients huggingface_hub may use (httpx2, httpx, requests)."""
    classes = []
    for module_name, class_names in (
        ("httpx2", ("TransportError",)),
        ("httpx", ("TransportError",)),
        ("requests", ("ConnectionError", "Timeout")),
    ):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        classes.extend(getattr(module, name) for name in class_names if hasattr(module, name))
    return tuple(classes)


def _is_transient(error: Exception, status: int | None) -> bool:
    if status is not None:
        return status == 429 or status >= 500
    from huggingface_hub.errors import OfflineModeIsEnabled

    if isinstance(error, OfflineModeIsEnabled):
        return False
    return isinstance(error, _transport_errors() + (TimeoutError, ConnectionError))


def status_of(error: Exception) -> int | None:
    response = getattr(error, "response", None)
    return getattr(response, "status_code", None)


def retry_after(error: Exception) -> float:
    response = getattr(error, "response", None)
    try:
        return float(response.headers.get("Retry-After", 0))
    except (AttributeError, TypeError, ValueError):
        return 0.0


def describe_error(error: Exception, token: str) -> str:
    """A one-line description of a failed Hub call, with the token masked should it ever appear."""
    status = status_of(error)
    server_message = getattr(error, "server_message", None)
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if status is not None:  # the first line says it all; the rest repeats the URL and request id
        lines = lines[:1]
    text = " ".join(lines) if lines else type(error).__name__
    if status is not None and str(status) not in text:
        text = f"HTTP {status}: {text}"
    if server_message and server_message not in text:
        text += f" ({server_message})"
    if type(error).__name__ not in text:
        text = f"{type(error).__name__}: {text}"
    return text.replace(token, "***") if token else text


def find_token() -> str:
    from huggingface_hub import get_token

    try:
        token = get_token()
    except Exception as error:  # noqa: BLE001 - e.g. a failed OIDC exchange when HF_OIDC_RESOURCE is set
        raise RunError(
            f"could not get a Hugging Face token: {type(error).__name__}: {error}",
            hint="set HF_TOKEN to a write token or run `hf auth login`",
        ) from None
    if not token:
        raise RunError(
            "no Hugging Face token: HF_TOKEN is not set and you are not logged in",
            hint="export HF_TOKEN=<a write token from https://huggingface.co/settings/tokens> or run `hf auth login`",
        )
    return token


def _token_source() -> str:
    return "in HF_TOKEN" if os.environ.get("HF_TOKEN") else "from your cached login (HF_TOKEN is not set)"


def _default_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _operations(files: list[tuple[str, Path]]) -> list:
    from huggingface_hub import CommitOperationAdd

    return [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(path)) for name, path in files]


# ---------------------------------------------------------------------------------------------
# The run folder


def _record_push(run: RunDir, record: dict) -> None:
    """Add the `hub` record to the manifest (atomically); a damaged manifest is left as it is."""
    try:
        run.update_manifest(hub=record)
    except DataError:
        warn(f"{run.manifest_file} cannot be read; the push is not recorded in it")


def _has_files(folder: Path) -> bool:
    return folder.is_dir() and any(path.is_file() for path in folder.rglob("*"))


def _never_pushed(name: str) -> bool:
    return name in NEVER_PUSHED or name == CHECKPOINTS or name.startswith(NEVER_PUSHED_PREFIXES)
