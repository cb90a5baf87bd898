"""`runner doctor` and the GPU preflight of `runner run`.

With `train.device: auto`, an NVIDIA GPU that torch cannot use (a driver too old for the CUDA
version torch was built for, a CPU-only torch, a GPU without kernels in the build) would make the
run train on the CPU without a word. `check_gpu_usable` stops it with the reason and the fix,
unless the spec asks for the CPU; `doctor_lines` describes what this machine offers a run.
Every probe of the machine is a small function of its own, so tests can stand in for a GPU.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from runner.console import say
from runner.errors import RunError
from runner.train.hardware import cpu_info

# The oldest Linux driver that runs a torch built for each CUDA major version (NVIDIA's CUDA
# compatibility guide: minor version compatibility inside a major version).
DRIVER_FLOOR = {11: "450.80.02", 12: "525.60.13", 13: "580.65.06"}
# PyTorch's per-CUDA wheel indexes; torch 2.13 has cu126 (12.6.3: compute capability 5.0-9.0,
# Maxwell to Hopper), cu130 (13.0: 7.5-12.0, Turing to Blackwell) and cu132 (experimental).
WHEEL_INDEX = "https://download.pytorch.org/whl/"
OLD_DRIVER_VARIANT = "cu126"  # the image's default: the most drivers
NEW_GPU_VARIANT = "cu130"  # Blackwell needs a CUDA 13 build
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


@dataclass
class TorchCuda:
    """What torch says about CUDA on this machine."""

    torch_version: str
    cuda_build: str | None  # "12.6"; None for a CPU-only build
    usable: bool  # torch.cuda.is_available()
    error: str = ""  # why not, in torch's words
    driver_cuda: str | None = None  # the newest CUDA the installed driver runs ("12.2")
    arch_list: list[str] = field(default_factory=list)  # kernels in the build: sm_80, compute_90
    devices: list[dict] = field(default_factory=list)  # name, capability (major, minor)


# ---------------------------------------------------------------- probes of the machine


def nvidia_device_nodes() -> list[str]:
    """/dev/nvidia0, /dev/nvidia1, ...: one per GPU the kernel driver (or the container) exposes."""
    return sorted(p for p in glob.glob("/dev/nvidia*") if re.fullmatch(r"/dev/nvidia\d+", p))


def query_nvidia_smi() -> tuple[list[dict], str]:
    """The GPUs nvidia-smi lists (name, driver, capability, memory in MiB), and why none when it fails."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return [], "nvidia-smi not installed"
    fields = ["name", "driver_version", "memory.total", "memory.free", "compute_cap"]
    for query in (fields, fields[:-1]):  # compute_cap needs a driver of 2021 or newer
        try:
            done = subprocess.run(
                [exe, f"--query-gpu={','.join(query)}", "--format=csv,noheader,nounits"],
                check=False,
                capture_output=True,
                text=True,
                timeout=20,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return [], f"nvidia-smi failed: {exc}"
        if done.returncode == 0:
            rows = [[cell.strip() for cell in line.split(",")] for line in done.stdout.splitlines() if line.strip()]
            return [dict(zip(query, row)) for row in rows], ""
    said = (done.stdout + done.stderr).strip().splitlines()
    return [], f"nvidia-smi failed: {said[0] if said else f'exit {done.returncode}'}"


def parse_driver_version(text: str) -> str | None:
    match = re.search(r"Kernel Module(?: for \S+)?\s+(\d+\.\d+(?:\.\d+)?)", text) or re.fullmatch(
        r"\s*(\d+\.\d+(?:\.\d+)?)\s*", text
    )
    return match.group(1) if match else None


def driver_version() -> str | None:
    """The NVIDIA kernel driver's version: nvidia-smi, else what the kernel module says."""
    gpus, _ = query_nvidia_smi()
    if gpus and gpus[0].get("driver_version"):
        return gpus[0]["driver_version"]
    for path in ("/sys/module/nvidia/version", "/proc/driver/nvidia/version"):
        try:
            found = parse_driver_version(Path(path).read_text())
        except OSError:
            continue
        if found:
            return found
    return None


def probe_torch_cuda(memory: bool = False) -> TorchCuda:
    """torch's view; free memory only when asked (it opens a CUDA context on every GPU)."""
    import torch

    state = TorchCuda(torch.__version__, torch.version.cuda, torch.cuda.is_available())
    get_driver = getattr(torch._C, "_cuda_getDriverVersion", None)
    if get_driver:
        try:
            version = get_driver()
            state.driver_cuda = f"{version // 1000}.{version % 1000 // 10}" if version else None
        except RuntimeError:  # no libcuda at all
            state.driver_cuda = None
    if not state.usable:
        if state.cuda_build:
            try:
                torch.cuda.init()
            except (RuntimeError, AssertionError) as exc:
                state.error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return state
    state.arch_list = torch.cuda.get_arch_list()
    for index in range(torch.cuda.device_count()):
        device = {"name": torch.cuda.get_device_name(index), "capability": torch.cuda.get_device_capability(index)}
        if memory:
            try:
                device["free"], device["total"] = torch.cuda.mem_get_info(index)
            except RuntimeError as exc:  # a GPU busy in exclusive mode, or without kernels here
                device["memory_error"] = str(exc).strip().splitlines()[0] if str(exc).strip() else "unknown"
        state.devices.append(device)
    return state


def cuda_hidden_on_purpose() -> bool:
    """CUDA_VISIBLE_DEVICES set to no device: the user chose the CPU."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    return value is not None and value.strip() in ("", "-1", "none", "NoDevFiles")


def nvidia_gpu_evidence() -> str:
    """Why we believe an NVIDIA GPU is here ('' when it is not): device nodes, or nvidia-smi's list."""
    nodes = nvidia_device_nodes()
    if nodes:
        return ", ".join(nodes)
    gpus, _ = query_nvidia_smi()
    return f"nvidia-smi lists {len(gpus)} GPU(s)" if gpus else ""


# ---------------------------------------------------------------- the preflight


def version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


def arch_supported(capability: tuple[int, int], arch_list: list[str]) -> bool:
    """Does the build have kernels for a GPU? SASS sm_XY runs on X.Y and later minors of X; PTX
    compute_XY is compiled by the driver for X.Y and everything newer."""
    if not arch_list:
        return True  # unknown: do not block
    for arch in arch_list:
        match = re.fullmatch(r"(sm|compute)_(\d+)(\d)", arch)
        if not match:
            continue  # sm_90a and the like run on their own GPU only
        kind, major, minor = match.group(1), int(match.group(2)), int(match.group(3))
        if kind == "sm" and major == capability[0] and minor <= capability[1]:
            return True
        if kind == "compute" and (major, minor) <= tuple(capability):
            return True
    return False


def install_hint(variant: str, floor: str) -> str:
    return (
        f"docker build --build-arg TORCH_CUDA={variant} --build-arg NVIDIA_DRIVER_MIN={floor} ., "
        f"or pip install torch==VERSION --index-url {WHEEL_INDEX}{variant}"
    )


def why_gpu_unusable(state: TorchCuda, driver: str | None, evidence: str) -> tuple[str, str] | None:
    """(what is wrong, how to fix it) when torch cannot use the GPU that is here; None when it can."""
    cpu_on_purpose = "or set train.device: cpu to train on the CPU on purpose"
    base = state.torch_version.split("+")[0]
    old_floor = DRIVER_FLOOR[12]
    if not state.cuda_build:
        return (
            f"an NVIDIA GPU is present ({evidence}) but torch {state.torch_version} is a CPU-only build",
            (
                f"install a CUDA build (driver >= {old_floor}): "
                f"pip install torch=={base} --index-url {WHEEL_INDEX}{OLD_DRIVER_VARIANT}, {cpu_on_purpose}"
            ),
        )
    major = int(state.cuda_build.split(".")[0])
    floor = DRIVER_FLOOR.get(major)
    too_old = bool(driver and floor and version_tuple(driver) < version_tuple(floor))
    if not driver and state.driver_cuda:  # no version string, but the CUDA version the driver runs
        too_old = int(state.driver_cuda.split(".")[0]) < major
    driver_text = (
        f"driver {driver}"
        if driver
        else "the driver" + (f" (runs CUDA up to {state.driver_cuda})" if state.driver_cuda else "")
    )
    if not state.usable and too_old:
        if major > 12:
            fix = (
                f"upgrade the NVIDIA driver to {floor} or newer, or use torch built for CUDA 12.6, which needs "
                f"driver >= {old_floor}: " + install_hint(OLD_DRIVER_VARIANT, old_floor).replace("VERSION", base)
            )
        else:
            fix = f"upgrade the NVIDIA driver to {floor} or newer (nvidia-smi shows the installed one)"
        return (
            (
                f"NVIDIA {driver_text} is too old for torch {state.torch_version}, built for CUDA {state.cuda_build} "
                f"(needs driver >= {floor}); torch cannot use the GPU ({evidence})"
            ),
            f"{fix}, {cpu_on_purpose}",
        )
    if not state.usable:
        about = f"; {driver_text}, torch built for CUDA {state.cuda_build}" + (
            f" (needs driver >= {floor})" if floor else ""
        )
        return (
            (
                f"an NVIDIA GPU is present ({evidence}) but torch cannot use it: "
                f"{state.error or 'torch.cuda.is_available() is False'}{about}"
            ),
            "check the GPU with nvidia-smi; in a container, start it with --gpus all (NVIDIA Container Toolkit), "
            + cpu_on_purpose,
        )
    for index, device in enumerate(state.devices):
        capability = tuple(device["capability"])
        if not arch_supported(capability, state.arch_list):
            variant = NEW_GPU_VARIANT if capability >= (7, 5) else OLD_DRIVER_VARIANT
            floor = DRIVER_FLOOR[13] if variant == NEW_GPU_VARIANT else old_floor
            return (
                (
                    f"GPU {index} ({device['name']}, compute capability {capability[0]}.{capability[1]}) has no "
                    "kernels in "
                    f"torch {state.torch_version}, built for CUDA {state.cuda_build} ({' '.join(state.arch_list)})"
                ),
                f"use torch built for {variant} (driver >= {floor}): "
                + install_hint(variant, floor).replace("VERSION", base)
                + f", {cpu_on_purpose}",
            )
    return None


def check_gpu_usable(device_setting: str) -> str:
    """The run's preflight: raise RunError (exit 1) when an NVIDIA GPU is here but torch cannot use
    it, unless train.device asks for the CPU (or MPS) or CUDA_VISIBLE_DEVICES hides every GPU.
    Returns a one-line verdict for `runner doctor`."""
    if device_setting in ("cpu", "mps"):
        return f"skipped: train.device is {device_setting}"
    if cuda_hidden_on_purpose():
        return "skipped: CUDA_VISIBLE_DEVICES hides every GPU"
    evidence = nvidia_gpu_evidence()
    if not evidence:  # torch may still see one (WSL has no /dev/nvidia0): train.choose_device decides
        return "ok: no NVIDIA GPU found (no /dev/nvidia[0-9] device node, nvidia-smi lists none)"
    state = probe_torch_cuda()
    problem = why_gpu_unusable(state, driver_version(), evidence)
    if problem:
        raise RunError(problem[0], problem[1], "train.device")
    return f"ok: torch {state.torch_version} uses {len(state.devices)} NVIDIA GPU(s) (CUDA {state.cuda_build})"


# ---------------------------------------------------------------- the report


def matmul_gflops(dtype, size: int = 512, repeats: int = 3) -> float:
    import torch

    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b  # warm up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best / 1e9


def _lstat(path: Path):
    try:
        return os.lstat(path)
    except OSError as error:
        return error


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symbolic link that does not lead to a folder"
    names = {stat.S_IFREG: "a file", stat.S_IFSOCK: "a socket", stat.S_IFIFO: "a named pipe"}
    return f"{names.get(stat.S_IFMT(mode), 'a device')}, not a folder"


def _shown(path: Path) -> str:  # escaped when it holds a line break or another control character
    return str(path) if str(path).isprintable() else ascii(str(path))


def folder_problem(path: Path) -> tuple[str, str]:
    """(what stops runner from writing into the folder `path`, the start of a hint), ('', '') when nothing
    does: `path` is not a folder (a file, a pipe, a link to nowhere or to a file), is a folder this user cannot
    write, or is missing and the nearest entry above it is not a folder or cannot be written, so that it cannot
    be created. Found with lstat and os.access (the kernel's answer: permissions, ACLs, read-only mounts):
    nothing is created or changed."""
    user = f"this user (uid {os.getuid()})" if hasattr(os, "getuid") else "this user"
    found, missing = _lstat(path), (FileNotFoundError, NotADirectoryError)  # NotADirectory: a file above
    if isinstance(found, missing):
        parent = next(p for p in path.parents if not isinstance(_lstat(p), missing))
        above = _lstat(parent)
        if isinstance(above, OSError):
            return f"cannot be created: {_shown(parent)} cannot be reached ({above.strerror})", ""
        if not os.path.isdir(parent):
            return f"cannot be created: {_shown(parent)} is {_kind(above.st_mode)}", f"move {_shown(parent)} away, or "
        if not os.access(parent, os.W_OK | os.X_OK):
            return (f"cannot be created: {_shown(parent)} is a folder {user} cannot write",
                    f"create {_shown(path)} for this user (mkdir, then chown), or ")
        return "", ""
    if isinstance(found, OSError):  # EACCES on a folder above, ELOOP, a name too long
        return f"cannot be reached ({found.strerror})", ""
    if stat.S_ISLNK(found.st_mode) and not os.path.isdir(path):
        what = "which is not a folder" if os.path.exists(path) else "which does not exist (or cannot be reached)"
        return f"a symbolic link to {_shown(Path(os.readlink(path)))}, {what}", "fix or remove the link, or "
    if not os.path.isdir(path):
        return _kind(found.st_mode), f"move {_shown(path)} away, or "
    if not os.access(path, os.W_OK | os.X_OK):
        return f"a folder {user} cannot write", f"give this user write access (chown or chmod u+w {_shown(path)}), or "
    return "", ""


def folder_lines(label: str, path: Path, variable: str) -> list[str]:
    """`label  path (exists|not created yet; N GB free)` for a folder runner writes into, or `path (problem:
    what; N GB free)` and a hint line naming the environment variable that moves it (folder_problem)."""
    free = ""
    for candidate in (path, *path.parents):  # the nearest that answers (not under a file, reachable)
        with contextlib.suppress(OSError):
            free = f"; {shutil.disk_usage(candidate).free / 1e9:.1f} GB free"
            break
    problem, fix = folder_problem(path)
    if problem:
        return [f"{label:<14}{_shown(path)} (problem: {problem}{free})",
                f"{'':<14}hint: {fix}set {variable} to a folder this user can write"]
    return [f"{label:<14}{_shown(path)} ({'exists' if os.path.isdir(path) else 'not created yet'}{free})"]


def doctor_lines() -> list[str]:
    import torch
    from huggingface_hub import constants as hf

    from runner.files import cache_root

    state = probe_torch_cuda(memory=True)
    build = f"CUDA {state.cuda_build}" if state.cuda_build else "CPU-only build"
    floor = DRIVER_FLOOR.get(int(state.cuda_build.split(".")[0])) if state.cuda_build else None
    lines = [f"{'torch':<14}{state.torch_version} ({build}" + (f", needs NVIDIA driver >= {floor})" if floor else ")")]

    nodes, (gpus, smi_error) = nvidia_device_nodes(), query_nvidia_smi()
    driver = driver_version()
    if nodes or gpus:
        lines.append(
            f"{'NVIDIA GPU':<14}present: "
            + ", ".join(filter(None, [", ".join(nodes), f"nvidia-smi lists {len(gpus)}" if gpus else smi_error]))
        )
        for index, gpu in enumerate(gpus):
            lines.append(
                f"{'':<14}{index}: {gpu.get('name')}, compute capability {gpu.get('compute_cap', '?')}, "
                f"{gpu.get('memory.free')} of {gpu.get('memory.total')} MiB free"
            )
    else:
        lines.append(
            f"{'NVIDIA GPU':<14}none (no /dev/nvidia[0-9] device nodes; {smi_error or 'nvidia-smi lists none'})"
        )
    lines.append(
        f"{'NVIDIA driver':<14}{driver or ('unknown' if nodes or gpus else 'none (no NVIDIA kernel module loaded)')}"
        + (f" (runs CUDA up to {state.driver_cuda})" if state.driver_cuda else "")
    )
    if not state.cuda_build:
        lines.append(f"{'torch + GPU':<14}no: this torch is a CPU-only build")
    elif state.usable:
        lines.append(
            f"{'torch + GPU':<14}usable: {len(state.devices)} device(s); kernels for {' '.join(state.arch_list)}"
        )
        for index, device in enumerate(state.devices):
            major, minor = device["capability"]
            memory = (
                f"{device['free'] / 2**30:.1f} of {device['total'] / 2**30:.1f} GiB free"
                if "free" in device
                else f"free memory unknown ({device.get('memory_error')})"
            )
            lines.append(
                f"{'':<14}cuda:{index} {device['name']}, compute capability {major}.{minor}, {memory}, "
                f"bf16 {'yes' if (major, minor) >= (8, 0) else 'no (fp16 instead)'}"
            )
    else:
        lines.append(f"{'torch + GPU':<14}no" + (f": {state.error}" if state.error else ""))

    cpu = cpu_info()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines.append(
        f"{'CPU':<14}{cpu['model'] or 'unknown model'}, {os.cpu_count()} cores ({cores} usable), "
        f"torch threads {torch.get_num_threads()}, torch kernels {torch.backends.cpu.get_cpu_capability()}"
    )
    if cpu["flags"]:
        lines.append(
            f"{'CPU flags':<14}" + ", ".join(f"{flag} {'yes' if flag in cpu['flags'] else 'no'}" for flag in CPU_FLAGS)
        )
    native = sorted(cpu["flags"] & {"avx512_bf16", "amx_bf16"})
    fp32, bf16 = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
    lines.append(
        f"{'CPU bf16':<14}{'native (' + ', '.join(native) + ')' if native else 'not native (no AVX512-BF16 or AMX)'}; "
        f"512x512 matmul: bf16 {bf16:.1f} GFLOP/s, fp32 {fp32:.1f} GFLOP/s (a timing: changes with the load)"
    )
    from runner.train.hardware import cpu_precision, thread_decision

    lines.append(f"{'precision':<14}{'auto picks ' + cpu_precision(cpu)[0]}: {cpu_precision(cpu)[1]}")
    threads, why = thread_decision(None)
    lines.append(f"{'threads':<14}{threads}: {why}; OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}")

    lines += folder_lines("HF_HOME", Path(hf.HF_HOME), "HF_HOME")
    lines += folder_lines("hub cache", Path(hf.HF_HUB_CACHE), "HF_HUB_CACHE")
    runner_cache = folder_lines("runner cache", cache_root(), "RUNNER_CACHE_DIR")
    if not os.environ.get("RUNNER_CACHE_DIR") and len(runner_cache) == 1:
        runner_cache[0] += "  (set RUNNER_CACHE_DIR to move it)"
    return lines + runner_cache


def check_driver_label(label_floor: str) -> None:
    """The image build's check: the label's driver floor is the one the installed torch needs."""
    import sys

    import torch

    cuda = torch.version.cuda
    needed = DRIVER_FLOOR.get(int(cuda.split(".")[0]), "unknown") if cuda else "none"
    if label_floor != needed:
        sys.exit(
            f"error: NVIDIA_DRIVER_MIN={label_floor}, but torch {torch.__version__} (CUDA {cuda or 'none'}) "
            f"needs NVIDIA driver {needed}\nhint: build with --build-arg NVIDIA_DRIVER_MIN={needed}"
        )
    say(f"NVIDIA_DRIVER_MIN={label_floor} matches torch {torch.__version__} (CUDA {cuda or 'none'})")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m runner.train.doctor")
    parser.add_argument("--check-driver-label", metavar="FLOOR", required=True)
    check_driver_label(parser.parse_args().check_driver_label)
