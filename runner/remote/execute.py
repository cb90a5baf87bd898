"""`runner jobs exec REPO FOLDER`: what a Hugging Face job started by `runner run --on hf-jobs` runs.

It downloads FOLDER/input/ of the dataset repository REPO (the spec and the files it names), runs
`runner run` on it, and uploads the run record to FOLDER/output/ (without checkpoints, and without the
model unless --fetch-model) with the exit code in FOLDER/exit.json, in one commit, then exits with that
code (0-255: a run killed by signal N is 128+N). The token is the job's HF_TOKEN secret. SIGTERM (a
canceled job) reaches the run, which saves a checkpoint and stops; its record is uploaded all the same.

exit.json also says what the job saw: torch's build, the CUDA version it was built for, the NVIDIA driver and the
GPU (`runner run --on` writes them into the run's run.json, under `job`). On a GPU flavor (--flavor), a job whose
torch sees no usable CUDA device stops first, before downloading anything, with one `error:` line saying why and
exit code 69 (install.NO_CUDA_EXIT): never a CPU run billed as GPU time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from runner.console import say
from runner.record.rundir import ASIDE, CHECKPOINTS, MERGED, MODEL, ONNX
from runner.remote.hubapi import EXIT_FILE, INPUT, OUTPUT
from runner.remote.install import NO_CUDA_EXIT, gpu_flavor

NEVER_UPLOADED = (CHECKPOINTS, ASIDE)
MODEL_ENTRIES = (MODEL, MERGED, ONNX)


def exec_job(repo_id: str, folder: str, fetch_model: bool = False, work: Path | None = None,
             flavor: str = "") -> int:
    from huggingface_hub import HfApi, snapshot_download
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # the log is a file, not a terminal
    work = Path(work or Path.cwd() / "runner-job")
    token = os.environ.get("HF_TOKEN") or None
    seen, reason = machine(flavor)
    if reason:  # before anything is downloaded: a GPU flavor without CUDA stops here
        say(f"error: {reason}", flush=True)
        upload_record(HfApi(token=token), repo_id, folder, work / "run", NO_CUDA_EXIT, False, seen)
        return NO_CUDA_EXIT
    run_dir = work / "run"
    running: list = []  # the run, once started; SIGTERM (the job canceled or timed out) goes to it
    stopped: list[int] = []

    def stop(number, frame):
        stopped.append(number)
        for process in running:
            process.send_signal(number)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        say(f"runner jobs exec: downloading datasets/{repo_id}/{folder}/{INPUT}", flush=True)
        snapshot_download(repo_id, repo_type="dataset", allow_patterns=[f"{folder}/{INPUT}/*"], local_dir=work,
                          token=token)
        code = 128 + signal.SIGTERM
        if not stopped:
            # From the job's folder, so that messages name input/spec.yaml:LINE:COLUMN.
            running.append(subprocess.Popen(
                [sys.executable, "-m", "runner", "run", f"{INPUT}/spec.yaml", "--output", str(run_dir)],
                cwd=work / folder, env={**os.environ, "PYTHONUNBUFFERED": "1"}))
            code = running[0].wait()
            code = 128 - code if code < 0 else code  # killed by signal N: 128+N, as a shell says it (0-255)
    finally:
        signal.signal(signal.SIGTERM, previous)
    try:
        uploaded = upload_record(HfApi(token=token), repo_id, folder, run_dir, code, fetch_model, seen)
    except Exception as error:  # noqa: BLE001 - the run's own exit code matters more; say what failed
        say(f"error: uploading the run record failed: {type(error).__name__}: {str(error).splitlines()[0]}",
              file=sys.stderr, flush=True)
        return code or 1
    say(f"runner jobs exec: uploaded {uploaded} files of the record to datasets/{repo_id}/{folder}/{OUTPUT} "
          f"(exit {code})", flush=True)
    return code


def record_files(run_dir: Path, fetch_model: bool) -> list[tuple[str, Path]]:
    """(path under output/, local file) of the run record to upload."""
    skipped = NEVER_UPLOADED + (() if fetch_model else MODEL_ENTRIES)
    files = []
    for path in sorted(run_dir.rglob("*")) if run_dir.is_dir() else ():
        parts = path.relative_to(run_dir).parts
        if path.is_file() and parts[0] not in skipped and not any(part.startswith(".") for part in parts):
            files.append(("/".join(parts), path))
    return files


def upload_record(api, repo_id: str, folder: str, run_dir: Path, code: int, fetch_model: bool,
                  seen: dict | None = None) -> int:
    from huggingface_hub import CommitOperationAdd

    files = record_files(run_dir, fetch_model)
    operations = [CommitOperationAdd(f"{folder}/{OUTPUT}/{name}", str(path)) for name, path in files]
    operations.append(CommitOperationAdd(f"{folder}/{EXIT_FILE}",
                                         json.dumps({"exit_code": code, **(seen or {})}).encode()))
    api.create_commit(repo_id, operations, repo_type="dataset", commit_message=f"runner job record (exit {code})")
    return len(files)


def machine(flavor: str) -> tuple[dict, str]:
    """(what the job sees: torch, cuda, driver, gpu; why a GPU flavor cannot train here, or '')."""
    from runner.train import doctor

    try:
        state = doctor.probe_torch_cuda()
    except Exception as error:  # noqa: BLE001 - torch that does not import: the run says so itself
        return {}, (f"flavor {flavor} has a GPU but torch does not import ({type(error).__name__})"
                    if gpu_flavor(flavor or "cpu") else "")
    driver = doctor.driver_version()
    seen = {"torch": state.torch_version, "cuda": state.cuda_build, "driver": driver,
            "gpu": state.devices[0]["name"] if state.devices else None}
    if not gpu_flavor(flavor or "cpu"):
        return seen, ""
    evidence = doctor.nvidia_gpu_evidence() or (f"torch sees {len(state.devices)} GPU(s)" if state.usable else "")
    if evidence:
        problem = doctor.why_gpu_unusable(state, driver, evidence)
        if problem:
            return seen, f"flavor {flavor}: {problem[0]}; stopped before training, so no GPU time goes to a CPU run"
        return seen, ""
    return seen, (f"flavor {flavor} should have a GPU, but this job has none: torch {state.torch_version} (CUDA "
                  f"build {state.cuda_build or 'none'}) sees no CUDA device and no /dev/nvidia* node exists; stopped "
                  "before training, so no GPU time goes to a CPU run")
