"""Run one command and measure it: wall time, peak RSS (the kernel's figure, from wait4), RSS over
time, the load average around it, and when chosen lines first appeared in its output."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from pathlib import Path


def run_measured(
    command: list[str], log: Path, env: dict | None = None, cwd: Path | None = None, marks: dict[str, str] | None = None
) -> dict:
    """Run `command`, writing its output (stdout and stderr) to `log`.

    marks: name -> regex; the result's "marks" holds the seconds after the start at which a line
    first matched each. "rss_samples" holds (seconds, MB) every 0.1 s for the process and its children.
    """
    import psutil

    full_env = dict(os.environ)
    full_env.update(env or {})
    log.parent.mkdir(parents=True, exist_ok=True)
    patterns = {name: re.compile(p) for name, p in (marks or {}).items()}
    seen: dict[str, float] = {}
    samples: list[tuple[float, float]] = []
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=full_env, cwd=cwd)
    done = threading.Event()

    def sample() -> None:
        try:
            parent = psutil.Process(process.pid)
        except psutil.NoSuchProcess:
            return
        while not done.is_set():
            try:
                rss = parent.memory_info().rss + sum(c.memory_info().rss for c in parent.children(recursive=True))
            except psutil.NoSuchProcess:
                break
            samples.append((round(time.perf_counter() - started, 2), round(rss / 2**20, 1)))
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    with open(log, "wb") as out:
        pending = b""
        for chunk in iter(lambda: process.stdout.read1(65536), b""):
            out.write(chunk)
            pending += chunk
            *lines, pending = re.split(rb"[\r\n]", pending)
            now = round(time.perf_counter() - started, 2)
            for line in lines:
                text = line.decode("utf-8", "replace")
                for name, pattern in patterns.items():
                    if name not in seen and pattern.search(text):
                        seen[name] = now
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    return {
        "command": command,
        "returncode": process.returncode,
        "wall_seconds": round(wall, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # ru_maxrss is in KiB on Linux
        "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "marks": seen,
        "rss_samples": samples,
        "log": str(log),
    }


def peak_before(samples: list[tuple[float, float]], seconds: float | None) -> float | None:
    """The highest sampled RSS (MB) up to `seconds` after the start."""
    values = [rss for t, rss in samples if seconds is None or t <= seconds]
    return max(values) if values else None


def tail(path: Path, lines: int = 30) -> str:
    text = Path(path).read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
    return "\n".join([line for line in text.splitlines() if line.strip()][-lines:])
