"""examples/workflows/gpu-self-hosted.yml copied into a user's repository as its header says, run
by act on a `[self-hosted, gpu]` runner whose `docker` is a recording stub: the image is built
from the runner repository at the pinned commit (with the chosen CUDA build and its driver
floor), the named container is stopped when the job is cancelled, and the artifact holds the
run record without checkpoints, optimizer state or weights."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.act_runner import ACTION_SHA, PINS, ROOT, Act, log

pytestmark = pytest.mark.act

WORKFLOW = ROOT / "examples" / "workflows" / "gpu-self-hosted.yml"

# `docker` as the workflow calls it: every call recorded; `run IMAGE run SPEC --output DIR` plays
# a finished run in the mounted workspace (or, with DOCKER_STUB_BLOCK, a run that never ends
# until `docker stop NAME`); `run IMAGE report DIR` prints a table.
DOCKER_STUB = r"""#!PYTHON
import json, os, sys, time
from pathlib import Path

args = sys.argv[1:]
state = Path(os.environ["DOCKER_STUB_STATE"])
with open(state / "calls.jsonl", "a") as f:
    f.write(json.dumps({"args": args, "cwd": os.getcwd()}) + "\n")
if args[:1] == ["stop"]:
    for name in [a for a in args[1:] if not a.startswith("--") and not a.isdigit()]:
        (state / f"stopped-{name}").touch()
elif args[:1] == ["run"]:
    name = args[args.index("--name") + 1]
    image_at = next(i for i, a in enumerate(args) if a.startswith("runner-gpu:"))
    command = args[image_at + 1 :]
    if command[0] == "run":
        if os.environ.get("DOCKER_STUB_BLOCK"):
            (state / f"running-{name}").touch()
            while not (state / f"stopped-{name}").exists():
                time.sleep(0.2)
            sys.exit(143)
        run = Path(command[command.index("--output") + 1])
        for file, data in {
            "metrics.json": '{"validation": {"f1_macro": 0.9}}',
            "report.md": "# report",
            "spec.yaml": "version: 1",
            "predictions/validation.jsonl": "{}",
            "model/model.safetensors": "w" * 64,
            "checkpoints/checkpoint-8/model.safetensors": "w" * 64,
            "checkpoints/checkpoint-8/optimizer.pt": "o" * 64,
            "checkpoints/checkpoint-8/trainer_state.json": "{}",
        }.items():
            (run / file).parent.mkdir(parents=True, exist_ok=True)
            (run / file).write_text(data)
    elif command[0] == "report":
        print("### runner: tiny")
"""


def user_repository(act: Act, name: str) -> Path:
    """A repository holding only specs and the workflow, set up as the header says."""
    repo = act.root / name
    (repo / ".github" / "workflows").mkdir(parents=True)
    (repo / "specs").mkdir()
    (repo / "specs" / "tiny.yaml").write_text("version: 1\n")
    text = WORKFLOW.read_text()
    header = text.split("\nname:", 1)[0]
    assert "set RUNNER_REPOSITORY and" in header and "RUNNER_REF below" in header.replace("\n# ", " ")
    text = text.replace("RUNNER_REPOSITORY: OWNER/runner", "RUNNER_REPOSITORY: octo/runner")
    text = text.replace("RUNNER_REF: FULL_COMMIT_SHA", f"RUNNER_REF: {ACTION_SHA}")
    (repo / ".github" / "workflows" / "gpu.yml").write_text(text)
    git = ["git", "-c", "user.email=dev@example.com", "-c", "user.name=dev"]
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "specs"], cwd=repo, check=True)
    return repo


def stub(act: Act, name: str) -> tuple[Path, Path]:
    bin_dir, state = act.root / f"{name}-bin", act.root / f"{name}-state"
    bin_dir.mkdir()
    state.mkdir()
    (bin_dir / "docker").write_text(DOCKER_STUB.replace("PYTHON", sys.executable, 1))
    (bin_dir / "docker").chmod(0o755)
    return bin_dir, state


def calls(state: Path) -> list[list[str]]:
    path = state / "calls.jsonl"
    return [json.loads(line)["args"] for line in path.read_text().splitlines()] if path.exists() else []


def act_args(act: Act, repo: Path, bin_dir: Path, state: Path, inputs: dict, extra_env: dict = ()) -> list[str]:
    event = act.root / f"{repo.name}-event.json"
    event.write_text(json.dumps({"inputs": inputs}))
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "DOCKER_STUB_STATE": str(state), **dict(extra_env)}
    args = [act.act, "workflow_dispatch", "-W", str(repo / ".github" / "workflows" / "gpu.yml"), "-e", str(event)]
    args += ["-P", "self-hosted=-self-hosted", "-P", "gpu=-self-hosted", "--action-offline-mode"]
    args += ["--action-cache-path", str(act.root / f"{repo.name}-act-cache")]
    args += ["--artifact-server-path", str(act.root / f"{repo.name}-artifacts"), "--artifact-server-addr", "127.0.0.1"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        args += ["--artifact-server-port", str(probe.getsockname()[1])]
    for pin, folder in PINS.items():
        args += ["--local-repository", f"{pin}={folder}"]
    for key, value in env.items():
        args += ["--env", f"{key}={value}"]
    return args


@pytest.fixture(scope="module")
def finished(act: Act):
    repo = user_repository(act, "gpu-user")
    bin_dir, state = stub(act, "gpu-user")
    proc = subprocess.run(
        act_args(
            act, repo, bin_dir, state, {"spec": "specs/tiny.yaml", "torch-cuda": "cu130", "upload-model": "false"}
        ),
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return {"proc": proc, "calls": calls(state), "artifacts": act.artifact_files(repo)}


def test_the_image_is_built_from_the_runner_repository_at_the_pinned_commit(finished):
    text = log(finished["proc"])
    assert finished["proc"].returncode == 0, text[-6000:]
    [build] = [c for c in finished["calls"] if c[0] == "build"]
    assert build[-1] == f"https://github.com/octo/runner.git#{ACTION_SHA}"  # the runner's, never the user's "."
    assert "--build-arg" in build and "TORCH_CUDA=cu130" in build and "NVIDIA_DRIVER_MIN=580.65.06" in build
    # The build arguments are the Dockerfile's, and the pair is the driver table's row (docs/docker.md).
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ARG TORCH_CUDA" in dockerfile and "ARG NVIDIA_DRIVER_MIN" in dockerfile
    assert re.search(r"`cu130` \| 13\.0 \| 580\.65\.06 or newer", (ROOT / "docs" / "docker.md").read_text())


def test_training_runs_in_a_named_removed_container_with_the_cache_volume(finished):
    [train] = [c for c in finished["calls"] if c[0] == "run" and "--output" in c]
    assert "--rm" in train and "--gpus" in train
    name = train[train.index("--name") + 1]
    assert re.fullmatch(r"runner-train-\d+-\d+", name)
    assert "runner-hf-cache:/cache" in train
    assert train[-4:-2] == ["run", "specs/tiny.yaml"]


def test_the_artifact_has_the_record_without_checkpoints_or_weights(finished):
    [(name, files)] = finished["artifacts"].items()
    assert name.startswith("runner-gpu-")
    assert {"metrics.json", "report.md", "spec.yaml", "predictions/validation.jsonl"} <= set(files), files
    assert not [f for f in files if "checkpoint" in f or f.endswith((".pt", ".safetensors"))], files


def test_cancelling_the_job_stops_the_named_container(act: Act):
    repo = user_repository(act, "gpu-cancel")
    bin_dir, state = stub(act, "gpu-cancel")
    args = act_args(
        act, repo, bin_dir, state, {"spec": "specs/tiny.yaml", "torch-cuda": "cu126"}, {"DOCKER_STUB_BLOCK": "1"}
    )
    proc = subprocess.Popen(args, cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not list(state.glob("running-*")) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
    running = list(state.glob("running-*"))
    assert running, "the training container never started"
    proc.send_signal(signal.SIGINT)  # what cancelling the job does to act
    out, _ = proc.communicate(timeout=300)
    name = running[0].name.removeprefix("running-")
    recorded = calls(state)
    [build] = [c for c in recorded if c[0] == "build"]
    assert "TORCH_CUDA=cu126" in build and "NVIDIA_DRIVER_MIN=525.60.13" in build  # the default row
    stops = [c for c in recorded if c[0] == "stop"]
    assert stops and name in stops[0], out[-4000:]
    assert (state / f"stopped-{name}").exists()


CALLER = """name: caller
on: [workflow_dispatch, pull_request]
permissions: {}
jobs:
  gpu:
    permissions:
      contents: read
    uses: ./.github/workflows/gpu.yml
    with:
      spec: specs/tiny.yaml
      torch-cuda: cu130
"""


@pytest.mark.parametrize(
    ("event", "payload", "builds"),
    [
        ("workflow_dispatch", {"inputs": {}}, 1),
        ("pull_request", {"pull_request": {"number": 7, "head": {"repo": {"fork": True}}}}, 0),
    ],
)
def test_as_a_reusable_workflow_and_never_for_a_fork(act: Act, event, payload, builds):
    repo = user_repository(act, f"gpu-caller-{event}")
    (repo / ".github" / "workflows" / "caller.yml").write_text(CALLER)
    bin_dir, state = stub(act, repo.name)
    args = act_args(act, repo, bin_dir, state, {})
    args[1] = event
    args[args.index("-W") + 1] = str(repo / ".github" / "workflows" / "caller.yml")
    (act.root / f"{repo.name}-event.json").write_text(json.dumps(payload))
    proc = subprocess.run(args, cwd=repo, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, log(proc)[-4000:]
    recorded = [c for c in calls(state) if c[0] == "build"]
    assert len(recorded) == builds, log(proc)[-4000:]
    if builds:
        assert "TORCH_CUDA=cu130" in recorded[0] and "NVIDIA_DRIVER_MIN=580.65.06" in recorded[0]
