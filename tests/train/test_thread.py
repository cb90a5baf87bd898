"""`runner run` called in-process off the main thread (a notebook's worker, Ray Train, a web server's handler):
Python allows signal handlers in the main thread of the main interpreter only, so none is installed there; the
run still trains, writes its record, and says once that Ctrl-C and SIGTERM are the caller's to handle."""

from __future__ import annotations

import json
import signal
import threading

from conftest import tiny_spec_text, write_spec


def main_in_a_thread(args: list[str], capfd) -> tuple[dict, str, str]:
    """`main(args)` called in-process in a worker thread (the real entry point: RunnerGroup.invoke, which installs
    handlers where it can): ({returned: True} | {exit: code} | {error: repr}, stdout, stderr)."""
    from runner.cli import main

    outcome: dict = {}

    def run() -> None:
        try:
            main(args, standalone_mode=False)
            outcome["returned"] = True
        except SystemExit as stop:
            outcome["exit"] = stop.code
        except BaseException as error:  # noqa: BLE001 - the test reports it
            outcome["error"] = repr(error)

    worker = threading.Thread(target=run, name="runner-worker")
    worker.start()
    worker.join(timeout=600)
    out, err = capfd.readouterr()
    assert not worker.is_alive(), "the run did not finish within 10 minutes"
    return outcome, out, err


def test_a_run_in_a_thread_trains_and_says_signals_are_the_callers(tmp_path, tiny_model, tiny_data, capfd):
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    output = tmp_path / "run"
    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    outcome, out, err = main_in_a_thread(["run", str(spec), "--output", str(output)], capfd)
    assert outcome == {"returned": True}, (outcome, err[-3000:])
    assert "signal only works in main thread" not in out + err and "Traceback" not in err
    record = json.loads((output / "run.json").read_text())
    assert record["status"] == "finished"
    # the command the caller gave, not one rebuilt without its --output (nor the caller's own sys.argv)
    assert record["argv"][:2] == ["runner", "run"] and record["argv"][3:4] == ["--output"], record["argv"]
    notes = [line for line in err.splitlines() if line.startswith("note:") and "SIGTERM" in line]
    assert len(notes) == 1 and "not the main thread" in notes[0] and "caller" in notes[0], err[-3000:]
    # The main thread's handlers are as they were: nothing was installed, nothing restored over them.
    assert {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)} == before


def test_a_caller_on_the_main_thread_gets_its_own_handlers_back(tmp_path, capfd):
    """A notebook's kernel or a script calls `main` on its main thread: runner's handlers serve the command only.
    They stayed installed after it, so the caller's SIGTERM later raised runner's exception in whatever it ran."""
    from runner.cli import main

    (tmp_path / "train.csv").write_text("text,label\nhello,a\nbye,b\n", encoding="utf-8")
    spec = write_spec(tmp_path, "version: 1\ndata:\n  train: train.csv\n")

    def callers(number, frame):  # the caller's own handler
        raise AssertionError("not called")

    before = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        for number in before:
            signal.signal(number, callers)
        main(["validate", str(spec)], standalone_mode=False)
        assert {number: signal.getsignal(number) for number in before} == dict.fromkeys(before, callers)
        try:  # a command that fails ends with SystemExit, as from a terminal: the handlers come back all the same
            main(["validate", str(tmp_path / "nowhere.yaml")], standalone_mode=False)
        except SystemExit as stop:
            assert stop.code == 2
        assert {number: signal.getsignal(number) for number in before} == dict.fromkeys(before, callers)
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)
    out, err = capfd.readouterr()
    assert "ok: " in out and "spec file not found" in err


def test_a_run_with_nproc_in_a_thread_launches_the_callers_command_not_its_process(tmp_path, tiny_model, tiny_data,
                                                                                  capfd, monkeypatch):
    """`runner run --nproc 2` called in-process: the workers ran the caller's sys.argv (here a script's own
    arguments), and in a thread the launcher's signal forwarding raised "signal only works in main thread"."""
    monkeypatch.setattr("sys.argv", ["caller.py", "run", "--callers-flag"])
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    output = tmp_path / "run"
    outcome, out, err = main_in_a_thread(["run", str(spec), "--output", str(output), "--nproc", "2"], capfd)
    assert outcome == {"returned": True}, (outcome, err[-3000:])  # as a single-process run (not SystemExit(0))
    assert "--callers-flag" not in out + err and "internal error" not in err, err[-3000:]
    record = json.loads((output / "run.json").read_text())
    assert record["status"] == "finished" and record["argv"][-2:] == ["--nproc", "2"], record["argv"]
