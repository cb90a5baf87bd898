"""How a job that `runner run --on hf-jobs` started is found again: by its labels, never by its command's shape.

    runner-job   KEY: its folder in the jobs repository is jobs/KEY (KEY as job_key makes it, checked)
    runner-repo  the jobs repository, `owner/name` written `owner--name` (a repository id never holds `--`)

A job started before runner-repo existed names its repository in its command, `runner jobs exec REPO FOLDER`;
whenever the command has that shape, its folder must be the label's.
"""

from __future__ import annotations

import re
import secrets
import time

from runner.errors import SpecError

LABEL, REPO_LABEL = "runner-job", "runner-repo"
# job_key's names: UTC time, the spec's name made plain, 6 hex digits (never a path: no `/`, never `..` alone)
KEY_PATTERN = re.compile(r"[0-9]{8}-[0-9]{6}-[A-Za-z0-9_.-]{0,40}-[0-9a-f]{6}")
BACKEND = "hf-jobs"


def job_key(name: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{stamp}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)[:40]}-{secrets.token_hex(3)}"


def job_labels(key: str, repo_id: str) -> dict[str, str]:
    return {LABEL: key, REPO_LABEL: repo_id.replace("/", "--", 1)}


def check_folder_name(folder) -> str:
    """A job's folder in the jobs repository, as job_key made it: `jobs/KEY`, never an absolute path or `..`."""
    if not (isinstance(folder, str) and folder.startswith("jobs/") and KEY_PATTERN.fullmatch(folder[5:])):
        raise SpecError(f"'{str(folder)[:120]}' is not a job folder that `runner run --on {BACKEND}` made",
                        "it is jobs/<UTC time>-<name>-<6 hex digits> in the jobs repository")
    return folder


def job_location(job) -> tuple[str, str]:
    """(repo, folder) of a runner job, from its labels (checked)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    labels = job.labels if isinstance(job.labels, dict) else {}
    key, repo = labels.get(LABEL), labels.get(REPO_LABEL)
    command = [str(part) for part in (job.command or [])]
    legacy = command[1:3] == ["jobs", "exec"] and len(command) >= 5  # runner jobs exec REPO FOLDER
    if key is None or (repo is None and not legacy):
        raise SpecError(f"job {job.id} was not started by `runner run --on {BACKEND}`",
                        f"give the id of a job that runner started (it has the labels {LABEL} and {REPO_LABEL})")
    hint = "its record cannot be trusted to be where runner puts one; give the id of a job that runner started"
    if not (isinstance(key, str) and KEY_PATTERN.fullmatch(key)):
        raise SpecError(f"job {job.id}: its label {LABEL}={str(key)[:120]!r} is not a job folder's key "
                        f"that `runner run --on {BACKEND}` made", hint)
    folder = f"jobs/{key}"
    if legacy and command[4] != folder:
        raise SpecError(f"job {job.id}: its command names the folder {command[4][:120]!r}, not {folder!r} "
                        f"of its label {LABEL}", hint)
    if repo is not None:
        repo = str(repo).replace("--", "/", 1) if "/" not in str(repo) else str(repo)
    else:
        repo = command[3]
    try:
        validate_repo_id(repo)
    except HFValidationError:
        raise SpecError(f"job {job.id}: {repo[:120]!r} (its {REPO_LABEL} label or command) is not a Hub repository",
                        hint) from None
    return repo, folder
