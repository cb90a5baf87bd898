"""How SIGINT and SIGTERM stop a command: where it stands, but never inside an import or a shielded step.

The CLI installs `handle` for both signals. It raises KeyboardInterrupt (SIGINT) or Terminated (SIGTERM)
so the command unwinds and cleans up (temporary folders go, an earlier run set aside comes back), and
the CLI exits 130 or 143 with one line. Raised at a bad moment that exception does harm:

- inside an import it leaves a module half made, and a C extension whose initialisation sees it may
  abort the process (SIGABRT, exit -6: seen with SIGTERM during `import onnx`);
- inside a step that must finish as a whole (`shielded()`: the two renames that put a folder in place,
  an exporter's native call) it leaves a mix.

There the signal is held: a flag is set, and the exception is raised at the first safe point after it,
as soon as the import has returned (the signal is sent again every 50 ms until then) or the shielded
block exits. Nothing depends on when the signal lands. A second signal while one is held is held too.

Training has a handler of its own (runner.train.trainer.GracefulStop: a checkpoint, then exit); outside
the main thread of the main interpreter (Ray Train, a notebook's worker, a subinterpreter) no handler is
installed, as Python allows none there: the command runs and says once (`note:`) that Ctrl-C and SIGTERM
are the caller's to handle (tests/train/test_thread.py).
"""

from __future__ import annotations

import os
import signal
import threading
from contextlib import contextmanager

from runner.errors import Terminated

STOPS = (signal.SIGINT, signal.SIGTERM)
RECHECK_SECONDS = 0.05

AS_PROGRAM = False  # set by the `runner` program (runner.cli.entry): finished() applies to it alone
_held: int | None = None  # the signal that arrived at a bad moment, raised at the next safe point
_shields = 0  # how many shielded() blocks the main thread is in


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def install() -> dict | None:
    """`handle` for SIGINT and SIGTERM, where Python allows handlers: the main thread of the main interpreter.
    Elsewhere (a thread of a notebook, Ray Train or a server; a subinterpreter) nothing is installed, the command
    runs all the same and says so once, in a `note:`. The handlers it replaced (for `finished`), or None."""
    if in_main_thread():
        previous = {number: signal.getsignal(number) for number in STOPS}
        try:
            for number in STOPS:
                signal.signal(number, handle)
            return previous
        except ValueError:  # the main thread of a subinterpreter: put back any that went in
            put_back(previous)
    from runner.console import note

    where = (f"in thread '{threading.current_thread().name}', not the main thread" if not in_main_thread()
             else "in a subinterpreter, not the main interpreter")
    note(f"runner runs {where}, where Python allows no signal handlers: Ctrl-C and SIGTERM are the caller's "
         "to handle (runner does not save a checkpoint and stop on them here)")
    return None


def finished(previous: dict | None = None) -> None:
    """The command's work is done (its output whole) or its error decided: a SIGINT or SIGTERM that lands now,
    while the CLI says the error's lines or the interpreter shuts down (torch's exit handlers take seconds), stops
    nothing and the command keeps its exit code and its lines (a signal raised while they were said turned them into
    click's "Aborted!", exit 1). They are ignored from here: a Python handler cannot say so, since the
    interpreter puts the default handlers back while it shuts down and the default ends the process with the
    signal (exit 143 after "done:", with no word); an ignored signal stays ignored to the end.

    One can land on the way here (the command returned, the ignore not yet in place): its handler raises in the
    CLI's `finally`, which calls this again and drops it, so the command's own exit code stands (click would turn
    it into "Aborted!", exit 1).

    A caller that runs a command in its own process (a notebook or a script calling `main`; not the program) gets
    back the handlers `install` replaced (`previous`): its Ctrl-C and SIGTERM are its own again."""
    if not in_main_thread():
        return
    if AS_PROGRAM:
        _ignore_stops()
        return
    put_back(previous or {})


def put_back(previous: dict) -> None:
    """The handlers `previous` held, back in place ({signal number: handler}, as install() found them)."""
    for number, handler in previous.items():
        if handler is not None:  # None: set from C, not restorable from Python
            try:
                signal.signal(number, handler)
            except ValueError:  # a subinterpreter
                pass


def _ignore_stops() -> None:
    try:
        for number in STOPS:
            signal.signal(number, signal.SIG_IGN)
    except ValueError:  # a subinterpreter
        pass


def stop_exception(number: int) -> BaseException:
    return Terminated() if number == signal.SIGTERM else KeyboardInterrupt()


def handle(number: int, frame) -> None:
    global _held
    if _shields or _importing(frame):
        if _held is None:
            _held = number
        if not _shields:  # an import ends by itself: look again shortly
            timer = threading.Timer(RECHECK_SECONDS, _send_again)
            timer.daemon = True
            timer.start()
        return
    _held = None
    raise stop_exception(number)


def _send_again() -> None:
    number = _held
    if number is not None:
        try:
            os.kill(os.getpid(), number)
        except OSError:
            pass


def _importing(frame) -> bool:
    """Whether the main thread stands inside an import (importlib's frames are on its stack) or a finalizer
    (`__del__`: Python prints an exception raised there as "Exception ignored" with its traceback, and drops it):
    in both the signal is held and sent again shortly."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib") or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


@contextmanager
def shielded():
    """A step that must finish as a whole: a signal that lands inside is raised when the step is done."""
    global _shields, _held
    _shields += 1
    try:
        yield
    finally:
        _shields -= 1
    if not _shields and _held is not None:
        number, _held = _held, None
        if signal.getsignal(number) is handle:
            raise stop_exception(number)


def check() -> None:
    """A safe point: a held signal is raised here (a long loop calls it between steps)."""
    global _held
    if _held is not None and not _shields:
        number, _held = _held, None
        raise stop_exception(number)
