"""`runner run --nproc N`: train with N processes on this machine (torchrun, DistributedDataParallel).

The launcher runs the same command line under `torchrun --standalone`, without --nproc and with
`compute.nproc=1`, so each worker trains instead of launching again. torchrun gives every worker
RANK and WORLD_SIZE, and the Trainer (through accelerate) joins the process group: NCCL on GPUs,
gloo on the CPU. Only rank 0 writes the run record and pushes.

For several machines, start torchrun yourself on each one (see the README); every worker then
runs `runner run SPEC` with compute.nproc 1.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from runner.console import is_main_process, say  # noqa: F401 (what callers of the launcher also ask)

LAUNCHED_NPROC = "RUNNER_LAUNCHED_NPROC"  # set for the workers: the --nproc the user gave
LAUNCHED_ARGV = "RUNNER_LAUNCHED_ARGV"  # and the command line, for the run record


def worker_argv(argv: list[str]) -> list[str]:
    """The user's `runner ...` arguments without --nproc, with compute.nproc=1 (a later --set wins)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out + ["--set", "compute.nproc=1"]


def torchrun_command(argv: list[str], nproc: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "runner",
        *worker_argv(argv),
    ]


def launch(argv: list[str], nproc: int) -> int:
    """Run `runner <argv>` as `nproc` torchrun workers and return the exit code.

    torchrun gets a session of its own so a Ctrl-C reaches the workers once, through torchrun
    (SIGTERM): each saves a checkpoint and stops, like a single-process run.
    """
    if LAUNCHED_NPROC in os.environ:
        from runner.errors import RunError

        raise RunError(
            "a torchrun worker was asked to launch workers itself", "run it without --nproc, with --set compute.nproc=1"
        )
    env = dict(os.environ)
    env[LAUNCHED_NPROC] = str(nproc)
    env[LAUNCHED_ARGV] = json.dumps([sys.argv[0], *argv])
    # torchrun gives each worker one thread; on the CPU each worker gets its share of the cores.
    env.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // nproc)))
    command = torchrun_command(argv, nproc)
    print(f"launching {nproc} processes: {' '.join(command[1:])}", flush=True)
    process = subprocess.Popen(command, env=env, start_new_session=True)
    received: list[int] = []

    def forward(number, frame):
        if not received:
            print(
                f"\n{signal.Signals(number).name}: the workers save a checkpoint and stop (send it again to kill them)",
                file=sys.stderr,
                flush=True,
            )
            process.send_signal(signal.SIGTERM)
        else:
            os.killpg(process.pid, signal.SIGKILL)  # torchrun and its workers
        received.append(number)

    previous = {number: signal.signal(number, forward) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = process.wait()
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return 128 + received[0] if received else code


def as_launched(spec, argv):
    """In a worker: the spec with the compute.nproc the user gave, and the user's command line, for the
    run record. Outside a launched worker, both unchanged. Returns (spec, argv)."""
    if LAUNCHED_NPROC not in os.environ:
        return spec, argv
    spec = spec.replace(compute={"nproc": int(os.environ[LAUNCHED_NPROC])})
    return spec, json.loads(os.environ.get(LAUNCHED_ARGV) or "[]") or argv
