"""A SIGTERM that lands after the command's work is done, on the way to ignoring further signals (the CLI's
`finally`, before `stopping.finished` took hold), escaped to click, which printed "Aborted!" and exited 1 (CI saw
it after `predict` had written its whole file). Such a signal stops nothing: the command's own exit code stands.

The moment is made exact: the first attempt to ignore the signals sends SIGTERM to the process and lets the
real handler raise there, as if the signal had landed in that instant."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import os, signal, sys, time
from runner import cli, stopping

stopping.AS_PROGRAM = True
real = stopping._ignore_stops
calls = []

def signal_lands_first(*args):
    calls.append(1)
    if len(calls) == 1:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the handler (runner.stopping.handle) raises Terminated here
        print("not raised", flush=True)
    real()

try:
    stopping._ignore_stops = signal_lands_first
    cli.main(sys.argv[1:])
finally:
    print(f"ignore tried {len(calls)} times; SIGTERM now {signal.getsignal(signal.SIGTERM)!r}", file=sys.stderr,
          flush=True)
"""


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", PROGRAM, *args], capture_output=True, text=True, timeout=120)


def test_a_signal_as_a_successful_command_ends_keeps_exit_0_and_its_output():
    result = run("schema")
    assert result.returncode == 0, result.stderr
    assert "Aborted" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert '"$schema"' in result.stdout and "not raised" not in result.stdout
    assert "ignore tried 2 times; SIGTERM now <Handlers.SIG_IGN: 1>" in result.stderr, result.stderr


def test_a_signal_as_a_failing_command_ends_keeps_its_exit_code_and_its_two_lines(tmp_path):
    missing = tmp_path / "nowhere.yaml"
    result = run("validate", str(missing))
    assert result.returncode == 2, result.stderr
    assert "Aborted" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert "error:" in result.stderr and "hint:" in result.stderr, result.stderr
