"""The names the action gives what it publishes: a spec's artifact, comment key and run folder, unique within
the repository (a monorepo's projects, a matrix's jobs) and stable from one run to the next; and the `runner run`
arguments its `compute` input stands for (the action reaches Hugging Face Jobs through `runner run --on`)."""

import hashlib
import os
import re
from collections.abc import Mapping

from runner.errors import RunError


def slug_of(spec: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", os.path.splitext(os.path.normpath(spec))[0]).strip("-.") or "spec"


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()[:8]


def run_identity(keys: list[str], overrides: list[str]) -> str:
    """What names this job's runs within the repository, for its artifact: the spec's path from the repository
    root (two projects' `specs/model.yaml` differ), or a digest of several; and a digest of the `set` lines,
    so that a matrix over `set` values of one spec gives each job its own name."""
    identity = slug_of(keys[0]) if len(keys) == 1 else f"runs-{_digest(*sorted(keys))}"
    return identity + (f"-set-{_digest(*overrides)}" if overrides else "")


def comment_key(key: str, overrides: list[str]) -> str:
    """The comment of a spec (its path from the repository root), one per `set` variant in a matrix."""
    return key + (f" set {_digest(*overrides)}" if overrides else "")


def artifact_name(env: Mapping[str, str], identity: str) -> str:
    """`artifact-name`, else runner-JOB-IDENTITY; on a push (a baseline) BASELINE-IDENTITY, one per spec or
    matrix job, all found by a pull request's `baseline: auto` (runner.publish.baseline). A name equal to the
    baseline artifact's (older workflows: `artifact-name: runner-baseline` on push) gets the identity too: in a
    matrix, jobs uploading one name collide (GitHub refuses the second)."""
    baseline = env.get("INPUT_BASELINE_ARTIFACT", "").strip() or "runner-baseline"
    given = env.get("INPUT_ARTIFACT_NAME", "").strip()
    if given and given != baseline:
        return given
    if given or env.get("GITHUB_EVENT_NAME") == "push":
        name = f"{baseline}-{identity}"
    else:
        name = f"runner-{env.get('GITHUB_JOB', 'job')}-{identity}"
    attempt = env.get("GITHUB_RUN_ATTEMPT", "1")
    return name + (f"-attempt{attempt}" if attempt not in ("", "1") else "")


def remote_arguments(compute: str, token_given: bool, fetch_model: bool) -> list[str]:
    """The action's `compute` input as `runner run --on` arguments; the hf-token input is required then (checked
    before any spec is tried, from whether it is set: the step that checks never holds the token). The model
    comes back when it is pushed or uploaded."""
    if not compute:
        return []
    if not token_given:
        raise RunError(
            f"compute: {compute} trains on Hugging Face Jobs, which needs a token, and the hf-token input is not set",
            hint="add `hf-token: ${{ secrets.HF_TOKEN }}` (a write token allowed to run Jobs) under the step's with:",
            where="action",
        )
    return ["--on", compute] + (["--fetch-model"] if fetch_model else [])
