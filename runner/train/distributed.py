"""`runner run --nproc N`: train with N processes on this machine (torchrun, DistributedDataParallel).

The launcher runs the same command line under `torchrun --standalone`, without --nproc and with
`compute.nproc=1`, so each worker trains instead of launching again. torchrun gives every worker
RANK and WORLD_SIZE, and the Trainer (through accelerate) joins the process group: NCCL on GPUs,
gloo on the CPU. Only rank 0 writes the run record and pushes.

Several machines (compute.nnodes > 1): the same `runner run SPEC` on every machine, each with its
compute.node_rank (or NODE_RANK / SKYPILOT_NODE_RANK in the environment), starts torchrun with
`--nnodes --node_rank --master_addr --master_port` (from compute.rdzv_endpoint, node 0's address);
global rank 0, on node 0, writes the record. Starting torchrun yourself on each machine works too.

What the workers record (the user's command line and compute settings) reaches them in one file, not in the
environment: runner/train/handoff.py.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from runner.console import emit
from runner.files import remove, temporary_folder
from runner.spec.sections import ComputeSection
from runner.stopping import STOPS, in_main_thread, put_back
from runner.train.handoff import OPTION, Launch, write_launch

NODE_RANK_VARIABLES = ("NODE_RANK", "SKYPILOT_NODE_RANK")  # where a launcher says which machine this is


def worker_argv(argv: list[str], nodes: dict | None = None) -> list[str]:
    """The user's `runner ...` arguments without --nproc, with compute.nproc=1 (and compute.nnodes=1 and
    compute.node_rank=null on several machines, a rank below that one node): a later --set wins, so a worker
    trains instead of launching again."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    single = ["--set", "compute.nnodes=1", "--set", "compute.node_rank=null"] if nodes else []
    return out + ["--set", "compute.nproc=1"] + single


def node_settings(compute: ComputeSection, where: str) -> dict | None:
    """compute.nnodes > 1: {nnodes, node_rank, master_addr, master_port}, checked; None on one machine.
    `where`: the position of compute.nnodes in the spec, for the errors."""
    from runner.errors import SpecError

    nnodes = compute.nnodes
    if nnodes <= 1:
        return None
    # The spec's own rules (a rank below nnodes, an endpoint with a TCP port, no search or cross-validation)
    # were checked when it was loaded (runner/spec/specrules.py and the schema). Left for the launch: the
    # endpoint (a spec for `runner sky` has none; SkyPilot gives it on each node) and a rank from the environment.
    if not compute.rdzv_endpoint:
        raise SpecError(f"compute.nnodes is {nnodes} but compute.rdzv_endpoint is not set",
                        "add `rdzv_endpoint: HOST:PORT` under `compute:`, the address of node 0 (e.g. 10.0.0.1:29500)",
                        where)
    rank = compute.node_rank
    for name in NODE_RANK_VARIABLES if rank is None else ():
        value = os.environ.get(name, "").strip()
        if not value:
            continue
        # ASCII digits only: int() and str.isdigit() also take '²', '٣' and other Unicode digits
        if not re.fullmatch(r"[0-9]{1,6}", value, re.ASCII) or int(value) >= nnodes:
            shown = repr(value if len(value) <= 20 else value[:20] + "...")
            raise SpecError(f"{name}={shown} in the environment is not a node rank from 0 to {nnodes - 1} "
                            f"(compute.nnodes is {nnodes})",
                            f"set {name} to this machine's rank in the digits 0-9 (0 on the machine at rdzv_endpoint), "
                            "or pass --set compute.node_rank=R", where)
        rank = int(value)
        break
    if rank is None:
        raise SpecError(f"compute.nnodes is {nnodes} but this machine's rank is not known",
                        "pass --set compute.node_rank=R (0 on the machine at rdzv_endpoint) or set NODE_RANK", where)
    host, _, port = compute.rdzv_endpoint.rpartition(":")
    return {"nnodes": nnodes, "node_rank": rank, "master_addr": host, "master_port": int(port)}


def torchrun_command(argv: list[str], nproc: int, nodes: dict | None = None, handoff: Path | None = None) -> list[str]:
    """torchrun running `runner <argv>` as the workers (worker_argv), each given the `handoff` file."""
    rendezvous = (
        [f"--nnodes={nodes['nnodes']}", f"--node_rank={nodes['node_rank']}", f"--master_addr={nodes['master_addr']}",
         f"--master_port={nodes['master_port']}"] if nodes else ["--standalone"]
    )
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *rendezvous,
        f"--nproc_per_node={nproc}",
        "-m",
        "runner",
        *worker_argv(argv, nodes),
        *([OPTION, str(handoff)] if handoff else []),
    ]


def launch(command_line: list[str], nproc: int, nodes: dict | None = None, node_rank: int | None = None) -> int:
    """Run the user's `runner ...` (`command_line`, the program first) as `nproc` torchrun workers and return the
    exit code. `node_rank`: the spec's compute.node_rank (None where the rank comes from the environment), for the
    run record, which the workers get with the command line in a handoff file (runner/train/handoff.py).

    torchrun gets a session of its own so a Ctrl-C reaches the workers once, through torchrun
    (SIGTERM): each saves a checkpoint and stops, like a single-process run.
    """
    given = Launch(nproc, tuple(command_line), nodes["nnodes"] if nodes else None, node_rank if nodes else None)
    folder = temporary_folder(prefix="runner-launch-")  # the launcher's own; one killed outright is swept later
    try:
        return run_workers(command_line[1:], nproc, nodes, write_launch(given, folder))
    finally:
        remove(folder, ignore_errors=True)


def run_workers(argv: list[str], nproc: int, nodes: dict | None, handoff: Path) -> int:
    env = dict(os.environ)
    # torchrun gives each worker one thread; on the CPU each worker gets its share of the cores.
    env.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // nproc)))
    command = torchrun_command(argv, nproc, nodes, handoff)
    where = f" on node {nodes['node_rank']} of {nodes['nnodes']}" if nodes else ""
    emit(f"launching {nproc} processes{where}: {' '.join(command[1:])}", flush=True)
    process = subprocess.Popen(command, env=env, start_new_session=True)
    received: list[int] = []

    def forward(number, frame):
        if not received:
            emit(
                f"\n{signal.Signals(number).name}: the workers save a checkpoint and stop (send it again to kill them)",
                file=sys.stderr,
                flush=True,
            )
            process.send_signal(signal.SIGTERM)
        else:
            os.killpg(process.pid, signal.SIGKILL)  # torchrun and its workers
        received.append(number)

    # the main thread only (Python allows handlers nowhere else): in a caller's thread the signals are the caller's
    previous = {number: signal.signal(number, forward) for number in STOPS} if in_main_thread() else {}
    try:
        code = process.wait()
    finally:
        put_back(previous)
    return 128 + received[0] if received else code
