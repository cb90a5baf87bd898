"""`runner run SPEC --on hf-jobs[:FLAVOR]` through the real huggingface_hub client, against the test
Hub (tests/support/hub_server.py) whose Jobs endpoints (tests/support/hub_jobs.py) run the submitted command here:
upload, job, streamed log, remote `runner jobs exec`, record back, exit code, cancel; a log stream that breaks
and a status call that fails (tried again, then given up with how to follow the job), a job that ends ERROR."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import ROOT, labelled_rows, run_cli, tiny_spec_text, write_csv, write_spec
from support.hub_jobs import wait_for
from support.hub_server import TEST_TOKEN

from runner import __version__
from runner.errors import SpecError
from runner.record.rundir import RunDir
from runner.remote.dispatch import job_image, job_inputs, parse_target
from runner.remote.joblabels import check_folder_name, job_key
from runner.spec.document import load_spec, load_spec_text

IMAGE = "registry.test/runner"
JOBS_REPO = "tester/runner-jobs"


# An earlier finished run's record, as runner writes one (format, spec_sha256): a run.json of another shape is
# no run's, and a run refuses its folder.
EARLIER = '{"format": 2, "spec_sha256": "0", "status": "finished"}'


@pytest.fixture
def jobs_hub(fake_hub, tmp_path, monkeypatch):
    """The test Hub with jobs that run this working tree, and a runner image set."""
    fake_hub.job_env.update({"PYTHONPATH": str(ROOT), "RUNNER_CACHE_DIR": str(tmp_path / "remote-cache"),
                             "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})
    monkeypatch.setenv("RUNNER_JOBS_IMAGE", IMAGE)
    monkeypatch.setenv("RUNNER_TEST_RETRY_SCALE", "0.01")  # following retries within a second or so, not minutes
    yield fake_hub
    for job in fake_hub.jobs:  # nothing keeps running after a test
        job.release.set()
        if job.process is not None and job.process.poll() is None:
            os.killpg(job.process.pid, signal.SIGKILL)


def repo_files(hub) -> dict[str, bytes]:
    return hub.files(JOBS_REPO, repo_type="dataset")


def test_a_signal_while_the_job_is_being_started_cancels_it(jobs_hub, tmp_path, tiny_model, tiny_data):
    """SIGTERM that landed while the start request was on its way (the job created, its answer not yet read) said
    "interrupted ... run it again" and left the job running and billing. The start is shielded: the signal waits
    for the answer, and the job is cancelled. The moment is exact: the fake Hub sends the signal before it answers."""
    import time

    jobs_hub.hold_jobs = True
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    process = subprocess.Popen([sys.executable, "-m", "runner", "run", str(spec), "--on", "hf-jobs:cpu-basic"],
                               cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)

    def signal_then_answer(job) -> None:
        process.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # only gives the signal time to land while the client waits; the outcome does not hang on it

    jobs_hub.on_job_created = signal_then_answer
    try:
        out, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 143, out[-2000:] + err[-2000:]
    job = jobs_hub.jobs[0]
    assert f"canceled job {job.id}" in err and "Traceback" not in err, err[-2000:]
    wait_for(lambda: job.stage == "CANCELED")


# ---------------------------------------------------------------------------------------------
# Settings


def test_target_image_and_inputs(tmp_path, tiny_model, tiny_data, monkeypatch):
    assert parse_target("hf-jobs") == "a10g-small" and parse_target("hf-jobs:h200x8") == "h200x8"
    for bad in ("hf-job:t4-small", "hf-jobs:a10g-smal", "modal"):
        with pytest.raises(SpecError):
            parse_target(bad)
    monkeypatch.delenv("RUNNER_JOBS_IMAGE", raising=False)
    assert job_image() is None  # no image: a stock one, on which the job installs this runner (test_stock_image.py)
    assert job_image("ghcr.io/me/runner") == f"ghcr.io/me/runner:{__version__}"
    assert job_image("localhost:5000/runner") == f"localhost:5000/runner:{__version__}"
    assert job_image("ghcr.io/me/runner:dev") == "ghcr.io/me/runner:dev"
    # The folder a job gets is the only kind `jobs fetch` takes: a plain name, whatever the spec's name holds.
    for name in ("tiny", "../../etc", "/abs/x", "é" * 90, ".."):
        assert check_folder_name(f"jobs/{job_key(name)}").count("/") == 1
    for bad in ("/tmp/x", "jobs/../x", "jobs/20250101-000000-a-abcdef/..", "20250101-000000-a-abcdef", ""):
        with pytest.raises(SpecError, match="is not a job folder"):
            check_folder_name(bad)

    spec = load_spec(write_spec(tmp_path, tiny_spec_text(tiny_model)))
    changes, files = job_inputs(spec.data, spec.model, spec.resolve)
    values = spec.replace(**changes).values  # as dispatch uploads it
    names = dict(files)
    assert names["data/train/train.csv"] == tiny_data and values["data"]["train"] == "data/train/train.csv"
    assert values["model"]["name"] == "./model" and "model/config.json" in names
    # What the job runs validates there as it did here, once the files sit next to it.
    remote = tmp_path / "remote"
    for name, path in files:
        (remote / name).parent.mkdir(parents=True, exist_ok=True)
        (remote / name).write_bytes(path.read_bytes())
    from runner.remote.dispatch import spec_text

    (remote / "spec.yaml").write_text(spec_text(values, spec.path))
    again = load_spec_text((remote / "spec.yaml").read_text(), remote / "spec.yaml")
    assert {k: v for k, v in again.values.items() if k not in ("data", "model", "output")} == {
        k: v for k, v in spec.values.items() if k not in ("data", "model", "output")}


# ---------------------------------------------------------------------------------------------
# End to end


def test_a_run_on_hf_jobs_comes_back_with_its_record(jobs_hub, tmp_path, tiny_model, tiny_data):
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    result = run_cli("run", str(spec), "--on", "hf-jobs:cpu-upgrade", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    assert len(jobs_hub.jobs) == 1
    job = jobs_hub.jobs[0]
    assert job.spec["flavor"] == "cpu-upgrade"
    assert job.spec["dockerImage"] == f"{IMAGE}:{__version__}"
    assert job.spec["secrets"] == {"HF_TOKEN": TEST_TOKEN}  # the token travels as a secret, and only so
    assert TEST_TOKEN not in json.dumps({key: value for key, value in job.spec.items() if key != "secrets"})
    assert job.spec["command"][:4] == ["runner", "jobs", "exec", JOBS_REPO]
    assert f"{jobs_hub.url}/jobs/tester/{job.id}" in result.stdout
    assert "runner jobs exec: uploaded" in result.stdout  # the job's own log, streamed here
    assert TEST_TOKEN not in result.stdout + result.stderr
    # The inputs were committed before the job started.
    kinds = [request["kind"] for request in jobs_hub.requests]
    assert kinds.index("commit") < kinds.index("run_job")

    files = repo_files(jobs_hub)
    assert jobs_hub.repo(JOBS_REPO, "dataset").private
    folder = job.spec["command"][4]
    assert {f"{folder}/input/spec.yaml", f"{folder}/input/data/train/train.csv",
            f"{folder}/input/model/config.json", f"{folder}/output/metrics.json"} <= set(files)
    seen = json.loads(files[f"{folder}/exit.json"])
    assert seen["exit_code"] == 0 and seen["torch"] == torch.__version__ and seen["gpu"] is None
    assert not any(name.startswith(f"{folder}/output/model/") for name in files)  # no --fetch-model
    assert not any(TEST_TOKEN.encode() in content for content in files.values())

    run = tmp_path / "run"
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["status"] == "finished"
    assert manifest["job"] == {"backend": "hf-jobs", "id": job.id, "url": f"{jobs_hub.url}/jobs/tester/{job.id}",
                               "flavor": "cpu-upgrade", "image": f"{IMAGE}:{__version__}", "runner_from": "image",
                               "torch": torch.__version__, "cuda": torch.version.cuda, "driver": None, "gpu": None}
    assert json.loads((run / "metrics.json").read_text()) == json.loads(files[f"{folder}/output/metrics.json"])
    assert (run / "report.md").is_file() and list(run.glob("*.png"))
    assert not (run / "model").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.job-")]  # staging removed


def test_a_job_that_fails_remotely_exits_with_its_code_and_one_line(jobs_hub, tmp_path, tiny_data):
    # A Hub model that does not exist: the spec is valid here, the run fails there.
    spec = write_spec(tmp_path, tiny_spec_text("tester/no-such-model"))
    (tmp_path / "run").mkdir()  # an earlier run, which --overwrite would replace with a finished one only
    (tmp_path / "run" / "run.json").write_text(EARLIER)
    result = run_cli("run", str(spec), "--on", "hf-jobs:cpu-basic", "--overwrite", cwd=tmp_path)
    job = jobs_hub.jobs[0]
    assert job.exit_code not in (0, None)
    assert result.returncode == job.exit_code, result.stdout[-3000:] + result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"job {job.id} on cpu-basic failed (exit {job.exit_code})" in errors[0]
    assert "model.name" in errors[0]  # the run's own error, from the job's log
    assert job.stage == "ERROR"
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["run.json"]
    assert (tmp_path / "run" / "run.json").read_text() == EARLIER
    assert "is as it was" in result.stderr


def test_a_missing_token_is_refused_before_anything_is_uploaded(jobs_hub, tmp_path, tiny_model, tiny_data):
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    env = {key: value for key, value in os.environ.items() if key != "HF_TOKEN"}
    result = subprocess.run([sys.executable, "-m", "runner", "run", str(spec), "--on", "hf-jobs"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "no Hugging Face token" in result.stderr
    assert jobs_hub.requests == [] and jobs_hub.jobs == []


def test_a_bad_spec_costs_nothing(jobs_hub, tmp_path, tiny_model, tiny_data):
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model).replace("epochs: 1\n", "epochs: zero\n"))
    result = run_cli("run", str(spec), "--on", "hf-jobs", cwd=tmp_path)
    assert result.returncode == 2 and "spec.yaml" in result.stderr
    result = run_cli("run", str(write_spec(tmp_path, tiny_spec_text(tiny_model), "ok.yaml")), "--on",
                     "hf-jobs:a10g-smal", cwd=tmp_path)
    assert result.returncode == 2 and "did you mean a10g-small" in result.stderr
    result = run_cli("run", str(tmp_path / "ok.yaml"), "--on", "hf-jobs:a10g", "--dry-run", cwd=tmp_path)
    assert result.returncode == 2 and "did you mean a10g-" in result.stderr, result.stderr  # not a100x8
    result = run_cli("run", str(tmp_path / "ok.yaml"), "--on", "hf-jobs:T4-SMALL", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0 and "flavor t4-small" in result.stdout, result.stderr
    for flag in ("--resume", "--force-resume"):  # a job starts from scratch: neither is taken silently
        result = run_cli("run", str(tmp_path / "ok.yaml"), "--on", "hf-jobs", flag, "--dry-run", cwd=tmp_path)
        assert result.returncode == 2 and f"{flag} continues a local run" in result.stderr, result.stderr
    result = run_cli("run", str(tmp_path / "ok.yaml"), "--on", "hf-jobs:t4-small", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0 and f"flavor t4-small, image {IMAGE}:{__version__}" in result.stdout
    assert "uploads: spec.yaml and" in result.stdout
    result = run_cli("run", str(tmp_path / "ok.yaml"), "--detach", cwd=tmp_path)  # --detach needs --on
    assert result.returncode == 2 and "--detach needs --on" in result.stderr
    (tmp_path / "run").mkdir()  # a run already in the output folder: refused before the upload, kept as it was
    (tmp_path / "run" / "run.json").write_text(EARLIER)
    result = run_cli("run", str(tmp_path / "ok.yaml"), "--on", "hf-jobs", cwd=tmp_path)
    assert result.returncode == 2 and "already holds a finished run" in result.stderr
    assert (tmp_path / "run" / "run.json").read_text() == EARLIER
    assert jobs_hub.requests == [] and jobs_hub.jobs == []


def test_the_data_is_checked_here_before_anything_is_uploaded(jobs_hub, tmp_path, tiny_model, tiny_data):
    """`--on hf-jobs --set data.text_column=tweet` uploaded and started a (billed) job that then failed on the
    missing column: the data checks a local run makes come before the upload."""
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    result = run_cli("run", str(spec), "--on", "hf-jobs", "--set", "data.text_column=tweet", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "tweet" in result.stderr and "Traceback" not in result.stderr
    assert jobs_hub.requests == [] and jobs_hub.jobs == [] and not (tmp_path / "run").exists()


def test_a_job_that_never_runs_says_why(jobs_hub, tmp_path, tiny_model, tiny_data):
    jobs_hub.job_env["PATH"] = str(tmp_path / "empty")  # an image without `runner`: the command cannot start
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    result = run_cli("run", str(spec), "--on", "hf-jobs", cwd=tmp_path)
    job = jobs_hub.jobs[0]
    assert result.returncode == 1 and job.stage == "ERROR"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "ended ERROR without a run record: cannot start the command" in errors[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.timing
def test_detach_then_status_and_cancel(jobs_hub, tmp_path, tiny_model, tiny_data):
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model).replace("epochs: 1\n", "epochs: 50\n"))
    result = run_cli("run", str(spec), "--on", "hf-jobs:cpu-upgrade", "--detach", "--job-timeout", "10m", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    job = jobs_hub.jobs[0]
    assert job.spec["timeoutSeconds"] == 600 and job.id in result.stdout
    wait_for(lambda: any("'loss'" in line for _, line in job.logs), timeout=120)  # training
    cancel = run_cli("jobs", "cancel", job.id, cwd=tmp_path)
    assert cancel.returncode == 0 and f"canceled job {job.id}" in cancel.stdout
    wait_for(lambda: job.stage == "CANCELED", timeout=120)
    # The run saved a checkpoint and stopped; what it wrote went up with the exit code of a SIGTERM.
    folder = job.spec["command"][4]
    files = repo_files(jobs_hub)
    assert json.loads(files[f"{folder}/exit.json"])["exit_code"] == 143
    assert json.loads(files[f"{folder}/output/run.json"])["status"] == "interrupted"
    fetched = run_cli("jobs", "fetch", job.id, "--output", str(tmp_path / "fetched"), cwd=tmp_path)
    assert fetched.returncode == 143 and (tmp_path / "fetched" / "run.json").is_file()
    status = run_cli("jobs", "status", job.id, cwd=tmp_path)
    assert status.returncode == 1 and f"{job.id} CANCELED" in status.stdout and "cpu-upgrade" in status.stdout


@pytest.mark.timing
def test_ctrl_c_without_a_terminal_cancels_the_job(jobs_hub, tmp_path, tiny_model, tiny_data):
    jobs_hub.hold_jobs = True  # the job cannot end before the signal lands, however fast or slow the machine
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    process = subprocess.Popen([sys.executable, "-m", "runner", "run", str(spec), "--on", "hf-jobs:cpu-basic"],
                               cwd=tmp_path,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        job = wait_for(lambda: jobs_hub.jobs and jobs_hub.jobs[0].stage == "RUNNING" and jobs_hub.jobs[0])
        wait_for(lambda: any("downloading" in line for _, line in job.logs))
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, out[-2000:] + err[-2000:]
    assert f"canceled job {job.id}" in err
    wait_for(lambda: job.stage == "CANCELED")


# ---------------------------------------------------------------------------------------------
# The GitHub Action: `compute: hf-jobs:FLAVOR`


def test_the_action_trains_on_hf_jobs_and_comments_from_the_returned_record(jobs_hub, tmp_path, tiny_model,
                                                                             monkeypatch):
    from support.github_fake import FakeGitHub, actions_env, read_outputs

    from runner.publish import action

    repo = tmp_path / "repo"
    write_csv(repo / "specs" / "data" / "train.csv", labelled_rows())
    write_spec(repo / "specs", tiny_spec_text(tiny_model, extra="gate:\n  min: 0.999\n"), "tiny.yaml")
    monkeypatch.chdir(repo)
    with FakeGitHub(login=None) as github:
        env = actions_env(tmp_path, github.url) | {"RUNNER_TEMP": str(tmp_path / "temp"), "HF_TOKEN": TEST_TOKEN,
                                                  "INPUT_SPEC": "specs/tiny.yaml", "INPUT_COMPUTE": "hf-jobs:cpu-basic",
                                                  "GITHUB_WORKSPACE": str(repo)}
        code = action.run_action(env)
        [comment] = github.comments[7]
    assert code == 1  # the gate (min 0.999) judged the record the job brought back
    [job] = jobs_hub.jobs
    assert job.spec["flavor"] == "cpu-basic" and job.spec["secrets"] == {"HF_TOKEN": TEST_TOKEN}
    outputs = read_outputs(tmp_path / "output.txt")
    run_dir = Path(outputs["run-dir"])
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    assert "f1_macro" in comment["body"] and "gate" in comment["body"].lower()
    assert TEST_TOKEN not in comment["body"]


def test_the_action_says_hf_token_is_needed(tmp_path, monkeypatch, capsys):
    from runner.publish import action

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INPUT_SPEC", "specs/tiny.yaml")
    monkeypatch.setenv("INPUT_COMPUTE", "hf-jobs:a10g-small")
    monkeypatch.setenv("RUNNER_TEMP", str(tmp_path))
    (tmp_path / "specs").mkdir()
    write_spec(tmp_path / "specs", "version: 1\n", "tiny.yaml")
    monkeypatch.chdir(tmp_path)
    assert action.main() == 1
    annotation = [line for line in capsys.readouterr().out.splitlines() if line.startswith("::error")]
    # the hf-token input (never the step's env: a composite action hands its env to every inner step)
    assert len(annotation) == 1 and "the hf-token input is not set" in annotation[0]
    assert "hf-token: ${{ secrets.HF_TOKEN }}" in annotation[0]


@pytest.mark.timing
def test_ctrl_c_on_a_terminal_asks_and_can_leave_the_job_running(jobs_hub, tmp_path, tiny_model, tiny_data):
    import pty

    jobs_hub.hold_jobs = True  # the job cannot end before the signal lands, however fast or slow the machine
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "runner", "run", str(spec), "--on", "hf-jobs:cpu-basic"],
                               cwd=tmp_path,
                               stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(slave)
    try:
        job = wait_for(lambda: jobs_hub.jobs and jobs_hub.jobs[0].stage == "RUNNING" and jobs_hub.jobs[0])
        wait_for(lambda: any("downloading" in line for _, line in job.logs))
        process.send_signal(signal.SIGINT)
        os.write(master, b"n\n")  # "cancel job ...?" no
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
        os.close(master)
    assert process.returncode == 130, out[-2000:] + err[-2000:]
    assert f"left job {job.id} running" in err and f"runner jobs cancel {job.id}" in err
    assert job.stage == "RUNNING" and not job.canceled
    assert run_cli("jobs", "cancel", job.id, cwd=tmp_path).returncode == 0
    wait_for(lambda: job.stage == "CANCELED", timeout=120)


def test_a_failed_job_never_replaces_an_earlier_run(jobs_hub, tmp_path, tiny_model, tiny_data):
    """The job trains, then its push is refused: exit 1 with the run's record on the Hub, and the
    earlier run here stays as it was even with --overwrite (as a failed local run puts it back)."""
    extra = "hub:\n  repo_id: tester/tiny-remote\n  push: true\n"
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model, extra=extra))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "run.json").write_text(EARLIER)
    process = subprocess.Popen([sys.executable, "-m", "runner", "run", str(spec), "--on", "hf-jobs:cpu-basic",
                                "--overwrite"],
                               cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        job = wait_for(lambda: jobs_hub.jobs and jobs_hub.jobs[0].stage == "RUNNING" and jobs_hub.jobs[0])
        jobs_hub.fail_next("commit", times=1, status=400)  # the next commit is the run's push
        out, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 1, out[-2000:] + err[-2000:]
    folder = job.spec["command"][4]
    files = repo_files(jobs_hub)
    assert json.loads(files[f"{folder}/exit.json"])["exit_code"] == 1
    assert json.loads(files[f"{folder}/output/run.json"])["status"] == "finished"  # trained, push refused
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["run.json"]
    assert (tmp_path / "run" / "run.json").read_text() == EARLIER
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "push failed" in errors[0]


# ---------------------------------------------------------------------------------------------
# Following a job through network trouble, and how a job's end is told (issue #32)


def job_lines(job) -> list[str]:
    """What the job printed, as huggingface_hub hands it on (without the service's `===== Job started` line)."""
    return [line for _, line in job.logs if not line.startswith("===== Job started")]


def shown_once(output: str, lines: list[str]) -> bool:
    """Whether `lines` appear in `output` once each, in order, none between them (`\r` of a progress bar kept)."""
    out = output.split("\n")
    return bool(lines) and out.count(lines[0]) == 1 and out[out.index(lines[0]):][:len(lines)] == lines


def notes(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("note:")]


def test_a_dropped_log_stream_and_a_failed_status_call_are_tried_again(jobs_hub, tmp_path, tiny_model, tiny_data):
    # Mid-job the log stream breaks (the connection closes without the chunked body's end), and the status call
    # that follows fails too (the connection closes unanswered): before, the command gave up at once.
    jobs_hub.drop_log_stream(after="runner jobs exec: downloading")
    jobs_hub.fail_next("inspect_job", times=1, status=0)
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    result = run_cli("run", str(spec), "--on", "hf-jobs:cpu-basic", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [job] = jobs_hub.jobs
    assert [(job.id, line.startswith("runner jobs exec: downloading")) for job_id, line in jobs_hub.log_drops] == [
        (job.id, True)]
    statuses = [request["status"] for request in jobs_hub.requests if request["kind"] == "inspect_job"]
    assert statuses[0] == 0 and [r["kind"] for r in jobs_hub.requests].count("job_logs") >= 2
    assert shown_once(result.stdout, job_lines(job)), result.stdout[-3000:]  # all of it, nothing twice
    said = notes(result.stderr)
    assert len(said) == 2, result.stderr[-3000:]
    assert said[0].startswith(f"note: following job {job.id}: RemoteProtocolError: ") and "trying again in" in said[0]
    assert said[1] == f"note: reconnected to job {job.id}; its log goes on where it stopped, no line shown twice"
    assert "error:" not in result.stderr and "Traceback" not in result.stderr
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "finished"
    assert not job.canceled and job.stage == "COMPLETED"


FAKE_RUNNER = """\
import os, sys, threading
from huggingface_hub import CommitOperationAdd, HfApi

repo, folder = sys.argv[3], sys.argv[4]  # runner jobs exec REPO FOLDER
for number in range(1, 21):
    print(f"fake run: line {number}", flush=True)
if os.environ.get("FAKE_RUN") == "hang":  # killed by hub.end_job before any record exists
    print("fake run: training", flush=True)
    threading.Event().wait()
record = {"exit.json": '{"exit_code": 0}', "output/run.json": '{"status": "finished"}',
          "output/metrics.json": '{"validation": {"accuracy": 0.5}}'}
HfApi().create_commit(repo, [CommitOperationAdd(f"{folder}/{name}", text.encode()) for name, text in record.items()],
                      repo_type="dataset", commit_message="the record")
print("fake run: uploaded the record", flush=True)
"""


def fake_image(hub, tmp_path: Path, hang: bool = False) -> None:
    """Jobs run an image whose `runner jobs exec REPO FOLDER` takes a second: 20 lines, then a finished run's whole
    record uploaded to FOLDER, exit 0 (hang: it waits after the lines, until hub.end_job kills it)."""
    image = tmp_path / "fake-image"
    image.mkdir(exist_ok=True)
    (image / "runner").write_text(f"#!{sys.executable}\n{FAKE_RUNNER}")
    (image / "runner").chmod(0o755)
    hub.job_env["PATH"] = f"{image}{os.pathsep}/usr/bin{os.pathsep}/bin"
    hub.job_env["FAKE_RUN"] = "hang" if hang else ""


class Running:
    """`runner ARGS` in a subprocess whose output lines are collected as they come, for a test to wait on."""

    def __init__(self, *args: str, cwd: Path):
        import threading

        self.process = subprocess.Popen([sys.executable, "-m", "runner", *args], cwd=cwd, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        self.readers = [threading.Thread(target=lambda s=s, into=into: into.extend(s), daemon=True)
                        for s, into in ((self.process.stdout, self.out), (self.process.stderr, self.err))]
        for reader in self.readers:
            reader.start()

    def wait(self, timeout: float = 300) -> tuple[int, str, str]:
        code = self.process.wait(timeout=timeout)
        for reader in self.readers:
            reader.join(timeout=30)
        return code, "".join(self.out), "".join(self.err)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()


def test_following_gives_up_after_a_while_and_says_the_job_may_still_run(jobs_hub, tmp_path, tiny_data):
    fake_image(jobs_hub, tmp_path)
    jobs_hub.hold_jobs = True  # the job runs on while its follower has lost it
    spec = write_spec(tmp_path, tiny_spec_text("tester/tiny-model"))
    command = Running("run", str(spec), "--on", "hf-jobs", cwd=tmp_path)
    try:
        wait_for(lambda: "fake run: uploaded the record\n" in command.out)  # printed: the log is followed
        jobs_hub.fail_next("job_logs", times=1000, status=503)  # the service goes away (for good, as it seems)
        jobs_hub.fail_next("inspect_job", times=1000, status=503)
        jobs_hub.drop_log_stream()
        code, out, err = command.wait()
    finally:
        command.kill()
    [job] = jobs_hub.jobs
    error = one_error(subprocess.CompletedProcess([], code, out, err), 1)
    assert error.startswith(f"error: lost job {job.id} while following it: no answer for ") and "503" in error
    assert "tries); the last: " in error
    hint = [line for line in err.splitlines() if line.startswith("hint:")][0]
    assert hint == (f"hint: the job may still be running: follow it with `runner jobs logs {job.id} --follow`, then "
                    f"bring its record back with `runner jobs fetch {job.id} --output {tmp_path / 'run'}`; or stop "
                    f"it with `runner jobs cancel {job.id}`")
    tries = notes(err)
    assert len(tries) >= 3 and all(f"following job {job.id}: " in line and "trying again in" in line for line in tries)
    assert job.stage == "RUNNING" and not job.canceled  # never abandoned to a cancel
    assert not (tmp_path / "run").exists()
    # The service comes back; the job ends; what the hint says works.
    jobs_hub.stop_failing()
    job.release.set()
    wait_for(lambda: job.stage == "COMPLETED")
    fetched = run_cli("jobs", "fetch", job.id, "--output", str(tmp_path / "run"), cwd=tmp_path)
    assert fetched.returncode == 0 and f"job {job.id} finished" in fetched.stdout, fetched.stderr
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "finished"
    # `runner jobs logs --follow` goes through a broken stream and a failed status call as `run --on` does.
    jobs_hub.drop_log_stream(after="fake run: line 7")
    jobs_hub.fail_next("inspect_job", times=1, status=0)
    logs = run_cli("jobs", "logs", job.id, "--follow", cwd=tmp_path)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.split("\n")[:-1] == job_lines(job) and len(jobs_hub.log_drops) == 2
    said = notes(logs.stderr)
    assert len(said) == 2 and "RemoteProtocolError" in said[0] and said[1].startswith("note: reconnected"), said


def test_a_job_that_ends_in_error_or_is_canceled_before_its_record_exits_non_zero(jobs_hub, tmp_path, tiny_data):
    fake_image(jobs_hub, tmp_path, hang=True)
    spec = write_spec(tmp_path, tiny_spec_text("tester/tiny-model"))
    for stage, message in (("ERROR", "Job was evicted: the node failed"), ("CANCELED", None)):
        command = Running("run", str(spec), "--on", "hf-jobs", cwd=tmp_path)
        try:
            job = wait_for(lambda: len(jobs_hub.jobs) and jobs_hub.jobs[-1].stage == "RUNNING" and jobs_hub.jobs[-1])
            wait_for(lambda command=command: "fake run: training\n" in command.out)  # followed; no record yet
            jobs_hub.end_job(job, stage, message)
            code, out, err = command.wait()
        finally:
            command.kill()
        error = one_error(subprocess.CompletedProcess([], code, out, err), 1)
        assert error == (f"error: job {job.id} on a10g-small ended {stage} without a run record"
                         + (f": {message}" if message else "")), error
        assert [line for line in err.splitlines() if not line.startswith("hint:")] == [error], err  # nothing else
        assert not (tmp_path / "run").exists() and job.stage == stage


def test_a_job_that_ends_in_error_after_its_whole_record_warns_and_keeps_it(jobs_hub, tmp_path, tiny_data):
    fake_image(jobs_hub, tmp_path)
    jobs_hub.hold_jobs = True
    spec = write_spec(tmp_path, tiny_spec_text("tester/tiny-model"))
    command = Running("run", str(spec), "--on", "hf-jobs:t4-small", cwd=tmp_path)
    try:
        job = wait_for(lambda: jobs_hub.jobs and jobs_hub.jobs[0].exit_code == 0 and jobs_hub.jobs[0])  # record up
        jobs_hub.end_job(job, "ERROR", "Job timed out")  # the machine failed once the work was done and saved
        code, out, err = command.wait()
    finally:
        command.kill()
    assert code == 0, out[-3000:] + err[-3000:]
    warning = (f"warning: job {job.id} on t4-small ended ERROR: Job timed out, after its run had finished and "
               f"uploaded its whole record; the record is complete (see the job's log: runner jobs logs {job.id})")
    assert [line for line in err.splitlines() if line.startswith(("warning:", "error:"))] == [warning], err
    assert f"job {job.id} finished; the run record is in {tmp_path / 'run'}" in out
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "finished"
    fetched = run_cli("jobs", "fetch", job.id, "--output", str(tmp_path / "fetched"), cwd=tmp_path)
    assert fetched.returncode == 0 and warning in fetched.stderr.splitlines(), fetched.stderr


# ---------------------------------------------------------------------------------------------
# `runner jobs fetch` writes a run folder by the rules of `runner run --output` (issue #30)

RECORD = {"exit.json": '{"exit_code": 0}', "output/run.json": '{"status": "finished"}',
          "output/metrics.json": '{"validation": {"accuracy": 0.5}}', "output/report.md": "# the job's run\n"}


def finished_job(hub, tmp_path, record: dict, command_folder: str | None = None, labels: dict | None = None) -> str:
    """A job that ended COMPLETED, with `record` ({name under its folder: text}) in the jobs repository: the
    image's `runner` does nothing here, so the test says what the job left. `command_folder` and `labels`
    replace what the dispatcher gives."""
    from huggingface_hub import HfApi

    key = f"20250101-000000-tiny-{len(hub.jobs) + 1:06x}"
    folder = f"jobs/{key}"
    hub.upload(JOBS_REPO, {f"{folder}/{name}": text for name, text in record.items()}, repo_type="dataset",
               private=True)
    image = tmp_path / "image-bin"
    if not image.is_dir():
        image.mkdir()
        (image / "runner").write_text("#!/bin/sh\nexit 0\n")
        (image / "runner").chmod(0o755)
    hub.job_env["PATH"] = f"{image}{os.pathsep}/usr/bin{os.pathsep}/bin"
    job = HfApi(token=TEST_TOKEN).run_job(
        image=f"{IMAGE}:{__version__}", command=["runner", "jobs", "exec", JOBS_REPO, command_folder or folder],
        labels={"runner-job": key} if labels is None else labels, namespace="tester")
    fake = wait_for(lambda: [j for j in hub.jobs if j.id == job.id][0])
    wait_for(lambda: fake.stage == "COMPLETED")
    return job.id


def tree(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder`, hidden ones too, with each file's SHA-256."""
    import hashlib

    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "/"
            for path in sorted(folder.rglob("*"))}


def one_error(result, code: int) -> str:
    """The command exited `code` with one `error:` line and a `hint:` line, no traceback; the error line."""
    output = result.stdout[-3000:] + result.stderr[-3000:]
    assert result.returncode == code, output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "internal error" not in errors[0], output
    assert any(line.startswith("hint:") for line in result.stderr.splitlines()), output
    assert "Traceback" not in output
    return errors[0]


def earlier_run(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(EARLIER)  # runner's record: a run.json with format and spec_sha256
    (folder / "metrics.json").write_text('{"validation": {"accuracy": 0.9}}')
    (folder / "model").mkdir()
    (folder / "model" / "config.json").write_text("{}")
    return folder


def test_fetch_writes_its_folder_by_the_rules_of_run_output(jobs_hub, tmp_path):
    job = finished_job(jobs_hub, tmp_path, RECORD)
    user = tmp_path / "user"
    project = user / "project"  # a git repository's root
    (project / ".git").mkdir(parents=True)
    (project / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (project / "README.md").write_text("mine\n")
    write_csv(user / "data" / "train.csv", labelled_rows(per_label=2))
    (user / "home").mkdir()
    (user / "home" / ".bashrc").write_text("export A=1\n")
    earlier = earlier_run(user / "runs" / "earlier")
    before = tree(user)

    def fetch(output: Path, *flags: str):
        return run_cli("jobs", "fetch", job, "--output", str(output), *flags, cwd=tmp_path)

    for output, flags, expected in (
        (project, (), "holds .git, README.md, which no run wrote"),
        (project, ("--overwrite",), "holds .git, README.md, which no run wrote"),
        (user / "home", ("--overwrite",), "holds .bashrc, which no run wrote"),
        (user / "data", ("--overwrite",), "holds train.csv, which no run wrote"),
        (earlier / "model", ("--overwrite",), f"is inside the run folder '{earlier}'"),
        (earlier / "model" / "new", (), f"is inside the run folder '{earlier}'"),
        (earlier, (), "already holds a finished run"),
    ):
        requests = len(jobs_hub.requests)
        error = one_error(fetch(output, *flags), 2)
        assert error.startswith("error: --output: ") and expected in error, (output, error)
        assert len(jobs_hub.requests) == requests  # refused before the Hub is asked anything
        assert tree(user) == before, output

    # A run still writing there holds the folder's lock: --overwrite waits for nobody and replaces nothing.
    with RunDir(earlier).lock():
        error = one_error(fetch(earlier, "--overwrite"), 1)
    assert "in use by another runner process" in error and tree(user) == before

    result = fetch(earlier, "--overwrite")  # an earlier run's folder: replaced by the job's record, whole
    assert result.returncode == 0, result.stderr
    assert f"job {job} finished; the run record is in {earlier}" in result.stdout
    assert sorted(p.name for p in earlier.iterdir()) == ["metrics.json", "report.md", "run.json"]
    assert (earlier / "report.md").read_text() == "# the job's run\n"
    result = fetch(user / "new" / "deep")  # a new folder
    assert result.returncode == 0 and (user / "new" / "deep" / "run.json").is_file(), result.stderr
    left = {k: v for k, v in tree(user).items() if not k.startswith(("runs/earlier", "new"))}
    assert left == {k: v for k, v in before.items() if not k.startswith("runs/earlier")}  # nothing else touched
    assert not [p for p in (user / "runs").iterdir() if p.name != "earlier"]  # no staging left behind


def test_fetch_takes_the_jobs_folder_from_its_label_never_from_its_command(jobs_hub, tmp_path):
    # What an absolute folder in the command made fetch read and move before: exit.json and output/ there.
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "output").mkdir(parents=True)
    (elsewhere / "exit.json").write_text('{"exit_code": 0}')
    (elsewhere / "output" / "run.json").write_text('{"status": "finished"}')
    (elsewhere / "output" / "private.txt").write_text("not the job's\n")
    before = tree(elsewhere)
    cases = [
        (dict(command_folder=str(elsewhere)), "its command names the folder"),
        (dict(command_folder="jobs/../../elsewhere"), "its command names the folder"),
        (dict(command_folder=str(elsewhere), labels={"runner-job": "../../elsewhere"}), "is not a job folder's key"),
        (dict(command_folder=str(elsewhere), labels={}), "was not started by `runner run --on hf-jobs`"),
    ]
    for options, expected in cases:
        job = finished_job(jobs_hub, tmp_path, RECORD, **options)
        result = run_cli("jobs", "fetch", job, "--output", str(tmp_path / "fetched"), cwd=tmp_path)
        error = one_error(result, 2)
        assert expected in error and job in error, (options, error)
        assert tree(elsewhere) == before and not (tmp_path / "fetched").exists()
    # Inside the job too, `runner jobs exec` takes only a folder the dispatcher made.
    result = run_cli("jobs", "exec", JOBS_REPO, str(elsewhere), cwd=tmp_path)
    assert "is not a job folder" in one_error(result, 2) and tree(elsewhere) == before


def test_fetch_refuses_a_damaged_exit_json_and_keeps_the_exit_code_faithful(jobs_hub, tmp_path):
    output = tmp_path / "fetched"
    for content, expected in (
        ("exit 0", "is not JSON"),
        ("\xff", "is not JSON"),
        ("[0]", "holds no exit_code"),
        ("{}", "holds no exit_code"),
        ('{"exit_code": "0"}', "exit_code 0 is not an exit code (0 to 255)"),
        ('{"exit_code": 1.5}', "exit_code 1.5 is not an exit code"),
        ('{"exit_code": true}', "exit_code True is not an exit code"),
        ('{"exit_code": 256}', "exit_code 256 is not an exit code"),  # 256 would exit 0
        ('{"exit_code": -9}', "exit_code -9 is not an exit code"),
    ):
        job = finished_job(jobs_hub, tmp_path, {**RECORD, "exit.json": content})
        error = one_error(run_cli("jobs", "fetch", job, "--output", str(output), cwd=tmp_path), 1)
        assert f"exit.json of job {job}" in error and expected in error, (content, error)
        assert not output.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".fetched")]
    for code in (3, 255):  # a failed run's code is this command's, its record placed in a new folder
        job = finished_job(jobs_hub, tmp_path, {**RECORD, "exit.json": json.dumps({"exit_code": code})})
        result = run_cli("jobs", "fetch", job, "--output", str(tmp_path / f"failed-{code}"), cwd=tmp_path)
        assert f"failed (exit {code})" in one_error(result, code)
        assert (tmp_path / f"failed-{code}" / "run.json").is_file()


def test_fetch_says_finished_only_when_a_run_record_arrived(jobs_hub, tmp_path):
    output = tmp_path / "fetched"
    for record in ({"exit.json": '{"exit_code": 0}', "output/metrics.json": "{}"},  # no run.json
                   {"exit.json": '{"exit_code": 0}'}):  # no output at all
        job = finished_job(jobs_hub, tmp_path, record)
        result = run_cli("jobs", "fetch", job, "--output", str(output), cwd=tmp_path)
        error = one_error(result, 1)
        assert f"job {job}" in error and "exited 0 but left no run record" in error and "output/run.json" in error
        assert "finished" not in result.stdout and not output.exists()
    job = finished_job(jobs_hub, tmp_path, {"output/run.json": '{"status": "finished"}'})  # no exit.json
    assert "without a run record" in one_error(run_cli("jobs", "fetch", job, "--output", str(output),
                                                       cwd=tmp_path), 1)
    assert not output.exists()


def test_run_on_hf_jobs_checks_the_local_folder_before_anything_is_uploaded(jobs_hub, tmp_path, tiny_model,
                                                                             tiny_data):
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    earlier = earlier_run(tmp_path / "earlier")
    before = {"earlier": tree(earlier), "data": tree(tmp_path / "data")}
    for flags, code, expected in (
        (("--output", str(earlier / "sub")), 2, f"is inside the run folder '{earlier}'"),
        (("--output", str(tmp_path / "data"), "--overwrite"), 2, "holds train.csv, which no run wrote"),
        (("--output", str(earlier)), 2, "already holds a finished run"),
    ):
        error = one_error(run_cli("run", str(spec), "--on", "hf-jobs", *flags, cwd=tmp_path), code)
        assert expected in error and "--output" in error, error
    with RunDir(earlier).lock():
        result = run_cli("run", str(spec), "--on", "hf-jobs", "--output", str(earlier), "--overwrite", cwd=tmp_path)
    assert "in use by another runner process" in one_error(result, 1)
    # Data inside what the record would replace: refused as a local run refuses it.
    # (in a checkpoint folder, which runner replaces whole: in predictions/ it is refused as a file of the user's)
    write_csv(earlier / "checkpoints" / "checkpoint-1" / "train.csv", labelled_rows())
    before["earlier"] = tree(earlier)
    inside = write_spec(tmp_path, tiny_spec_text(tiny_model, train="earlier/checkpoints/checkpoint-1/train.csv"),
                        "inside.yaml")
    result = run_cli("run", str(inside), "--on", "hf-jobs", "--output", str(earlier), "--overwrite", cwd=tmp_path)
    assert "the train data file is inside the run folder's own outputs" in one_error(result, 2)
    assert jobs_hub.requests == [] and jobs_hub.jobs == []
    assert {"earlier": tree(earlier), "data": tree(tmp_path / "data")} == before


def test_a_public_jobs_repository_is_refused_before_anything_is_uploaded(jobs_hub, tmp_path, tiny_model,
                                                                         tiny_data):
    jobs_hub.create_repo(JOBS_REPO, "dataset", private=False)
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    result = run_cli("run", str(spec), "--on", "hf-jobs", cwd=tmp_path)
    error = one_error(result, 2)
    assert f"datasets/{JOBS_REPO} is public" in error
    assert "RUNNER_JOBS_REPO" in result.stderr and "private" in result.stderr.split("hint:")[1]
    assert "commit" not in [request["kind"] for request in jobs_hub.requests] and jobs_hub.jobs == []
    assert set(repo_files(jobs_hub)) == {".gitattributes"} and not (tmp_path / "run").exists()


def test_a_search_with_an_image_says_the_image_needs_optuna(jobs_hub, tmp_path, tiny_model, tiny_data):
    """--image: what the image holds cannot be seen from here, so a spec that needs an extra says so (a warning);
    without an image the job installs the extras itself (tests/remote/test_stock_image.py)."""
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model, extra="search:\n  trials: 2\n"))
    result = run_cli("run", str(spec), "--on", "hf-jobs:cpu-basic", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [f"warning: this spec needs runner's extras search in the image {IMAGE}:{__version__} (the "
                        "Dockerfile's image has examples, search, onnx); without --image and RUNNER_JOBS_IMAGE, the "
                        "job installs them itself"], result.stderr
    assert f"image {IMAGE}:{__version__}, timeout 2h" in result.stdout
    assert jobs_hub.requests == [] and jobs_hub.jobs == []
