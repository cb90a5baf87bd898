"""Talking to the Hub for a remote run: one call at a time, its failure one line with the token masked; the
token checked; the names of a job's folder in the jobs repository."""

from __future__ import annotations

from collections.abc import Callable

from runner import __version__
from runner.errors import RunError, SpecError

INPUT, OUTPUT, EXIT_FILE = "input", "output", "exit.json"  # jobs/KEY/input/, jobs/KEY/output/, jobs/KEY/exit.json


class RemoteFailed(RunError):
    """The job ran and failed: the exit code is the remote one."""

    def __init__(self, message: str, hint: str, exit_code: int):
        super().__init__(message, hint)
        self.exit_code = exit_code


def hub_call(what: str, action: Callable, token: str):
    """One Hub call; a failure becomes one RunError line with the token masked."""
    from runner.publish.hub import describe_error, status_of

    try:
        return action()
    except (RunError, SpecError, KeyboardInterrupt):
        raise
    except Exception as error:  # noqa: BLE001 - every failure becomes a RunError
        status = status_of(error)
        if status in (401, 403):
            raise RunError(f"the Hub refused the token ({status}) while {what}",
                           "use a token with write access and the Jobs permission "
                           "(https://huggingface.co/settings/tokens)") from None
        raise RunError(f"{what} failed: {describe_error(error, token)}",
                       "check the network and the Hub status, then retry") from None


def connect(token: str | None = None):
    """(HfApi, token, namespace): the token checked with whoami."""
    from huggingface_hub import HfApi

    from runner.publish.hub import find_token

    token = token or find_token()
    api = HfApi(token=token, library_name="runner", library_version=__version__)
    namespace = hub_call("checking the token", api.whoami, token)["name"]
    return api, token, namespace
