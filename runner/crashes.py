"""A bug of ours or a library's, as the user sees it: one line naming the exception, and where its traceback was
saved (runner.files.save_traceback), never the traceback itself (`runner --debug` shows it)."""

from __future__ import annotations

import traceback

from runner.errors import one_line
from runner.files import save_traceback


def internal_error_lines(error: BaseException) -> list[str]:
    """`error: internal error: ...` and where its traceback was saved (never the traceback itself)."""
    kind = type(error).__name__
    saved = ""
    try:  # this user's newest few are kept, the older removed
        saved = f"; the traceback is in {save_traceback(''.join(traceback.format_exception(error)))}"
    except OSError:
        pass
    reason = str(error).splitlines()[0][:200] if str(error) else ""
    return [f"error: internal error: {kind}" + (f": {one_line(reason)}" if reason else ""),
            f"hint: this is a bug, not your input{saved}; run with `runner --debug ...` to see it, and report it"]
