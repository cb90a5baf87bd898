"""The errors a user sees: one line saying what is wrong and where, one line saying how to fix it.

SpecError and DataError are the user's to fix (exit 2); RunError is a failure at run time (exit 1);
Interrupted is a run stopped by a signal (130 or 143).
The CLI prints them without a traceback unless --debug is given.
"""

from runner.redact import redact_text


def one_line(text: str) -> str:
    """A part of an error line, as it may be shown: secrets redacted (a message may quote what the user typed,
    a `--set` gone wrong or an unknown key, and a token typed there must not reach a terminal or a CI log), and
    line breaks and control characters escaped (one inside a key, a cell, a path or a library's message would split
    the message, or move the cursor and hide it)."""
    return redact_text(str(text)).translate(_ESCAPED)


# line breaks and the other control characters (a terminal acts on ESC, BEL, backspace, C1), tab aside
_ESCAPED = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if code != 0x09}
_ESCAPED.update({0x0A: "\\n", 0x0D: "\\r"})


class RunnerError(Exception):
    exit_code = 1

    def __init__(self, message: str, hint: str = "", where: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.where = where

    def lines(self) -> list[str]:
        first = f"{self.where}: {self.message}" if self.where else self.message
        out = [f"error: {one_line(first)}"]
        if self.hint:
            out.append(f"hint: {one_line(self.hint)}")
        return out


class SpecError(RunnerError):
    """The spec is wrong: bad YAML, unknown key, bad value, a path that does not exist."""

    exit_code = 2


class DataError(RunnerError):
    """The data is wrong: missing column, unknown label, a file that cannot be parsed."""

    exit_code = 2


class RunError(RunnerError):
    """Something failed while running: the Hub refused, the disk filled, training crashed."""

    exit_code = 1


class Interrupted(RunnerError):
    """SIGINT or SIGTERM stopped the run after a checkpoint was saved: exit 130 or 143."""

    def __init__(self, message: str, hint: str = "", where: str = "", exit_code: int = 130):
        super().__init__(message, hint, where)
        self.exit_code = exit_code

    def lines(self) -> list[str]:
        """Not an error of the user's: one line saying where it stopped and what to do next."""
        return [one_line(f"{self.message}; {self.hint}" if self.hint else self.message)]


class Terminated(KeyboardInterrupt):
    """SIGTERM outside a training (which stops cleanly on its own): unwinds like Ctrl-C, so temporary folders
    are removed and an earlier run set aside comes back; the CLI exits 143."""


class SpecErrors(SpecError):
    """Every problem found in a spec, reported together."""

    def __init__(self, problems: list[SpecError]):
        super().__init__(f"{len(problems)} problem(s) in the spec")
        self.problems = problems

    def lines(self) -> list[str]:
        out = []
        for problem in self.problems:
            out.extend(problem.lines())
        return out


def usage_error_lines(error) -> list[str]:
    """A wrong option or argument (click's UsageError) as the same two lines. Its "Did you mean" names only
    options the command's --help shows (`--frce` suggested export's hidden, no-op `--force`)."""
    command = error.ctx.command_path if error.ctx else "runner"
    if getattr(error, "possibilities", None) and error.ctx:
        visible = {name for param in error.ctx.command.params if not getattr(param, "hidden", False)
                   for name in (*param.opts, *param.secondary_opts)}
        error.possibilities = [name for name in error.possibilities if name in visible]
    return [f"error: {command}: {one_line(error.format_message())}", f"hint: see `{command} --help`"]
