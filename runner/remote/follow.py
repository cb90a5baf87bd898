"""Following a Hugging Face job through network trouble: its log line by line and its status until it ends.

A log stream that breaks or a status call that fails is tried again, after 1 s, then twice as long each time
up to 15 s, until about 2 minutes have gone by without an answer (huggingface_hub first retries a broken
stream a few times itself); the log resumes where it stopped, no line shown twice. Only then does following
give up, with a RunError that says the job may still run and how to follow it. A refusal (401, 403, 404)
gives up at once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from runner.errors import RunError, SpecError

TERMINAL_STAGES = ("COMPLETED", "ERROR", "CANCELED", "DELETED")
# Following a job through network trouble (follow_log): the first wait, the longest, how long without an answer
# before giving up (never before MIN_TRIES tries), and the pause before following a log that ended before its job.
RETRY_FIRST, RETRY_LONGEST, RETRY_FOR, RETRY_MIN_TRIES, LOG_PAUSE = 1.0, 15.0, 120.0, 3, 2.0
# Tests only: a factor (0 < f <= 1) on those delays, so that a test of a retry or of giving up takes no minutes.
RETRY_SCALE_ENV = "RUNNER_TEST_RETRY_SCALE"


def stage_of(job) -> str:
    return str(getattr(job.status.stage, "value", job.status.stage))


def retry_scale() -> float:
    try:
        scale = float(os.environ.get(RETRY_SCALE_ENV) or 1)
    except ValueError:
        return 1.0
    return scale if 0 < scale <= 1 else 1.0


def transient(error: BaseException) -> bool:
    """Whether a failed call may work when tried again: a network error (reset, timeout, a stream cut short) or
    an answer the service gives when busy (5xx, 408, 429); never a refusal (401, 403, 404, ...)."""
    from runner.publish.hub import status_of

    status = status_of(error)
    if status is not None:
        return status >= 500 or status in (408, 429)
    names = {kind.__name__ for kind in type(error).__mro__}  # httpx, httpx2, httpcore, requests, urllib3 alike
    return isinstance(error, (OSError, TimeoutError, EOFError)) or bool(names & {
        "TransportError", "TimeoutException", "NetworkError", "ProtocolError", "ReadError", "ConnectionError",
        "ChunkedEncodingError", "IncompleteRead"})


def _seconds(value: float) -> str:
    return f"{value:.2g}s" if value < 10 else f"{value:.0f}s" if value < 120 else f"{value / 60:.0f} min"


class Reconnect:
    """The retries of following one job: each failure waits (RETRY_FIRST, doubling, at most RETRY_LONGEST, or what
    Retry-After asks within that), a line or a status that arrives ends the outage; after RETRY_FOR seconds of
    failures in a row (and RETRY_MIN_TRIES tries), or at once for a refusal, it gives up with one RunError."""

    def __init__(self, job_id: str, token: str, output: Path | None = None):
        scale = retry_scale()
        self.first, self.longest, self.budget = RETRY_FIRST * scale, RETRY_LONGEST * scale, RETRY_FOR * scale
        self.pause = LOG_PAUSE * scale
        self.job_id, self.token, self.output = job_id, token, output
        self.failures, self.since = 0, 0.0

    def alive(self) -> None:
        if self.failures:
            from runner.console import note

            note(f"reconnected to job {self.job_id}; its log goes on where it stopped, no line shown twice")
        self.failures = 0

    def failed(self, error: Exception) -> None:
        from runner.console import note
        from runner.publish.hub import describe_error, retry_after

        now = time.monotonic()
        if not self.failures:
            self.since = now
        self.failures += 1
        described, waited = describe_error(error, self.token), now - self.since
        if not transient(error):
            raise RunError(f"lost job {self.job_id} while following it: {described}", self.hint()) from None
        if self.failures > RETRY_MIN_TRIES and waited >= self.budget:
            raise RunError(f"lost job {self.job_id} while following it: no answer for {_seconds(waited)} "
                           f"({self.failures} tries); the last: {described}", self.hint()) from None
        delay = min(self.longest, max(self.first * 2 ** (self.failures - 1), retry_after(error) * retry_scale()))
        note(f"following job {self.job_id}: {described}; trying again in {_seconds(delay)} "
             f"(for up to {_seconds(self.budget)} without an answer)")
        time.sleep(delay)

    def hint(self) -> str:
        import shlex

        output = shlex.quote(str(self.output)) if self.output else "DIR"
        return (f"the job may still be running: follow it with `runner jobs logs {self.job_id} --follow`, then bring "
                f"its record back with `runner jobs fetch {self.job_id} --output {output}`; or stop it with "
                f"`runner jobs cancel {self.job_id}`")


def follow_log(api, job_id: str, namespace: str, show: Callable[[str], None], output: Path | None = None):
    """Call `show` with each line of the job's log until the job ends; the final JobInfo. A broken stream or a
    failed status call is tried again (Reconnect); the log then starts over on the service's side, and the
    lines already shown are skipped."""
    retry = Reconnect(job_id, api.token or "", output)
    shown = 0
    while True:
        try:
            seen = 0
            for line in api.fetch_job_logs(job_id=job_id, namespace=namespace, follow=True):
                seen += 1
                if seen <= shown:
                    continue
                retry.alive()
                show(line)
                shown += 1
            final = api.inspect_job(job_id=job_id, namespace=namespace)
            retry.alive()
            if stage_of(final) in TERMINAL_STAGES:
                return final
            time.sleep(retry.pause)  # the log ended before the job (huggingface_hub gave it up): follow it again
        except (RunError, SpecError, KeyboardInterrupt):
            raise
        except Exception as error:  # noqa: BLE001 - the network went away; the job does not stop with it
            retry.failed(error)
