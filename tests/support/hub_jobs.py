"""Hugging Face Jobs for the test Hub (tests/support/hub_server.py): the endpoints huggingface_hub's run_job,
inspect_job, fetch_job_logs (server-sent events), wait_for_job and cancel_job call, and a job runner
that executes the submitted command here, so a test is end to end:

    POST /api/jobs/{namespace}                 -> a job; its command starts in a subprocess
    GET  /api/jobs/{namespace}/{id}            -> JobInfo (stage SCHEDULING, RUNNING, COMPLETED, ERROR, CANCELED)
    GET  /api/jobs/{namespace}/{id}/logs       -> `data: {"timestamp", "data"}` events, one per output line,
                                                  held open until the job ends
    POST /api/jobs/{namespace}/{id}/cancel     -> SIGTERM to the command (SIGKILL to all it started after a
                                                  grace period, as a container stops); stage CANCELED

With `hub.hold_jobs = True` a job whose command has ended stays RUNNING (its log stream open) until the
test sets `job.release` or the job is canceled: a test that interrupts the command following a job never
races the job's end.

What goes wrong on the real service, on demand (each a state the test can wait on, never a delay):

    hub.drop_log_stream(after="downloading")   # the next log stream breaks right after the first line holding
                                               # "downloading": the connection closes without the chunked body's
                                               # end, as a reset proxy leaves it (the client sees a protocol error)
    hub.drop_log_stream()                      # the log stream open now (or the next) breaks at once
    hub.fail_next("inspect_job", status=0)     # a status call fails (0: the connection closes unanswered)
    hub.end_job(job, "ERROR", "message")       # the job ends so now: its command killed if it still runs, a
                                               # job held by hold_jobs released with that stage and message
    hub.log_drops                              # [(job id, the last line sent)] of each stream broken so far

A runner image (any image but a stock one) is this Python environment: the command runs with PATH starting at
this interpreter's folder. A stock image (STOCK_REPOSITORIES: python, the uv image, pytorch/pytorch) holds Python,
pip and every package of this environment but runner: the job gets a virtual environment of its own, made from
this interpreter, whose only package is a path to a copy of this environment's site-packages without runner (its
files, its metadata and any editable install's path left out); PATH starts at that environment's bin/, and
`hub.job_env`'s PYTHONPATH is dropped. `runner` is neither a command nor a module there until the job installs it
(python -m pip install works offline with --no-index: what runner needs is installed already).

The command runs in an empty temporary folder, with a clean environment (PATH, HOME, HF_ENDPOINT pointing at the
test Hub, HF_HOME inside the job's folder, JOB_ID, ACCELERATOR=none), then `hub.job_env` (what a test adds, e.g.
PYTHONPATH), then the job's own environment and its secrets. Nothing else of the test's environment reaches it,
so a token the job uses can only have come through `secrets`. No job has CUDA.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

TERMINAL = ("COMPLETED", "ERROR", "CANCELED", "DELETED")
STOCK_REPOSITORIES = ("python", "docker.io/library/python", "ghcr.io/astral-sh/uv", "pytorch/pytorch")
_BASE: list[str] = []  # the folder of this environment's packages without runner, made once
_BASE_LOCK = threading.Lock()


def is_stock(image: str | None) -> bool:
    """Whether `image` is a public image without runner: its repository (before a :tag or @digest)."""
    name = (image or "").split("@")[0]
    if ":" in name.rsplit("/", 1)[-1]:
        name = name.rsplit(":", 1)[0]
    return name in STOCK_REPOSITORIES


def _holds_runner(path: Path) -> bool:
    """A site-packages entry that is runner or points at it (its package, metadata, an editable install)."""
    name = path.name.lower()
    if name == "runner" or re.fullmatch(r"runner-[^-]+\.(dist|egg)-info", name) or (
            name.startswith("__editable__") and "runner" in name):
        return True
    if name.endswith(".pth"):
        lines = path.read_text(errors="replace").splitlines()
        return any((Path(line.strip()) / "runner" / "__init__.py").is_file() for line in lines
                   if line.strip() and not line.startswith(("#", "import")))
    return False


def base_without_runner() -> str:
    """A folder of links to every entry of this environment's site-packages but runner's."""
    with _BASE_LOCK:
        if not _BASE:
            base = Path(tempfile.mkdtemp(prefix="fake-stock-image-"))
            for folder in dict.fromkeys((sysconfig.get_path("purelib"), sysconfig.get_path("platlib"))):
                for entry in Path(folder).iterdir():
                    if not _holds_runner(entry) and not (base / entry.name).exists():
                        (base / entry.name).symlink_to(entry)
            _BASE.append(str(base))
        return _BASE[0]


def stock_environment(workdir: str) -> str:
    """A virtual environment for a job on a stock image (see the module's docstring); its bin/ folder."""
    venv = os.path.join(workdir, ".image")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True, capture_output=True)
    site = sysconfig.get_path("purelib", vars={"base": venv, "platbase": venv})
    Path(site, "_stock_image.pth").write_text(f"import site; site.addsitedir({base_without_runner()!r})\n")
    return os.path.join(venv, "bin")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class FakeJob:
    id: str
    namespace: str
    spec: dict  # the body run_job posted: dockerImage, command, environment, secrets, flavor, ...
    created: str = field(default_factory=_now)
    stage: str = "SCHEDULING"
    message: str | None = None
    exit_code: int | None = None
    logs: list[tuple[str, str]] = field(default_factory=list)  # (timestamp, line)
    workdir: str = ""
    process: subprocess.Popen | None = None
    canceled: bool = False
    timed_out: bool = False
    changed: threading.Condition = field(default_factory=threading.Condition)
    release: threading.Event = field(default_factory=threading.Event)  # see hub.hold_jobs
    forced: tuple[str, str | None] | None = None  # (stage, message) the test ended it with: end_job

    def info(self, owner: str) -> dict:
        """The JSON the Hub answers: secrets by name only, never their values."""
        spec = self.spec
        body = {
            "id": self.id,
            "createdAt": self.created,
            "dockerImage": spec.get("dockerImage"),
            "spaceId": spec.get("spaceId"),
            "command": spec.get("command"),
            "arguments": spec.get("arguments", []),
            "environment": spec.get("environment", {}),
            "secrets": {name: None for name in spec.get("secrets") or {}},
            "flavor": spec.get("flavor"),
            "labels": spec.get("labels"),
            "status": {"stage": self.stage, "message": self.message},
            "owner": {"id": "0" * 24, "name": owner, "type": "user"},
        }
        return body

    def log(self, line: str) -> None:
        with self.changed:
            self.logs.append((_now(), line))
            self.changed.notify_all()

    def finish(self, stage: str, message: str | None = None) -> None:
        with self.changed:
            if self.stage not in TERMINAL:
                self.stage, self.message = stage, message
            self.changed.notify_all()


def run_job(hub, job: FakeJob) -> None:
    """Run the job's command in a subprocess; called in a thread of its own."""
    job.workdir = tempfile.mkdtemp(prefix=f"fake-job-{job.id}-")
    spec = job.spec
    env = {
        "PATH": os.path.dirname(sys.executable) + os.pathsep + "/usr/local/bin:/usr/bin:/bin",
        "HOME": job.workdir,
        "LANG": "C.UTF-8",
        "HF_ENDPOINT": hub.url,
        "HF_HOME": os.path.join(job.workdir, ".hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "NO_PROXY": "127.0.0.1,localhost",
        "JOB_ID": job.id,
        "ACCELERATOR": "none",
    }
    env.update(hub.job_env)
    if is_stock(spec.get("dockerImage")):
        env.pop("PYTHONPATH", None)
        try:
            env["PATH"] = stock_environment(job.workdir) + os.pathsep + "/usr/local/bin:/usr/bin:/bin"
        except (OSError, subprocess.SubprocessError) as error:
            job.finish("ERROR", f"the fake could not make the stock image: {error}")
            return
    env.update({key: str(value) for key, value in (spec.get("environment") or {}).items()})
    env.update({key: str(value) for key, value in (spec.get("secrets") or {}).items()})
    job.log(f"===== Job started at {_now()} =====")
    with job.changed:
        if job.canceled:
            return
        try:
            job.process = subprocess.Popen(
                list(spec["command"]) + list(spec.get("arguments") or []), cwd=job.workdir, env=env,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        except OSError as error:
            job.finish("ERROR", f"cannot start the command: {error}")
            return
        job.stage = "RUNNING"
    timeout = spec.get("timeoutSeconds")
    timer = threading.Timer(timeout, lambda: _stop(job, "timeout")) if timeout else None
    if timer:
        timer.start()
    for line in job.process.stdout:
        job.log(line.rstrip("\n"))
    job.exit_code = job.process.wait()
    if getattr(hub, "hold_jobs", False):  # the test decides when the job ends (a cancel ends it too)
        job.release.wait()
    if timer:
        timer.cancel()
    if job.forced is not None:
        job.finish(*job.forced)
    elif job.canceled:
        job.finish("CANCELED")
    elif job.timed_out:
        job.finish("ERROR", "Job timed out")
    elif job.exit_code == 0:
        job.finish("COMPLETED")
    else:
        job.finish("ERROR", f"Job failed with exit code: {job.exit_code}")


GRACE_SECONDS = 20  # as a container is stopped: SIGTERM to its first process, SIGKILL to all after a grace


def _stop(job: FakeJob, why: str) -> None:
    with job.changed:
        if why == "cancel":
            job.canceled = True
        else:
            job.timed_out = True
        job.release.set()
        if job.process is not None and job.process.poll() is None:
            job.process.send_signal(signal.SIGTERM)
            threading.Timer(GRACE_SECONDS, _kill, args=(job,)).start()
        elif job.process is None:
            job.finish("CANCELED")


def end_job(job: FakeJob, stage: str, message: str | None = None) -> None:
    """End `job` with `stage` and `message` now (hub.end_job): its command killed, as a machine that goes away
    kills it, or, when it has ended and hold_jobs holds the job, the job released into that stage."""
    with job.changed:
        job.forced = (stage, message)
        job.release.set()
        if job.process is None:
            job.finish(stage, message)
        elif job.process.poll() is None:
            _kill(job)


def _kill(job: FakeJob) -> None:
    try:
        os.killpg(job.process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def route(handler, method: str, segments: list[str], _Response, _error):
    """(kind, route) for /api/jobs/... on the test Hub's request handler (with its answer and error types)."""
    hub = handler.hub
    rest = segments[2:]

    def check(namespace: str) -> None:
        handler._need_write()
        if namespace != hub.user:
            raise _error(403, f"you cannot run jobs in {namespace}")

    def create():
        check(rest[0])
        body = handler._json()
        with hub._lock:
            job = FakeJob(id=f"{len(hub.jobs) + 1:024x}", namespace=rest[0], spec=body)
            hub.jobs.append(job)
        threading.Thread(target=run_job, args=(hub, job), name=f"fake-job-{job.id}", daemon=True).start()
        if getattr(hub, "on_job_created", None):  # a test acts while the client still waits for the answer
            hub.on_job_created(job)
        return _Response(200, job.info(hub.user))

    def find() -> FakeJob:
        check(rest[0])
        for job in hub.jobs:
            if job.id == rest[1] and job.namespace == rest[0]:
                return job
        raise _error(404, f"Job {rest[1]} not found")

    def inspect():
        return _Response(200, find().info(hub.user))

    def cancel():
        _stop(find(), "cancel")
        return _Response(200, {})

    def logs():
        """Server-sent events in a chunked body, from the first line (or the last `tail`), until the job ends."""
        job = find()
        tail = handler.query.get("tail")
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Cache-Control", "no-cache")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.send_header("Connection", "close")
        handler.end_headers()
        handler.close_connection = True
        response = _Response(200)
        response.streamed = True
        sent = max(0, len(job.logs) - int(tail[0])) if tail else 0
        last = None
        while True:
            if hub._take_log_drop(None):  # drop_log_stream(): broken now
                return _drop(response, job, last)
            with job.changed:
                lines, done = job.logs[sent:], job.stage in TERMINAL
                if not lines and not done:
                    job.changed.wait(0.1)
                    continue
            for timestamp, line in lines:
                event = f"data: {json.dumps({'timestamp': timestamp, 'data': line})}\n\n".encode()
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                sent, last = sent + 1, line
                if hub._take_log_drop(line):  # drop_log_stream(after=...): broken right after this line
                    handler.wfile.flush()
                    return _drop(response, job, last)
            handler.wfile.flush()
            if done and sent >= len(job.logs):
                break
        handler.wfile.write(b"0\r\n\r\n")
        return response

    def _drop(response, job: FakeJob, last: str | None):
        """The connection closes with the chunked body unfinished: no last chunk, nothing said."""
        import socket

        with hub._lock:
            hub.log_drops.append((job.id, last))
        try:
            handler.wfile.flush()
            handler.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return response

    if len(rest) == 1 and method == "POST":
        return "run_job", create
    if len(rest) == 2 and method == "GET":
        return "inspect_job", inspect
    if len(rest) == 3 and rest[2] == "logs" and method == "GET":
        return "job_logs", logs
    if len(rest) == 3 and rest[2] == "cancel" and method == "POST":
        return "cancel_job", cancel
    return "unknown", None


def wait_for(predicate, timeout: float = 60.0, every: float = 0.1):
    """Poll `predicate` until it returns something true; that value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {getattr(predicate, '__name__', predicate)}")
