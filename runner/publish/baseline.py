"""Baselines keyed by spec: the record a base-branch run leaves, and finding it again from a pull request.

A run of the action writes `runner-specs.json` at the top of its run folders: one entry per spec,
keyed by the spec's path from the repository root, naming the folder that holds that spec's
run. Uploaded as the base branch's `runner-baseline` artifact, it is the baseline: a pull
request's spec is compared only with the entry of its own path, never with another spec's.

`baseline: auto` finds that artifact through GitHub's REST API (no `gh`): the calling workflow's
own file (GITHUB_WORKFLOW_REF, whatever it is named), its last successful `push` run on the pull
request's base branch, that run's artifact. The archive is unpacked under RUNNER_TEMP, outside
the workspace, so a `baseline/` folder committed in the pull request plays no part. Every way it
can fail ends in a Baseline with `note` saying why, for the comment; none fails the job.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from runner import __version__
from runner.errors import RunError
from runner.files import atomic_write_text, make_folder, new_file, remove
from runner.publish.github import _origin, _request, warning
from runner.record.render import code
from runner.record.rundir import RunDir, metrics_path

INDEX = "runner-specs.json"
MAX_ARCHIVE = 512 * 1024 * 1024  # the baseline holds metrics and reports; weights are not needed
MAX_FILES = 10_000


@dataclass
class Baseline:
    """Where each spec's baseline run folder is, by spec key; or why there is none."""

    folders: dict[str, Path] = field(default_factory=dict)
    note: str = ""  # why there is no baseline at all ("" when found or not asked for)
    source: str = ""  # "run 123 on `main`, commit abc1234" (markdown, names inert)
    label: str = ""  # the same as plain text, for `runner report --compare-name`

    def lookup(self, key: str) -> tuple[Path | None, str]:
        """(run folder to compare with, the comment's line about it)."""
        if self.note:
            return None, f"No baseline: {self.note}."
        if not self.folders and not self.source:
            return None, ""
        folder = self.folders.get(key)
        if folder is None:
            return None, f"No baseline for this spec: the baseline ({self.source}) has no record of {code(key)}."
        return folder, f"Compared with the baseline of {code(key)} from {self.source}."


def spec_key(spec: str, workspace: str | None) -> str:
    """A spec's path from the repository root, as the baseline index keys it."""
    path = os.path.abspath(spec)
    if workspace:
        relative = os.path.relpath(path, os.path.abspath(workspace))
        if not relative.startswith(".."):
            return PurePosixPath(Path(relative).as_posix()).as_posix()
    return Path(os.path.normpath(spec)).as_posix()


def write_index(root: Path, entries: Mapping[str, str], env: Mapping[str, str]) -> Path:
    """runner-specs.json in the folder of runs: {spec key: folder name}, with the commit."""
    make_folder(root)
    index = {"version": 1, "commit": env.get("GITHUB_SHA", ""), "specs": dict(sorted(entries.items()))}
    path = root / INDEX
    atomic_write_text(path, json.dumps(index, indent=2) + "\n")
    return path


def read_index(folder: Path) -> dict[str, Path]:
    """{spec key: run folder} of an unpacked baseline; {} for an old artifact without the index."""
    try:
        index = json.loads((folder / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    found = {}
    for key, name in (index.get("specs") or {}).items():
        if isinstance(key, str) and isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9._-]+", name):
            run = folder / name
            if RunDir(run).metrics_file.is_file():
                found[key] = run
    return found


def _workflow_file(env: Mapping[str, str]) -> str | None:
    """`.github/workflows/x.yml` from GITHUB_WORKFLOW_REF (OWNER/REPO/.github/workflows/x.yml@REF)."""
    match = re.fullmatch(r"[^/]+/[^/]+/(\.github/workflows/[^@]+)@.*", env.get("GITHUB_WORKFLOW_REF", ""))
    return match.group(1) if match else None


def _base_branch(env: Mapping[str, str]) -> str:
    try:
        with open(env.get("GITHUB_EVENT_PATH") or "", encoding="utf-8") as f:
            event = json.load(f)
        ref = ((event.get("pull_request") or {}).get("base") or {}).get("ref")
    except (OSError, ValueError, AttributeError):
        ref = None
    return ref or env.get("GITHUB_BASE_REF", "")


def _download(url: str, api: str, token: str) -> bytes:
    """The archive at `url`: the token only to the API host; a redirect is followed without it."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    headers = {"User-Agent": f"runner/{__version__}", "Accept": "application/vnd.github+json"}
    if _origin(url) == _origin(api):
        headers["Authorization"] = f"Bearer {token}"
    for _ in range(3):
        try:
            with opener.open(urllib.request.Request(url, headers=headers), timeout=60) as response:
                data = response.read(MAX_ARCHIVE + 1)
                if len(data) > MAX_ARCHIVE:
                    raise RunError("the baseline artifact is over 512 MB", "upload it without weights", "baseline")
                return data
        except urllib.error.HTTPError as e:
            location = e.headers.get("Location") if e.code in (301, 302, 303, 307, 308) else None
            if not location:
                raise RunError(
                    f"GitHub answered {e.code} to the artifact download", "re-run the job", "baseline"
                ) from None
            url = urllib.parse.urljoin(url, location)
            headers = (
                {k: v for k, v in headers.items() if k != "Authorization"} if _origin(url) != _origin(api) else headers
            )
        except (urllib.error.URLError, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            raise RunError(f"cannot download the baseline artifact: {reason}", "re-run", "baseline") from None
    raise RunError("too many redirects downloading the baseline artifact", "re-run the job", "baseline")


def _unpack(data: bytes, folder: Path) -> None:
    """The archive into a fresh `folder`; entries that would land outside it are skipped."""
    remove(folder)
    make_folder(folder)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = archive.infolist()[:MAX_FILES]
        for member in members:
            name = PurePosixPath(member.filename.replace("\\", "/"))
            if member.is_dir() or name.is_absolute() or ".." in name.parts or not name.parts:
                continue
            target = folder.joinpath(*name.parts)
            make_folder(target.parent)
            with archive.open(member) as source, new_file(target) as out:
                shutil.copyfileobj(source, out)


def is_baseline_artifact(name, artifact: str) -> bool:
    """`artifact` itself (one job's baseline, as before) or `artifact-SPEC` (each spec's, or each matrix job's)."""
    return isinstance(name, str) and (name == artifact or name.startswith(artifact + "-"))


def fetch_baseline(env: Mapping[str, str], artifact: str = "runner-baseline") -> Baseline:
    """`baseline: auto`: the base branch's last baseline of this workflow, unpacked under RUNNER_TEMP.

    The baseline is every artifact of that push run named `artifact` or `artifact-...`: a matrix's jobs each
    upload their own (GitHub refuses a second upload under one name), and their indexes are merged by spec.
    Only for pull request events; anything else (a push is the baseline) asks for nothing."""
    if env.get("GITHUB_EVENT_NAME", "") not in ("pull_request", "pull_request_target"):
        return Baseline()
    workflow = _workflow_file(env)
    branch = _base_branch(env)
    api = env.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
    repo, token = env.get("GITHUB_REPOSITORY", ""), env.get("GITHUB_TOKEN", "")
    if not workflow:
        return Baseline(note="GITHUB_WORKFLOW_REF does not name the workflow file, so its runs cannot be looked up")
    if not branch or not repo or not token:
        missing = "the base branch" if not branch else "GITHUB_REPOSITORY" if not repo else "a token (github-token)"
        return Baseline(note=f"{missing} is not known, so the base branch's runs cannot be looked up")
    file = PurePosixPath(workflow).name
    query = urllib.parse.urlencode({"branch": branch, "event": "push", "status": "success", "per_page": 20})
    try:
        status, _, data = _request(
            "GET", f"{api}/repos/{repo}/actions/workflows/{urllib.parse.quote(file)}/runs?{query}", token
        )
        if status != 200:
            why = {
                401: " (the token was rejected)",
                403: " (the job needs `permissions: actions: read`)",
                404: " (no workflow of that file name in the repository yet: new or renamed?)",
            }.get(status, "")
            return Baseline(note=f"GitHub answered {status} to listing the runs of {code(workflow)}{why}")
        runs = (data or {}).get("workflow_runs") or []
        if not runs:
            return Baseline(note=f"{code(workflow)} has no successful push run on {code(branch)} yet")
        for run in runs:
            status, _, listing = _request(
                "GET", f"{api}/repos/{repo}/actions/runs/{int(run['id'])}/artifacts?per_page=100", token
            )
            found = sorted(
                (a for a in (listing or {}).get("artifacts") or []
                 if is_baseline_artifact(a.get("name"), artifact) and not a.get("expired")),
                key=lambda a: str(a.get("name")),
            )
            if status == 200 and found:
                break
        else:
            where = f"the last {len(runs)} successful push runs of {code(workflow)} on {code(branch)}"
            return Baseline(note=f"no artifact {code(artifact)} (or {code(artifact + '-...')}) in {where}")
        folder = Path(env.get("RUNNER_TEMP") or os.path.expanduser("~/.cache")).resolve() / "runner-baseline"
        remove(folder)
        folders: dict[str, Path] = {}
        for number, item in enumerate(found):
            unpacked = folder / str(number)  # not the artifact's name: a folder name of our own
            _unpack(_download(item["archive_download_url"], api, token), unpacked)
            for key, run_folder in read_index(unpacked).items():
                folders.setdefault(key, run_folder)  # one spec in two artifacts: the first by name
    except RunError as e:
        return Baseline(note=e.message)
    except (zipfile.BadZipFile, KeyError, TypeError, ValueError):
        return Baseline(note=f"an artifact {code(artifact)} of run {run.get('id')} is not a readable zip archive")
    commit = f", commit {str(run.get('head_sha'))[:7]}" if run.get("head_sha") else ""
    source = f"run {run['id']} on {code(branch)}{commit}"
    if not folders:
        return Baseline(note=f"the artifact {code(artifact)} of {source} has no {INDEX} (made by an older runner?)")
    return Baseline(folders=folders, source=source, label=f"run {run['id']} on {branch}{commit}")


def explicit_baseline(base: str, key: str, slug: str) -> tuple[str | None, str]:
    """`base-metrics` as given: a folder of runs with an index (keyed by spec), a run folder or a
    metrics.json (for every spec: the caller chose it), or a folder holding this spec's run."""
    path = Path(base)
    if (path / INDEX).is_file():
        folder = read_index(path).get(key)
        if folder is None:
            return None, f"No baseline for this spec: {code(base)} has no record of {code(key)}."
        return str(folder), ""
    if path.is_file() or metrics_path(path).is_file():
        return str(path), ""
    if metrics_path(path / slug).is_file():
        return str(path / slug), ""
    warning(f"runner: no baseline metrics at {base} for {slug}; reporting without a comparison.")
    return None, f"No baseline for this spec: nothing for it in {code(base)}."
