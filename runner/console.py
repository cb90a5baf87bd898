"""What the runner tells the person running it, in one place: `say` (what happened, on stdout), `warn`
(something to look at, on stderr as `warning: ...`), `note`, and `progress` (a line on stderr where a progress
bar would be: runner.train.progress). All speak on the main process only, so a run of N processes talks once.
Modules call these (or `emit`, on every process) instead of print()."""

from __future__ import annotations

import os
import sys


def is_main_process() -> bool:
    """True in a single-process run and in rank 0 of a distributed one (torchrun sets RANK)."""
    return os.environ.get("RANK", "0") == "0"


def shown(path) -> str:
    """A path (or a name the user chose) as a line may show it: on one line, whatever it holds. A newline in a
    folder's name would split a `wrote ...` line in two (the second could pass for an `error:`), an ESC would
    move the cursor; both are escaped, as in error lines (runner.errors.one_line), and a token in it redacted."""
    from runner.errors import one_line

    return one_line(str(path))


def dash_is_stdout(ctx, param, value):
    """A click callback for a file option whose default is to print: `-` means standard output, as for other
    tools (it wrote a file named `-`)."""
    return None if value is not None and str(value) == "-" else value


def say(*args, **kwargs) -> None:
    """print() on the main process only."""
    if is_main_process():
        print(*args, **kwargs)


def emit(*args, **kwargs) -> None:
    """print() on this process, whichever it is: the launcher's and each worker's own word on a signal, and the
    Action's workflow commands (::add-mask:: must reach the log from any process)."""
    print(*args, **kwargs)


def warn(message: str) -> None:
    """`warning: message` on stderr, on the main process only."""
    if is_main_process():
        print(f"warning: {message}", file=sys.stderr, flush=True)


def note(message: str) -> None:
    """`note: message` on stderr, on the main process only: said once, not a problem."""
    if is_main_process():
        print(f"note: {message}", file=sys.stderr, flush=True)


def progress(line: str) -> None:
    """A progress line on stderr (runner.train.progress, where stderr is not a terminal), on the main process only."""
    if is_main_process():
        print(line, file=sys.stderr, flush=True)


def close_progress_bars() -> None:
    """End the progress bars still drawn (a training cut short leaves its bar mid-line), so the message
    that follows starts on a line of its own."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", None) or []):
        try:
            bar.close()
        except Exception:  # noqa: BLE001 - a bar that cannot close must not hide the message
            pass
