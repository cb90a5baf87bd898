"""The thread count and OpenMP wait policy are chosen deliberately, printed and recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import run_cli, tiny_spec_text, write_spec

from runner.train.hardware import available_cores, passive_wait_policy, thread_decision


def test_threads_follow_the_affinity_mask(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    threads, why = thread_decision(None)
    assert threads == len(os.sched_getaffinity(0)) == available_cores() and "affinity" in why


def test_a_narrower_affinity_mask_means_fewer_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert thread_decision(None)[0] == 1


def test_the_spec_then_the_environment_decide(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert thread_decision(None) == (3, f"OMP_NUM_THREADS=3 ({available_cores()} cores available)")
    assert thread_decision(1)[0] == 1 and "train.threads: 1" in thread_decision(1)[1]
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert thread_decision(None)[0] == available_cores()


def test_passive_waiting_unless_the_environment_says_otherwise():
    environ = {}
    passive_wait_policy(environ)
    assert environ == {"OMP_WAIT_POLICY": "PASSIVE"}
    environ = {"OMP_WAIT_POLICY": "ACTIVE"}
    passive_wait_policy(environ)
    assert environ == {"OMP_WAIT_POLICY": "ACTIVE"}


def test_the_cli_sets_the_wait_policy_before_torch_loads():
    """Set by a command as it starts (importing runner.cli sets nothing), before anything imports torch."""
    code = ("import os, sys, runner.cli; print(os.environ.get('OMP_WAIT_POLICY'))\n"
            "runner.cli.main(['schema'], standalone_mode=False)\n"
            "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    lines = done.stdout.splitlines()
    assert lines[0] == "None" and lines[-1].split() == ["PASSIVE", "False"]


def test_train_threads_is_applied_printed_and_recorded(tiny_model, tiny_data):
    folder = tiny_data.parent.parent
    spec = write_spec(folder, tiny_spec_text(tiny_model).replace("  batch_size: 8\n", "  batch_size: 8\n  threads: 1\n",
                                                                 1))
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    done = subprocess.run([sys.executable, "-m", "runner", "run", str(spec)], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "threads: 1; train.threads: 1 in the spec" in done.stdout + done.stderr
    recorded = json.loads((folder / "run" / "run.json").read_text())["results"]["threads"]
    assert recorded.startswith("1 (train.threads: 1") and "OMP_WAIT_POLICY=PASSIVE" in recorded


def test_train_threads_must_be_positive(tiny_model, tiny_data):
    folder = tiny_data.parent.parent
    text = tiny_spec_text(tiny_model).replace("  batch_size: 8\n", "  batch_size: 8\n  threads: 0\n")
    spec = write_spec(folder, text)
    result = run_cli("validate", str(spec), cwd=folder)
    assert result.returncode == 2 and "threads" in result.stdout + result.stderr
