"""Logs for machines and people.

Progress. On a terminal the libraries draw their tqdm bars as usual. When stderr is not a terminal (CI, a pipe,
a file, a job's log) a bar is a stream of `\\r` frames that a log keeps as one endless line or as thousands, so
none is drawn: `setup` switches off the bars of huggingface_hub, datasets and transformers (their own
documented switches, HF_HUB_DISABLE_PROGRESS_BARS, HF_DATASETS_DISABLE_PROGRESS_BARS and transformers'
disable_progress_bar, which survive library upgrades where patching tqdm would not), the Trainer's bar gives
way to a callback (`lines_for_bars`), and runner prints its own progress instead (`Lines`, `bar`): one line on
stderr every PERCENT of the way or every SECONDS, whichever comes first, e.g.
`train: step 40 of 400 (10%), epoch 0.50, 12s elapsed, about 1m48s left`. A variable the user set (to 0 or 1)
is left as it is.

The classification head. Every fine-tune starts with a new head, and transformers says so in a LOAD REPORT
(`classifier.weight | MISSING`, "newly initialized ... Consider training on your downstream task"), which reads
like a problem. `HeadNotice` replaces those rows with one line of runner's own (HEAD_LINE); every other row of
the report (an unexpected key, a missing weight inside the pretrained model) still passes through.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time

from runner.console import say

PERCENT = 10  # a progress line every 10% of the way...
SECONDS = 60  # ...or every minute, whichever comes first: a CI log shows a long step is alive
PROGRESS_SWITCHES = ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS")
HEAD_LINE = "model: new classification head ({keys}), as every fine-tune starts{why}"
HEAD_NAMES = ("classifier", "score", "pre_classifier", "classification_head", "pooler", "head")  # when unknown
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def interactive(stream=None) -> bool:
    """Is `stream` (stderr) a terminal, where a bar redrawn in place is read by a person?"""
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def _off(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def setup() -> None:
    """Once, as the CLI starts (before the libraries load, which read the switches at import): the head notice
    filter always; off a terminal, the libraries' bars switched off (runner prints lines instead)."""
    install_head_notice()
    if interactive():
        return
    for name in PROGRESS_SWITCHES:
        os.environ.setdefault(name, "1")
    if "huggingface_hub" in sys.modules and _off("HF_HUB_DISABLE_PROGRESS_BARS"):  # already imported: tell it
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "datasets" in sys.modules and _off("HF_DATASETS_DISABLE_PROGRESS_BARS"):
        from datasets.utils import disable_progress_bars as disable_datasets_bars

        disable_datasets_bars()
    if "transformers" in sys.modules and _off("HF_HUB_DISABLE_PROGRESS_BARS"):  # its own bars follow the hub's
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()


# ---------------------------------------------------------------------------------------------
# Progress as lines


def duration(seconds: float) -> str:
    """45s, 3m05s, 2h07m."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Lines:
    """Progress of `what` as lines on stderr: one when the work crosses the next PERCENT of `total`, or when
    SECONDS have passed since the last line (`percent=False`: by time alone, for short repeated steps such as
    an evaluation), and one at the end. Without a total, lines by time alone."""

    def __init__(self, what: str, total: int | None, unit: str = "", done: int = 0, percent: bool = True,
                 clock=time.monotonic, say=None):
        self.what, self.total, self.unit, self.percent = what, total if total and total > 0 else None, unit, percent
        self.clock, self.say = clock, say
        self.started = self.last_time = clock()
        self.first = self.done = done
        self.said = 0  # lines printed
        self.last_bucket = self._bucket(done)

    def _bucket(self, done: int) -> int:
        return done * 100 // (self.total * PERCENT) if self.total else 0

    def update(self, done: int, extra: str = "") -> str | None:
        """The work has reached `done`: print a line when one is due; returns it (None when not)."""
        self.done, now = done, self.clock()
        bucket = self._bucket(done)
        end = self.total is not None and done >= self.total and (self.percent or self.said)  # time alone: a
        due = end or now - self.last_time >= SECONDS or (self.percent and bucket > self.last_bucket)  # short one
        if not due or (self.total is not None and done > self.total):  # says nothing
            return None
        self.last_bucket, self.last_time, self.said = bucket, now, self.said + 1
        line = self.line(done, now, extra)
        (self.say or _progress)(line)
        return line

    def line(self, done: int, now: float, extra: str = "") -> str:
        unit = f"{self.unit} " if self.unit else ""
        elapsed = now - self.started
        if self.total:
            out = f"{self.what}: {unit}{done} of {self.total} ({done * 100 // self.total}%)"
        else:
            out = f"{self.what}: {unit}{done}"
        out += f", {extra}" if extra else ""
        out += f", {duration(elapsed)} elapsed"
        if self.total and self.first < done < self.total and elapsed > 0:
            left = (self.total - done) * elapsed / (done - self.first)
            out += f", about {duration(left)} left"
        return out


def _progress(line: str) -> None:
    from runner.console import progress

    progress(line)


def bar(iterable, what: str, unit: str = "", total: int | None = None):
    """`iterable` with progress: tqdm's bar on a terminal, else a line every PERCENT or SECONDS (Lines)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    if interactive():
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=what, unit=unit or "it", total=total)
    return _lined(iterable, Lines(what, total, unit))


def _lined(iterable, lines: Lines):
    for done, item in enumerate(iterable, 1):
        yield item
        lines.update(done)


def lines_for_bars(trainer) -> None:
    """Off a terminal, the Trainer's tqdm bars (ProgressCallback) give way to lines (LineProgress): training as
    Lines of steps, with the epoch, and an evaluation that takes SECONDS or more a line every SECONDS. Its log
    lines (`{'loss': ...}` on stdout) stay as they were."""
    if interactive():
        return
    from transformers.trainer_callback import ProgressCallback

    if not any(type(callback) is ProgressCallback for callback in trainer.callback_handler.callbacks):
        return  # a notebook's widget, or no progress at all: left as it is
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_line_progress_class()())


class _Stdout:
    """What ProgressCallback.on_log writes its log lines to, in place of a bar: stdout, as tqdm.write does."""

    @staticmethod
    def write(text: str) -> None:
        say(text, flush=True)

    def close(self) -> None:
        pass


def _line_progress_class():
    from transformers.trainer_callback import ProgressCallback

    class LineProgress(ProgressCallback):
        """ProgressCallback without its bars: its on_log as it is, progress as Lines on stderr."""

        training: Lines | None = None
        evaluating: Lines | None = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.training_bar = _Stdout()
                self.training = Lines("train", state.max_steps, "step", done=state.global_step)

        def on_step_end(self, args, state, control, **kwargs):
            if self.training is not None:
                self.training.update(state.global_step, f"epoch {state.epoch:.2f}" if state.epoch else "")

        def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
            if not state.is_world_process_zero:
                return
            if self.evaluating is None:
                try:
                    total = len(eval_dataloader)
                except TypeError:  # an iterable dataset: no length
                    total = None
                self.evaluating = Lines("evaluate", total, "batch", percent=False)
            self.evaluating.update(self.evaluating.done + 1)

        def on_evaluate(self, args, state, control, **kwargs):
            self.evaluating = None

        def on_predict(self, args, state, control, **kwargs):
            self.evaluating = None

        def on_train_end(self, args, state, control, **kwargs):
            self.training_bar = self.training = None

    return LineProgress


# ---------------------------------------------------------------------------------------------
# The classification head's load report


def _base_prefix(class_name: str) -> str | None:
    """The backbone's attribute name (`bert`, `roberta`, `model`) of a transformers model class; None when the
    class is not transformers' own (remote code)."""
    try:
        import transformers

        return getattr(getattr(transformers, class_name, None), "base_model_prefix", None) or None
    except Exception:  # noqa: BLE001 - a lookup that fails only means: not known
        return None


def _is_head(key: str, prefix: str | None) -> bool:
    """A key of the classification head: outside the backbone (the module new_modules calls new too)."""
    top = key.split(".", 1)[0]
    return top != prefix if prefix else top in HEAD_NAMES


def _head_order(key: str) -> tuple:
    module, _, name = key.rpartition(".")
    return module, name != "weight", name


class HeadNotice(logging.Filter):
    """On transformers.modeling_utils' logger: a LOAD REPORT whose MISSING or MISMATCH rows are the
    classification head loses those rows, said instead as one line of runner's (HEAD_LINE, once per process
    for the same keys); the report goes on with its other rows, or is dropped when none is left. A report
    this cannot read passes through as it is."""

    said: set = set()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
            if "LOAD REPORT" not in message:
                return True
            kept, head, mismatched = self.split(message)
        except Exception:  # noqa: BLE001 - never lose a warning to a format this did not foresee
            return True
        if not interactive() and kept is not None:  # a log file keeps no colours: their escapes are noise there
            kept = _ANSI.sub("", kept)
        if not head:
            if kept != message:
                record.msg, record.args = kept, ()
            return True
        why = "; the checkpoint's own head, of another shape, is left out" if mismatched else ""
        line = HEAD_LINE.format(keys=", ".join(sorted(head, key=_head_order)), why=why)
        said = (message.split("\n", 1)[0], line)  # the same model's head (a search's trials): said once
        if said not in self.said:
            self.said.add(said)
            import sys

            from runner.console import say

            say(line, file=sys.stderr)  # never stdout: predict's and eval's output is read from there
        if kept is None:
            return False
        record.msg, record.args = kept, ()
        return True

    @staticmethod
    def split(message: str) -> tuple[str | None, list[str], bool]:
        """(the report without the head's rows, or None when nothing else is in it; the head's keys; whether
        a head row is a shape mismatch)."""
        lines = message.split("\n")
        plain = [_ANSI.sub("", line) for line in lines]
        match = re.match(r"\s*(\w+) LOAD REPORT\b", plain[0])
        header = next((i for i, line in enumerate(plain) if re.match(r"Key\s*\|\s*Status\b", line)), None)
        if not match or header is None or header + 1 >= len(plain) or not plain[header + 1].startswith("-"):
            return message, [], False
        prefix = _base_prefix(match.group(1))
        end = next((i for i in range(header + 2, len(plain)) if " | " not in plain[i]), len(plain))
        head, others, mismatched = [], [], False
        for i in range(header + 2, end):
            cells = [cell.strip() for cell in plain[i].split(" | ", 2)]
            key, status = cells[0], cells[1] if len(cells) > 1 else ""
            if status in ("MISSING", "MISMATCH") and _is_head(key, prefix):
                head.append(key)
                mismatched = mismatched or status == "MISMATCH"
            else:
                others.append((i, status))
        if not head:
            return message, head, mismatched
        if not others:
            return None, head, mismatched
        statuses = {status for _, status in others}
        notes = [i for i in range(end, len(plain))  # the notes of the statuses still in the table
                 if (note := re.match(r"- (\w+):", plain[i])) is None or note.group(1) in statuses]
        kept = lines[: header + 2] + [lines[i] for i, _ in others] + [lines[i] for i in notes]
        return "\n".join(kept), head, mismatched


def _not_mtime_notice(record: logging.LogRecord) -> bool:
    """transformers orders checkpoints by mtime and, when two were saved within a second (small models), says
    "mtime may not be reliable on this filesystem" and orders them by step, which is right: not the user's
    concern, and not about their filesystem."""
    return not record.getMessage().startswith("mtime may not be reliable")


def install_head_notice() -> None:
    """HeadNotice on the logger transformers' load report comes from, and the checkpoint-order notice dropped
    (once)."""
    logger = logging.getLogger("transformers.modeling_utils")
    if not any(isinstance(f, HeadNotice) for f in logger.filters):
        logger.addFilter(HeadNotice())
    ordering = logging.getLogger("transformers.trainer_utils")
    if _not_mtime_notice not in ordering.filters:
        ordering.addFilter(_not_mtime_notice)
