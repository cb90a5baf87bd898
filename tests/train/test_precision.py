"""`precision: auto` decides from what the hardware is, never from a timing; run.json says
what and why; `runner reproduce` trains in the recorded precision."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
from conftest import run_cli, tiny_spec_text, write_spec

import runner.train.hardware
from runner.train.hardware import CPU_FAMILIES, NATIVE_BF16, cpu_info, cpu_precision, precision_decision

AVX2 = {"model": "AMD EPYC", "vendor": "AuthenticAMD", "family": 23, "model_number": 49, "flags": {"avx2", "fma"}}
ZEN5 = {"model": "AMD EPYC", "vendor": "AuthenticAMD", "family": 26, "model_number": 2,
        "flags": {"avx2", "avx512f", "avx512_bf16"}}
SPR = {"model": "Intel Xeon", "vendor": "GenuineIntel", "family": 6, "model_number": 143,
       "flags": {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}}


@pytest.fixture
def busy():
    """Two processes that keep the CPUs busy, as on a shared CI runner."""
    spinners = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(2)]
    time.sleep(0.5)
    yield
    for process in spinners:
        process.kill()
        process.wait()


def test_twenty_decisions_under_load_are_the_same(busy):
    decisions = {precision_decision("auto", "cpu") for _ in range(20)}
    assert len(decisions) == 1
    native = bool(cpu_info()["flags"] & set(NATIVE_BF16))
    assert next(iter(decisions))[0] == ("bf16" if native else "fp32")


def test_twenty_processes_under_load_pick_the_same_precision(busy):
    code = "from runner.train.trainer import choose_precision; print(choose_precision('auto', 'cpu'))"
    picks = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
             for _ in range(20)]
    assert len(set(picks)) == 1 and picks[0] in ("bf16", "fp32")


def test_the_decision_never_times_anything(monkeypatch):
    def no_clock():
        raise AssertionError("precision_decision read a clock")

    monkeypatch.setattr(time, "perf_counter", no_clock)
    monkeypatch.setattr(time, "time", no_clock)
    for info in (AVX2, ZEN5, SPR):
        monkeypatch.setattr(runner.train.hardware, "cpu_info", lambda info=info: info)
        precision_decision("auto", "cpu")


@pytest.mark.parametrize(("info", "expected", "words"), [
    (AVX2, "fp32", "no native bf16"),
    (ZEN5, "bf16", "AMD Zen 5"),
    (SPR, "bf16", "Sapphire Rapids"),
    ({"flags": {"avx512_bf16"}}, "bf16", "this CPU has native bf16"),  # unknown family: the flags decide
    ({}, "fp32", "no native bf16"),  # no /proc/cpuinfo
    # family 19h is Zen 3 (no bf16: EPYC 7003, model 01h) or Zen 4 (AVX512-BF16: EPYC 9004, model 11h)
    ({"vendor": "AuthenticAMD", "family": 25, "model_number": 1, "flags": {"avx2"}}, "fp32", "(AMD Zen 3) has no"),
    ({"vendor": "AuthenticAMD", "family": 25, "model_number": 0x11, "flags": {"avx512_bf16"}}, "bf16",
     "(AMD Zen 4) has native bf16"),
])
def test_cpu_flags_and_family_table(info, expected, words):
    precision, reason = cpu_precision(info)
    assert precision == expected and words in reason


def test_a_family_marked_slow_stays_fp32(monkeypatch):
    monkeypatch.setitem(CPU_FAMILIES, ("AuthenticAMD", 26), ("AMD Zen 5", False))
    precision, reason = cpu_precision(ZEN5)
    assert precision == "fp32" and "does not pay" in reason


@pytest.mark.parametrize(("capability", "expected"), [((9, 0), "bf16"), ((8, 0), "bf16"), ((7, 5), "fp16")])
def test_cuda_by_compute_capability(monkeypatch, capability, expected):
    import torch

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=0: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "Some GPU")
    precision, reason = precision_decision("auto", "cuda")
    assert precision == expected and f"{capability[0]}.{capability[1]}" in reason


def test_the_spec_wins():
    assert precision_decision("fp32", "cpu") == ("fp32", "train.precision: fp32 in the spec")
    assert precision_decision("auto", "mps")[0] == "fp32"


def test_run_records_the_reason_and_reproduce_uses_the_recorded_precision(tiny_model, tiny_data):
    folder = tiny_data.parent.parent
    spec = write_spec(folder, tiny_spec_text(tiny_model))
    result = run_cli("run", str(spec), cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((folder / "run" / "run.json").read_text())
    here = precision_decision("auto", "cpu")
    assert (manifest["results"]["precision"], manifest["results"]["precision_reason"]) == here
    # The run trained in the other precision (another machine, say): the reproduction must use that one.
    other = "fp32" if here[0] == "bf16" else "bf16"
    manifest["results"]["precision"] = manifest["environment"]["precision"] = other
    (folder / "run" / "run.json").write_text(json.dumps(manifest))
    result = run_cli("reproduce", str(folder / "run"), cwd=folder)
    # the recorded metrics came from the other precision, so they may differ (exit 1, "metrics differ")
    assert result.returncode in (0, 1) and "metrics" in result.stdout, result.stderr[-2000:]
    again = json.loads((folder / "run-reproduce" / "run.json").read_text())["results"]
    assert again["precision"] == other and again["precision_reason"] == f"train.precision: {other} in the spec"
