"""`runner sky`: what the task asks of the nodes and what it copies to them (the run step itself runs as two
nodes in tests/train/test_multinode.py)."""

from __future__ import annotations

import shutil

import pytest
import yaml
from conftest import labelled_rows, run_cli, tiny_spec_text, write_csv, write_spec

IMAGE = "ghcr.io/tester/runner:1"


@pytest.fixture
def project(tmp_path, tiny_model):
    folder = tmp_path / "project"
    shutil.copytree(tiny_model, folder / "model")
    write_csv(folder / "data" / "train.csv", labelled_rows())
    write_spec(folder, tiny_spec_text("model"))
    return folder


def task_of(result, path):
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_one_process_per_gpu_and_the_node_settings_given_once(project, tmp_path):
    """--accelerators A100:8 with compute.nproc not written: 8 processes per node, said; a --set compute.nnodes of
    the user's is passed on once (the run step sets it from SkyPilot's variables), other --set values are kept."""
    out = tmp_path / "task.yaml"
    result = run_cli("sky", "spec.yaml", "--image", IMAGE, "--set", "compute.nnodes=2", "--set", "train.epochs=2",
                     "--accelerators", "A100:8", "-o", str(out), cwd=project)
    run = task_of(result, out)["run"]
    assert run.count("compute.nnodes") == 1 and "compute.nnodes=\"$SKYPILOT_NUM_NODES\"" in run
    assert "--set compute.nproc=8" in run and "--set train.epochs=2" in run
    assert "note: each node trains with 8 processes, one per GPU of --accelerators A100:8" in result.stderr
    assert "pip install skypilot" not in result.stderr  # its pins conflict with huggingface_hub's


@pytest.mark.parametrize("nproc, code, said", [
    (2, 0, "warning: compute.nproc is 2: 6 of the 8 GPUs of --accelerators A100:8 stay idle on each node"),
    (16, 2, "compute.nproc is 16, but --accelerators A100:8 gives each node 8 GPUs"),
    (8, 0, None),
])
def test_an_nproc_written_in_the_spec_is_kept_and_checked_against_the_gpus(project, tmp_path, nproc, code, said):
    spec = project / "spec.yaml"
    text = spec.read_text(encoding="utf-8") + f"compute:\n  nnodes: 2\n  nproc: {nproc}\n"
    spec.write_text(text, encoding="utf-8")
    out = tmp_path / "task.yaml"
    result = run_cli("sky", "spec.yaml", "--image", IMAGE, "--accelerators", "A100:8", "-o", str(out), cwd=project)
    assert result.returncode == code, result.stderr
    if code:
        line = text.splitlines().index(f"  nproc: {nproc}") + 1
        assert f"spec.yaml:{line}:" in result.stderr and said in result.stderr
        assert not out.exists()
        return
    assert "compute.nproc=" not in task_of(result, out)["run"]
    assert (said in result.stderr) if said else ("idle" not in result.stderr and "note: each node" not in result.stderr)


def test_a_spec_in_the_home_folder_is_refused(tmp_path, tiny_model):
    """SkyPilot copies the spec's folder to every node: from $HOME that is .ssh and .aws too."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("secret key", encoding="utf-8")
    shutil.copytree(tiny_model, home / "model")
    write_csv(home / "data" / "train.csv", labelled_rows())
    write_spec(home, tiny_spec_text("model"))
    out = tmp_path / "task.yaml"
    for folder in (home, home / "data"):  # the home folder itself; a folder below it is fine
        spec = folder / "spec.yaml"
        if folder != home:
            write_spec(folder, tiny_spec_text("../model", train="train.csv"))
        result = run_cli("sky", str(spec), "--image", IMAGE, "-o", str(out), "--force", cwd=tmp_path,
                         env={"HOME": str(home)})
        if folder == home:
            assert result.returncode == 2, result.stderr
            assert "is your home folder" in result.stderr and ".ssh" in result.stderr
            assert "secret key" not in result.stderr and not out.exists()
        else:
            assert result.returncode == 2 and "model.name" in result.stderr  # ../model: outside the copied folder


def test_keys_in_the_copied_folder_are_named_until_a_skyignore_leaves_them_out(project, tmp_path):
    (project / ".aws").mkdir()
    (project / ".aws" / "credentials").write_text("[default]\n", encoding="utf-8")
    (project / ".env").write_text("HF_TOKEN=hf_x\n", encoding="utf-8")
    out = tmp_path / "task.yaml"
    result = run_cli("sky", "spec.yaml", "--image", IMAGE, "-o", str(out), cwd=project)
    task_of(result, out)
    assert "holds .aws, .env; SkyPilot copies the folder to every node" in result.stderr
    assert "hf_x" not in result.stderr
    (project / ".skyignore").write_text(".aws/\n.env\n", encoding="utf-8")
    result = run_cli("sky", "spec.yaml", "--image", IMAGE, "-o", str(out), "--force", cwd=project)
    task_of(result, out)
    assert "SkyPilot copies the folder" not in result.stderr


def test_keys_deeper_in_the_folder_are_named_too(project, tmp_path):
    """The top level only was looked at: id_rsa, *.pem, credentials.json and a nested .env went to every node."""
    for relative in ("keys/id_rsa", "deploy.pem", "gcp/credentials.json", "app/config/.env.local"):
        (project / relative).parent.mkdir(parents=True, exist_ok=True)
        (project / relative).write_text("HF_TOKEN=hf_secretvalue\n", encoding="utf-8")
    out = tmp_path / "task.yaml"
    result = run_cli("sky", "spec.yaml", "--image", IMAGE, "-o", str(out), cwd=project)
    task_of(result, out)
    for relative in ("keys/id_rsa", "deploy.pem", "gcp/credentials.json", "app/config/.env.local"):
        assert relative in result.stderr, result.stderr
    assert "hf_secretvalue" not in result.stderr
    (project / ".skyignore").write_text("keys/\n*.pem\ngcp/credentials.json\n", encoding="utf-8")
    result = run_cli("sky", "spec.yaml", "--image", IMAGE, "-o", str(out), "--force", cwd=project)
    task_of(result, out)
    assert "holds app/config/.env.local;" in result.stderr, result.stderr


@pytest.mark.parametrize("accelerators", ["A100:0", "A100:-1", "A100:8\nrun: rm -rf ~", ":8", "A100:"])
def test_an_accelerators_value_sky_cannot_mean_is_refused_before_writing(project, tmp_path, accelerators):
    out = tmp_path / "task.yaml"
    result = run_cli("sky", "spec.yaml", "--image", IMAGE, "--accelerators", accelerators, "-o", str(out),
                     cwd=project)
    assert result.returncode == 2, result.stderr
    assert "--accelerators" in result.stderr and "hint:" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()
