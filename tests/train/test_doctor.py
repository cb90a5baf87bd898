"""`runner doctor` tells the truth about this machine, and the GPU preflight stops a run that would
train on the CPU beside an NVIDIA GPU that torch cannot use (probes monkeypatched to stand in for one)."""

from __future__ import annotations

import glob
import re
import shutil
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from runner.errors import RunError
from runner.train import doctor

OLD_DRIVER = "535.183.01"  # R535: still on many self-hosted and cloud GPU runners
TOO_OLD_FOR_CUDA13 = "The NVIDIA driver on your system is too old (found version 12020)."


def fake_machine(
    monkeypatch,
    cuda_build: str | None,
    driver: str | None,
    usable: bool = False,
    error: str = "",
    devices: list | None = None,
    arch_list: list | None = None,
    driver_cuda: str | None = "12.2",
) -> None:
    """One NVIDIA GPU (device node and nvidia-smi) and a torch that says what the arguments say."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(doctor, "nvidia_device_nodes", lambda: ["/dev/nvidia0"])
    gpu = {
        "name": "NVIDIA L4",
        "driver_version": driver,
        "memory.total": "23034",
        "memory.free": "22700",
        "compute_cap": "8.9",
    }
    monkeypatch.setattr(
        doctor, "query_nvidia_smi", lambda: ([gpu] if driver else [], "" if driver else "nvidia-smi not installed")
    )
    monkeypatch.setattr(doctor, "driver_version", lambda: driver)
    state = doctor.TorchCuda(
        "2.13.0" + (f"+cu{cuda_build.replace('.', '')}" if cuda_build else "+cpu"),
        cuda_build,
        usable,
        error,
        driver_cuda,
        arch_list or [],
        devices or [],
    )
    monkeypatch.setattr(doctor, "probe_torch_cuda", lambda memory=False: state)


# ---------------------------------------------------------------- doctor on this machine


def test_doctor_reports_this_machine_truthfully(tmp_path, monkeypatch):
    hf_home, runner_cache = tmp_path / "hf", tmp_path / "runner-cache"
    hf_home.mkdir()
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.delenv(name, raising=False)
    done = run_cli("doctor", env={"HF_HOME": str(hf_home), "RUNNER_CACHE_DIR": str(runner_cache)})
    out = done.stdout
    report = {line[:14].strip(): line[14:] for line in out.splitlines() if line[:14].strip()}

    assert report["torch"].startswith(torch.__version__)
    if torch.version.cuda:
        assert f"CUDA {torch.version.cuda}" in report["torch"]
    else:
        assert "CPU-only build" in report["torch"] and "CPU-only" in report["torch + GPU"]

    nodes = [p for p in glob.glob("/dev/nvidia*") if re.fullmatch(r"/dev/nvidia\d+", p)]
    if not nodes and not shutil.which("nvidia-smi"):
        assert report["NVIDIA GPU"].startswith("none") and "nvidia-smi not installed" in report["NVIDIA GPU"]
        assert report["NVIDIA driver"].startswith("none")
        assert report["preflight"] == "ok: no NVIDIA GPU found (no /dev/nvidia[0-9] device node, nvidia-smi lists none)"
        assert done.returncode == 0, done.stderr
    else:  # a GPU machine: the report lists it, and the exit code is the preflight's
        assert report["NVIDIA GPU"].startswith("present")
        assert done.returncode == (0 if torch.cuda.is_available() else 1)

    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    flags = (
        set(re.search(r"^flags\s*:\s*(.*)$", cpuinfo, re.MULTILINE).group(1).split()) if "flags" in cpuinfo else set()
    )
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    if model:
        assert report["CPU"].startswith(model.group(1).strip())
    assert f"torch threads {torch.get_num_threads()}" in report["CPU"]
    assert f"torch kernels {torch.backends.cpu.get_cpu_capability()}" in report["CPU"]
    if flags:
        for flag in ("avx2", "avx512f", "avx512_bf16", "amx_bf16"):
            assert f"{flag} {'yes' if flag in flags else 'no'}" in report["CPU flags"]
        assert report["CPU bf16"].startswith("native" if flags & {"avx512_bf16", "amx_bf16"} else "not native")
    assert re.search(r"bf16 \d+\.\d GFLOP/s, fp32 \d+\.\d GFLOP/s", report["CPU bf16"])

    assert report["HF_HOME"].startswith(f"{hf_home} (exists;")
    assert report["hub cache"].startswith(f"{hf_home / 'hub'} (not created yet;")
    assert report["runner cache"].startswith(f"{runner_cache} (not created yet;")
    assert "Traceback" not in done.stderr


def test_doctor_exits_1_with_the_hint_when_the_gpu_is_unusable(monkeypatch):
    from click.testing import CliRunner

    from runner.cli import main

    fake_machine(monkeypatch, "13.0", OLD_DRIVER, error=TOO_OLD_FOR_CUDA13)
    monkeypatch.setattr(doctor, "doctor_lines", lambda: ["torch         2.13.0"])
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 1
    error, hint = result.stderr.splitlines()[-2:]
    assert error.startswith("error: train.device: NVIDIA driver 535.183.01 is too old") and "CUDA 13.0" in error
    assert hint.startswith("hint: ") and "TORCH_CUDA=cu126" in hint
    assert "Traceback" not in result.output


# ---------------------------------------------------------------- the preflight


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_a_cuda_13_build_on_an_r535_driver_stops_with_the_driver_hint(monkeypatch, device):
    fake_machine(monkeypatch, "13.0", OLD_DRIVER, error=TOO_OLD_FOR_CUDA13)
    with pytest.raises(RunError) as caught:
        doctor.check_gpu_usable(device)
    error = caught.value
    assert error.exit_code == 1 and error.where == "train.device"
    assert (
        "NVIDIA driver 535.183.01 is too old for torch 2.13.0+cu130, built for CUDA 13.0 (needs driver >= 580.65.06)"
        in error.message
    )
    assert "/dev/nvidia0" in error.message
    assert "upgrade the NVIDIA driver to 580.65.06 or newer" in error.hint
    assert "--build-arg TORCH_CUDA=cu126 --build-arg NVIDIA_DRIVER_MIN=525.60.13" in error.hint
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126" in error.hint
    assert "train.device: cpu" in error.hint
    assert len(error.lines()) == 2


def test_the_driver_too_old_is_found_from_torch_when_no_version_string(monkeypatch):
    fake_machine(monkeypatch, "13.0", None, error=TOO_OLD_FOR_CUDA13, driver_cuda="12.2")
    with pytest.raises(RunError, match=r"the driver \(runs CUDA up to 12.2\) is too old .* CUDA 13.0"):
        doctor.check_gpu_usable("auto")


def test_a_cuda_12_build_on_a_driver_below_525_asks_for_a_driver_upgrade(monkeypatch):
    fake_machine(
        monkeypatch, "12.6", "470.256.02", error="The NVIDIA driver on your system is too old (found version 11040)."
    )
    with pytest.raises(RunError) as caught:
        doctor.check_gpu_usable("auto")
    assert (
        "NVIDIA driver 470.256.02 is too old for torch 2.13.0+cu126, built for CUDA 12.6 (needs driver >= 525.60.13)"
        in caught.value.message
    )
    assert caught.value.hint.startswith("upgrade the NVIDIA driver to 525.60.13 or newer")


def test_a_cuda_12_8_build_on_r535_meets_the_floor_so_torchs_own_reason_is_shown(monkeypatch):
    """CUDA 12.x runs on R525+ drivers (minor version compatibility): 535 is not the cause; say what torch said."""
    fake_machine(
        monkeypatch, "12.8", OLD_DRIVER, error="CUDA driver initialization failed, you might not have a CUDA gpu."
    )
    with pytest.raises(RunError) as caught:
        doctor.check_gpu_usable("auto")
    message = caught.value.message
    assert "torch cannot use it: CUDA driver initialization failed" in message
    assert "driver 535.183.01, torch built for CUDA 12.8 (needs driver >= 525.60.13)" in message
    assert "--gpus all" in caught.value.hint and "train.device: cpu" in caught.value.hint


def test_a_cpu_only_torch_beside_a_gpu_stops_with_the_cuda_install_line(monkeypatch):
    fake_machine(monkeypatch, None, OLD_DRIVER)
    with pytest.raises(RunError) as caught:
        doctor.check_gpu_usable("auto")
    assert "torch 2.13.0+cpu is a CPU-only build" in caught.value.message
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126" in caught.value.hint


def test_a_gpu_without_kernels_in_the_build_stops(monkeypatch):
    """A Blackwell GPU (12.0) under the default cu126 image: torch sees it but has no kernels for it."""
    fake_machine(
        monkeypatch,
        "12.6",
        "580.95.05",
        usable=True,
        devices=[{"name": "NVIDIA RTX PRO 6000", "capability": (12, 0)}],
        arch_list=["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"],
    )
    with pytest.raises(RunError) as caught:
        doctor.check_gpu_usable("auto")
    assert "GPU 0 (NVIDIA RTX PRO 6000, compute capability 12.0) has no kernels" in caught.value.message
    assert "TORCH_CUDA=cu130 --build-arg NVIDIA_DRIVER_MIN=580.65.06" in caught.value.hint


def test_a_usable_gpu_passes(monkeypatch):
    fake_machine(
        monkeypatch,
        "12.6",
        OLD_DRIVER,
        usable=True,
        devices=[{"name": "NVIDIA L4", "capability": (8, 9)}],
        arch_list=["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"],
    )
    assert doctor.check_gpu_usable("auto") == "ok: torch 2.13.0+cu126 uses 1 NVIDIA GPU(s) (CUDA 12.6)"


def test_train_device_cpu_is_the_users_choice(monkeypatch):
    fake_machine(monkeypatch, "13.0", OLD_DRIVER, error=TOO_OLD_FOR_CUDA13)
    monkeypatch.setattr(doctor, "probe_torch_cuda", lambda memory=False: pytest.fail("cpu must not probe torch"))
    assert doctor.check_gpu_usable("cpu") == "skipped: train.device is cpu"


def test_cuda_visible_devices_hiding_every_gpu_is_the_users_choice(monkeypatch):
    fake_machine(monkeypatch, "13.0", OLD_DRIVER, error=TOO_OLD_FOR_CUDA13)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert doctor.check_gpu_usable("auto").startswith("skipped")


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_no_nvidia_gpu_leaves_the_choice_to_torch(monkeypatch, device):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(doctor, "nvidia_device_nodes", lambda: [])
    monkeypatch.setattr(doctor, "query_nvidia_smi", lambda: ([], "nvidia-smi not installed"))
    monkeypatch.setattr(doctor, "probe_torch_cuda", lambda memory=False: pytest.fail("no GPU: torch need not be asked"))
    assert (
        doctor.check_gpu_usable(device)
        == "ok: no NVIDIA GPU found (no /dev/nvidia[0-9] device node, nvidia-smi lists none)"
    )


@pytest.mark.parametrize(
    "capability, arch_list, supported",
    [
        ((8, 6), ["sm_80", "sm_90"], True),  # SASS of 8.0 runs on 8.6
        ((8, 0), ["sm_86"], False),  # but not the other way round
        ((12, 0), ["sm_75", "sm_90", "compute_90"], True),  # PTX is compiled for newer GPUs by the driver
        ((12, 0), ["sm_50", "sm_90", "sm_90a"], False),
        ((5, 2), ["sm_75", "sm_80", "sm_100", "sm_120", "compute_120"], False),
        ((10, 0), ["sm_75", "sm_100", "sm_120"], True),
    ],
)
def test_arch_supported(capability, arch_list, supported):
    assert doctor.arch_supported(capability, arch_list) is supported


def test_driver_version_from_the_kernel_module():
    text = ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.183.01  Sun May 12 19:39:15 UTC 2024\n"
            "GCC version: gcc 12\n")
    assert doctor.parse_driver_version(text) == "535.183.01"
    assert (
        doctor.parse_driver_version("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.65.06  Release Build")
        == "580.65.06"
    )
    assert doctor.parse_driver_version("570.133.20\n") == "570.133.20"
    assert doctor.parse_driver_version("nothing here") is None


def test_the_image_check_refuses_a_label_that_does_not_match_torch(capsys):
    expected = doctor.DRIVER_FLOOR[int(torch.version.cuda.split(".")[0])] if torch.version.cuda else "none"
    doctor.check_driver_label(expected)
    assert "matches" in capsys.readouterr().out
    with pytest.raises(SystemExit) as caught:
        doctor.check_driver_label("1.0")
    assert f"hint: build with --build-arg NVIDIA_DRIVER_MIN={expected}" in str(caught.value.code)
