"""`runner run SPEC --on hf-jobs[:FLAVOR]` through the real huggingface_hub client, against the test
Hub (tests/support/hub_server.py) whose Jobs endpoints (tests/support/hub_jobs.py) run the submitted command here:
upload, job, streamed log, remote `runner jobs exec`, record back, exit code, cancel."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, labelled_rows, run_cli, tiny_spec_text, write_csv, write_spec
from support.hub_jobs import wait_for
from support.hub_server import TEST_TOKEN

from runner import __version__
from runner.errors import SpecError
from runner.remote.dispatch import job_image, job_inputs, parse_target
from runner.spec.document import load_spec, load_spec_text

IMAGE = "registry.test/runner"
JOBS_REPO = "tester/runner-jobs"


@pytest.fixture
def jobs_hub(fake_hub, tmp_path, monkeypatch):
    """The test Hub with jobs that run this working tree, and a runner image set."""
    fake_hub.job_env.update({"PYTHONPATH": str(ROOT), "RUNNER_CACHE_DIR": str(tmp_path / "remote-cache"),
                             "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"})
    monkeypatch.setenv("RUNNER_JOBS_IMAGE", IMAGE)
    yield fake_hub
    for job in fake_hub.jobs:  # nothing keeps running after a test
        if job.process is not None and job.process.poll() is None:
            os.killpg(job.process.pid, signal.SIGKILL)


def repo_files(hub) -> dict[str, bytes]:
    return hub.files(JOBS_REPO, repo_type="dataset")


# ---------------------------------------------------------------------------------------------
# Settings


def test_target_image_and_inputs(tmp_path, tiny_model, tiny_data, monkeypatch):
    assert parse_target("hf-jobs") == "a10g-small" and parse_target("hf-jobs:h200x8") == "h200x8"
    for bad in ("hf-job:t4-small", "hf-jobs:a10g-smal", "modal"):
        with pytest.raises(SpecError):
            parse_target(bad)
    monkeypatch.delenv("RUNNER_JOBS_IMAGE", raising=False)
    with pytest.raises(SpecError, match="no runner image"):  # the placeholder default is never sent
        job_image()
    assert job_image("ghcr.io/me/runner") == f"ghcr.io/me/runner:{__version__}"
    assert job_image("localhost:5000/runner") == f"localhost:5000/runner:{__version__}"
    assert job_image("ghcr.io/me/runner:dev") == "ghcr.io/me/runner:dev"

    spec = load_spec(write_spec(tmp_path, tiny_spec_text(tiny_model)))
    values, files = job_inputs(spec)
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
    result = run_cli("run", str(spec), "--on", "hf-jobs:t4-small", cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    assert len(jobs_hub.jobs) == 1
    job = jobs_hub.jobs[0]
    assert job.spec["flavor"] == "t4-small"
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
    assert json.loads(files[f"{folder}/exit.json"]) == {"exit_code": 0}
    assert not any(name.startswith(f"{folder}/output/model/") for name in files)  # no --fetch-model
    assert not any(TEST_TOKEN.encode() in content for content in files.values())

    run = tmp_path / "run"
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["status"] == "finished"
    assert json.loads((run / "metrics.json").read_text()) == json.loads(files[f"{folder}/output/metrics.json"])
    assert (run / "report.md").is_file() and list(run.glob("*.png"))
    assert not (run / "model").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".run.job-")]  # staging removed


def test_a_job_that_fails_remotely_exits_with_its_code_and_one_line(jobs_hub, tmp_path, tiny_data):
    # A Hub model that does not exist: the spec is valid here, the run fails there.
    spec = write_spec(tmp_path, tiny_spec_text("tester/no-such-model"))
    (tmp_path / "run").mkdir()  # an earlier run, which --overwrite would replace with a finished one only
    (tmp_path / "run" / "run.json").write_text('{"status": "finished"}')
    result = run_cli("run", str(spec), "--on", "hf-jobs:a10g-small", "--overwrite", cwd=tmp_path)
    job = jobs_hub.jobs[0]
    assert job.exit_code not in (0, None)
    assert result.returncode == job.exit_code, result.stdout[-3000:] + result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"job {job.id} on a10g-small failed (exit {job.exit_code})" in errors[0]
    assert "model.name" in errors[0]  # the run's own error, from the job's log
    assert job.stage == "ERROR"
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["run.json"]
    assert (tmp_path / "run" / "run.json").read_text() == '{"status": "finished"}'
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
    result = run_cli("run", str(tmp_path / "ok.yaml"), "--on", "hf-jobs:t4-small", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0 and f"flavor t4-small, image {IMAGE}:{__version__}" in result.stdout
    assert "uploads: spec.yaml and" in result.stdout
    result = run_cli("run", str(tmp_path / "ok.yaml"), "--detach", cwd=tmp_path)  # --detach needs --on
    assert result.returncode == 2 and "--detach needs --on" in result.stderr
    (tmp_path / "run").mkdir()  # a run already in the output folder: refused before the upload, kept as it was
    (tmp_path / "run" / "run.json").write_text('{"status": "finished"}')
    result = run_cli("run", str(tmp_path / "ok.yaml"), "--on", "hf-jobs", cwd=tmp_path)
    assert result.returncode == 2 and "already holds a run" in result.stderr
    assert (tmp_path / "run" / "run.json").read_text() == '{"status": "finished"}'
    assert jobs_hub.requests == [] and jobs_hub.jobs == []


def test_a_job_that_never_runs_says_why(jobs_hub, tmp_path, tiny_model, tiny_data):
    jobs_hub.job_env["PATH"] = str(tmp_path / "empty")  # an image without `runner`: the command cannot start
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    result = run_cli("run", str(spec), "--on", "hf-jobs", cwd=tmp_path)
    job = jobs_hub.jobs[0]
    assert result.returncode == 1 and job.stage == "ERROR"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "ended ERROR without a run record: cannot start the command" in errors[0]
    assert not (tmp_path / "run").exists()


def test_detach_then_status_and_cancel(jobs_hub, tmp_path, tiny_model, tiny_data):
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model).replace("epochs: 1\n", "epochs: 50\n"))
    result = run_cli("run", str(spec), "--on", "hf-jobs:l4x1", "--detach", "--job-timeout", "10m", cwd=tmp_path)
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
    assert json.loads(files[f"{folder}/exit.json"]) == {"exit_code": 143}
    assert json.loads(files[f"{folder}/output/run.json"])["status"] == "interrupted"
    fetched = run_cli("jobs", "fetch", job.id, "--output", str(tmp_path / "fetched"), cwd=tmp_path)
    assert fetched.returncode == 143 and (tmp_path / "fetched" / "run.json").is_file()
    status = run_cli("jobs", "status", job.id, cwd=tmp_path)
    assert status.returncode == 1 and f"{job.id} CANCELED" in status.stdout and "l4x1" in status.stdout


def test_ctrl_c_without_a_terminal_cancels_the_job(jobs_hub, tmp_path, tiny_model, tiny_data):
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    process = subprocess.Popen([sys.executable, "-m", "runner", "run", str(spec), "--on", "hf-jobs"], cwd=tmp_path,
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
                                                  "INPUT_SPEC": "specs/tiny.yaml", "INPUT_COMPUTE": "hf-jobs:l4x1",
                                                  "GITHUB_WORKSPACE": str(repo)}
        code = action.run_action(env)
        [comment] = github.comments[7]
    assert code == 1  # the gate (min 0.999) judged the record the job brought back
    [job] = jobs_hub.jobs
    assert job.spec["flavor"] == "l4x1" and job.spec["secrets"] == {"HF_TOKEN": TEST_TOKEN}
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
    assert len(annotation) == 1 and "needs HF_TOKEN" in annotation[0] and "secrets.HF_TOKEN" in annotation[0]


def test_ctrl_c_on_a_terminal_asks_and_can_leave_the_job_running(jobs_hub, tmp_path, tiny_model, tiny_data):
    import pty

    spec = write_spec(tmp_path, tiny_spec_text(tiny_model).replace("epochs: 1\n", "epochs: 50\n"))
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "runner", "run", str(spec), "--on", "hf-jobs"], cwd=tmp_path,
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
    (tmp_path / "run" / "run.json").write_text('{"status": "finished"}')
    process = subprocess.Popen([sys.executable, "-m", "runner", "run", str(spec), "--on", "hf-jobs", "--overwrite"],
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
    assert json.loads(files[f"{folder}/exit.json"]) == {"exit_code": 1}
    assert json.loads(files[f"{folder}/output/run.json"])["status"] == "finished"  # trained, push refused
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["run.json"]
    assert (tmp_path / "run" / "run.json").read_text() == '{"status": "finished"}'
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "push failed" in errors[0]


def test_losing_the_log_stream_says_the_job_keeps_running(jobs_hub, tmp_path, tiny_model, tiny_data):
    jobs_hub.fail_next("job_logs", times=1, status=500)
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    result = run_cli("run", str(spec), "--on", "hf-jobs", cwd=tmp_path)
    [job] = jobs_hub.jobs
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"lost job {job.id}" in errors[0] and "500" in errors[0]
    assert f"runner jobs fetch {job.id}" in result.stderr and not job.canceled
    wait_for(lambda: job.stage == "COMPLETED", timeout=120)  # it ran on; its record can be fetched
    fetched = run_cli("jobs", "fetch", job.id, "--output", str(tmp_path / "fetched"), cwd=tmp_path)
    assert fetched.returncode == 0, fetched.stderr
    assert json.loads((tmp_path / "fetched" / "run.json").read_text())["status"] == "finished"
