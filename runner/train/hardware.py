"""What this machine is, decided once and the same every time: the precision `auto` picks and the
number of CPU threads. Nothing here times anything, so a busy machine decides as a quiet one does
(a timing probe of bf16 against fp32 returned bf16 15 times and fp32 5 times out of 20 under load).
Probes that time the machine live in `runner doctor` and bench/.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# CPU families by (vendor, family[, model]) from /proc/cpuinfo: what their bf16 is. The decision itself
# follows the flags (amx_bf16, avx512_bf16); the table names the family in the reason, and says where the
# flag is there but bf16 does not pay (none known so far: add such a family with pays=False).
CPU_FAMILIES = {
    ("GenuineIntel", 6, 85): ("Cascade Lake / Cooper Lake", True),
    ("GenuineIntel", 6, 143): ("Sapphire Rapids (AMX)", True),
    ("GenuineIntel", 6, 207): ("Emerald Rapids (AMX)", True),
    ("GenuineIntel", 6, 173): ("Granite Rapids (AMX)", True),
    ("GenuineIntel", 6, 174): ("Granite Rapids-D (AMX)", True),
    ("AuthenticAMD", 25): ("AMD Zen 3", True),  # family 19h: Zen 3, except the Zen 4 models below
    ("AuthenticAMD", 26): ("AMD Zen 5", True),
}
# Family 19h holds both: Zen 4 (AVX512-BF16) at models 10h-1Fh, 60h-7Fh and A0h-AFh; Zen 3 (none) elsewhere
ZEN4_MODELS = (range(0x10, 0x20), range(0x60, 0x80), range(0xA0, 0xB0))
NATIVE_BF16 = ("amx_bf16", "avx512_bf16")


def cpu_info() -> dict:
    """/proc/cpuinfo's first CPU: model name, flags, vendor, family and model number."""
    info = {"model": "", "flags": set(), "vendor": "", "family": None, "model_number": None}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    found = {key: re.search(pattern, text, re.MULTILINE) for key, pattern in (
        ("model", r"^model name\s*:\s*(.+)$"), ("flags", r"^(?:flags|Features)\s*:\s*(.*)$"),
        ("vendor", r"^vendor_id\s*:\s*(\S+)"), ("family", r"^cpu family\s*:\s*(\d+)"),
        ("model_number", r"^model\s*:\s*(\d+)"))}
    info["model"] = found["model"].group(1).strip() if found["model"] else ""
    info["flags"] = set(found["flags"].group(1).split()) if found["flags"] else set()
    info["vendor"] = found["vendor"].group(1) if found["vendor"] else ""
    for key in ("family", "model_number"):
        info[key] = int(found[key].group(1)) if found[key] else None
    return info


def cpu_family(info: dict) -> tuple[str, bool] | None:
    vendor, family, model = info.get("vendor"), info.get("family"), info.get("model_number")
    if (vendor, family) == ("AuthenticAMD", 25) and any(model in models for models in ZEN4_MODELS):
        return "AMD Zen 4", CPU_FAMILIES[(vendor, family)][1]
    return CPU_FAMILIES.get((vendor, family, model)) or CPU_FAMILIES.get((vendor, family))


def cpu_precision(info: dict) -> tuple[str, str]:
    """(bf16 or fp32, why) for a CPU described by runner.train.doctor.cpu_info()."""
    native = [flag for flag in NATIVE_BF16 if flag in info.get("flags", set())]
    family = cpu_family(info)
    named = f"{info.get('model') or 'this CPU'}" + (f" ({family[0]})" if family else "")
    if not native:
        return "fp32", (f"auto on the CPU: {named} has no native bf16 (no AMX or AVX512-BF16 in /proc/cpuinfo); "
                        "PyTorch's bf16 matmul would be a slow fallback")
    if family and not family[1]:
        return "fp32", f"auto on the CPU: {named} has {', '.join(native)} but its bf16 does not pay (train/hardware)"
    return "bf16", f"auto on the CPU: {named} has native bf16 ({', '.join(native)} in /proc/cpuinfo): bf16 autocast"


def precision_decision(preference: str, device: str) -> tuple[str, str]:
    """(precision, reason). `auto`: bf16 on CUDA GPUs of compute capability 8.0 and later (Ampere on), fp16
    before; bf16 autocast on a CPU with native bf16; fp32 elsewhere (MPS included)."""
    if preference != "auto":
        return preference, f"train.precision: {preference} in the spec"
    if device == "cuda":
        import torch

        major, minor = torch.cuda.get_device_capability(0)
        name = torch.cuda.get_device_name(0)
        if (major, minor) >= (8, 0):
            return "bf16", f"auto on CUDA: {name} (compute capability {major}.{minor}) has bf16"
        return "fp16", f"auto on CUDA: {name} (compute capability {major}.{minor}) has no bf16: fp16 mixed precision"
    if device == "cpu":
        return cpu_precision(cpu_info())
    return "fp32", f"auto on {device}: fp32"


# ---------------------------------------------------------------------------------------------- threads


def available_cores() -> int:
    """The cores this process may run on (the affinity mask: taskset, cgroups cpusets, container limits)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def thread_decision(setting: int | None) -> tuple[int, str]:
    """(threads, why) for torch's intra-op pool. `train.threads` when set; else the available cores, or
    OMP_NUM_THREADS when the environment sets it. Not the load: the thread count changes the order of
    floating-point sums, so a run's numbers would depend on what else ran beside it."""
    cores = available_cores()
    if setting:
        return int(setting), f"train.threads: {setting} in the spec ({cores} cores available)"
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env), f"OMP_NUM_THREADS={env} ({cores} cores available)"
    return cores, f"{cores} available cores (affinity mask)"


def apply_threads(setting: int | None) -> tuple[int, str]:
    """Set torch's thread count as decided; returns the decision (threads, why)."""
    import torch

    threads, why = thread_decision(setting)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    return threads, f"{why}; OMP_WAIT_POLICY={policy}"


def passive_wait_policy(environ=os.environ) -> None:
    """OpenMP threads sleep instead of spinning while they wait (unless OMP_WAIT_POLICY is set already).
    Read once when the OpenMP runtime loads, so this runs at process start, before torch is imported.
    With two busy processes on 2 cores, spinning threads made training steps up to 10x slower (bench/README)."""
    environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def compile_cache_in_runner_cache(environ=os.environ) -> None:
    """Libraries' caches under runner's cache folder, unless the user set them: torch.compile's
    (TORCHINDUCTOR_CACHE_DIR, not TMPDIR/torchinductor_USER, where a run, or one stopped by a signal, would leave
    it) and matplotlib's font list and config (MPLCONFIGDIR, not $HOME/.cache and $HOME/.config). At process
    start: torch fixes its folder the first time it needs it, which may be before runner compiles anything."""
    from runner.files import cache_root

    for variable, folder in (("TORCHINDUCTOR_CACHE_DIR", "torchinductor"), ("MPLCONFIGDIR", "matplotlib")):
        if not environ.get(variable):
            environ[variable] = str(cache_root() / folder)
