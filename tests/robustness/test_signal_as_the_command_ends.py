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


SAYING = """
import os, signal, sys
import click
from runner import cli, stopping

stopping.AS_PROGRAM = True
real_echo = click.echo
sent = []

def signal_lands_as_the_error_is_said(*args, **kwargs):
    if kwargs.get("err") and not sent:  # the CLI's first line on stderr: the error (or the interruption) it reports
        sent.append(1)
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, as the line is being said
    real_echo(*args, **kwargs)

click.echo = signal_lands_as_the_error_is_said
if sys.argv[1] == "crash":  # a bug: an internal error
    import runner.spec.schema as schema
    schema.load_schema = lambda: 1 / 0
if sys.argv[1] == "stopped":  # SIGTERM stops the command; a second lands as the CLI says so
    import runner.spec.schema as schema
    schema.load_schema = lambda: os.kill(os.getpid(), signal.SIGTERM)
cli.main(["schema"] if sys.argv[1] in ("crash", "stopped") else sys.argv[1:])
"""


def saying(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SAYING, *args], capture_output=True, text=True, timeout=120)


def test_a_signal_as_the_cli_says_an_error_keeps_its_two_lines_and_exit_code(tmp_path):
    """A SIGTERM that landed while the CLI printed a command's error escaped to click: "Aborted!", exit 1, the error
    unsaid. The error is decided: the signal stops nothing."""
    result = saying("report", str(tmp_path / "nowhere"))
    assert result.returncode == 2, result.stderr
    assert "Aborted" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: folder ") and "\nhint: give the run folder" in result.stderr, result.stderr


def test_a_signal_as_the_cli_says_an_internal_error_keeps_its_lines_and_exit_1():
    result = saying("crash")
    assert result.returncode == 1, result.stderr
    assert "Aborted" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: internal error: ZeroDivisionError") and "\nhint: " in result.stderr


def test_a_second_signal_as_the_cli_says_it_was_interrupted_keeps_143_and_its_line():
    result = saying("stopped")
    assert result.returncode == 143, result.stderr
    assert "Aborted" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("interrupted (SIGTERM) before the command finished"), result.stderr
