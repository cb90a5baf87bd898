"""What `runner run --nproc N` hands its torchrun workers: one typed value, written once to a file.

The workers train with compute.nproc=1 (and compute.nnodes=1 on several machines), so they train instead of
launching again; the run record shows what the user ran instead: their command line and the compute settings they
gave. The launcher writes them as JSON into a temporary folder of its own (removed when the workers have stopped)
and gives each worker the file's path as `runner run ... --launched FILE`; a worker reads it back and checks it
before anything else. A file, not the values on the command line: the worker's command line (printed by the
launcher, shown by `ps`) stays the user's own plus two settings, and the user's command line needs no quoting.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from runner.errors import SpecError
from runner.files import atomic_write_json, read_json

OPTION = "--launched"  # the worker's option that names the handoff file
FILE_NAME = "launch.json"


@dataclass(frozen=True)
class Launch:
    """The launcher's `runner run` as the user gave it. `nnodes` and `node_rank` on several machines only
    (`node_rank`: the spec's compute.node_rank, None where the rank came from the environment)."""

    nproc: int
    argv: tuple[str, ...]
    nnodes: int | None = None
    node_rank: int | None = None

    def recorded_compute(self) -> dict:
        """The compute values the run record keeps: the user's, not the worker's."""
        values = {"nproc": self.nproc}
        if self.nnodes is not None:
            values.update(nnodes=self.nnodes, node_rank=self.node_rank)
        return values


def write_launch(launch: Launch, folder: Path) -> Path:
    """The handoff file in `folder` (the launcher's own); its path."""
    path = Path(folder) / FILE_NAME
    atomic_write_json(path, dataclasses.asdict(launch))
    return path


def read_launch(path: Path) -> Launch:
    """A worker's handoff, checked: SpecError (exit 2, one line) for a missing, unreadable or damaged file."""
    hint = f"start the run with `runner run SPEC --nproc N`; {OPTION} is the file that launcher gives its workers"
    try:
        values = read_json(path)
    except FileNotFoundError:
        raise SpecError(f"{OPTION}: the launcher's handoff file is missing", hint, str(path)) from None
    except (OSError, ValueError) as exc:  # a folder, no permission, not UTF-8 or not JSON
        reason = getattr(exc, "strerror", None) or "not JSON"
        raise SpecError(f"{OPTION}: the launcher's handoff file cannot be read ({reason})", hint, str(path)) from None
    problem = launch_problem(values)
    if problem:
        raise SpecError(f"{OPTION}: the launcher's handoff file is damaged: {problem}", hint, str(path))
    return Launch(values["nproc"], tuple(values["argv"]), values["nnodes"], values["node_rank"])


def launch_problem(values) -> str:
    """What is wrong with a handoff's JSON ('' when nothing)."""
    fields = [field.name for field in dataclasses.fields(Launch)]
    if not isinstance(values, dict) or sorted(values) != sorted(fields):
        return f"not an object with the keys {', '.join(fields)}"

    def count(value, low: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= low

    argv, nnodes, rank = values["argv"], values["nnodes"], values["node_rank"]
    if not count(values["nproc"], 1):
        return "nproc is not a number of processes"
    if not isinstance(argv, list) or not argv or not all(isinstance(arg, str) for arg in argv):
        return "argv is not a command line"
    if nnodes is None and rank is not None or nnodes is not None and not count(nnodes, 2):
        return "nnodes is not a number of machines above 1 (or null)"
    if rank is not None and not (count(rank, 0) and rank < nnodes):
        return f"node_rank is not a rank below nnodes {nnodes} (or null)"
    return ""
