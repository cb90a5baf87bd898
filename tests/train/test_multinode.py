"""Several machines: compute.nnodes / node_rank / rdzv_endpoint. Two "nodes" of one CPU process each,
each in a folder of its own (its own disk), meet over 127.0.0.1 with gloo through the real CLI; and
full fine-tuning of a tiny decoder under `accelerate launch` with the FSDP2 configuration on the CPU: sharded,
stopped, resumed and saved whole."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys

import pytest
from conftest import ROOT, labelled_rows, run_cli, tiny_spec_text, write_csv, write_spec

from runner import __version__
from runner.errors import SpecError
from runner.spec.document import load_spec
from runner.train.distributed import node_settings, torchrun_command


def nodes_of(spec):
    return node_settings(spec.compute, spec.where("compute", "nnodes"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def node_spec(folder, model, port: int, extra: str = ""):
    write_csv(folder / "data" / "train.csv", labelled_rows())
    return write_spec(folder, tiny_spec_text(model, extra=f"compute:\n  nnodes: 2\n  rdzv_endpoint: 127.0.0.1:{port}\n"
                                                          + extra))


def test_node_settings_are_checked_before_launching(tmp_path, tiny_model, monkeypatch):
    for name in ("NODE_RANK", "SKYPILOT_NODE_RANK"):
        monkeypatch.delenv(name, raising=False)
    spec = node_spec(tmp_path, tiny_model, 29511)
    with pytest.raises(SpecError, match="rank is not known"):
        nodes_of(load_spec(spec))
    monkeypatch.setenv("SKYPILOT_NODE_RANK", "1")
    nodes = nodes_of(load_spec(spec))
    assert nodes == {"nnodes": 2, "node_rank": 1, "master_addr": "127.0.0.1", "master_port": 29511}
    assert torchrun_command(["run", "spec.yaml"], 4, nodes)[3:8] == [
        "--nnodes=2", "--node_rank=1", "--master_addr=127.0.0.1", "--master_port=29511", "--nproc_per_node=4"]
    # a worker trains on one node of its own: nnodes 1, and no rank of the several machines (which is not below 1)
    assert torchrun_command(["run", "spec.yaml"], 4, nodes)[-6:] == [
        "--set", "compute.nproc=1", "--set", "compute.nnodes=1", "--set", "compute.node_rank=null"]
    with pytest.raises(SpecError) as caught:  # a spec error now, found by validate
        load_spec(spec, ["compute.node_rank=2"])
    assert "compute.node_rank is 2, not a node rank from 0 to 1" in "\n".join(caught.value.lines())
    monkeypatch.setenv("SKYPILOT_NODE_RANK", "1\u0660")  # "10" to int() and str.isdigit(): only 0-9 count here
    with pytest.raises(SpecError, match=r"SKYPILOT_NODE_RANK='1\u0660' in the environment is not a node rank"):
        nodes_of(load_spec(spec))
    # The CLI says so with exit 2, before torchrun starts.
    result = run_cli("run", str(spec), "--set", "compute.rdzv_endpoint=null", cwd=tmp_path)
    assert result.returncode == 2 and "compute.rdzv_endpoint is not set" in result.stderr
    result = run_cli("run", str(spec), "--set", "compute.rdzv_endpoint=no-port", cwd=tmp_path)
    assert result.returncode == 2 and "rdzv_endpoint" in result.stderr


def test_a_good_multi_node_spec_validates_and_a_worker_records_the_rank_given(tmp_path, tiny_model):
    from runner.train.handoff import Launch, read_launch, write_launch

    spec = node_spec(tmp_path, tiny_model, 65535, extra="  node_rank: 1\n")
    result = run_cli("validate", spec.name, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # a spec for `runner sky` has no endpoint (SkyPilot gives it on each node); `runner run` asks for one
    result = run_cli("validate", spec.name, "--set", "compute.rdzv_endpoint=null", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # the worker's spec (--set compute.nnodes=1 compute.node_rank=null) is valid, and the record gets back
    # what the user gave
    worker = load_spec(spec, ["compute.nproc=1", "compute.nnodes=1", "compute.node_rank=null"])
    assert (worker.compute.nnodes, worker.compute.node_rank) == (1, None)
    handoff = read_launch(write_launch(Launch(1, ("runner", "run", spec.name), 2, 1), tmp_path / "launch"))
    recorded = worker.replace(compute=handoff.recorded_compute())
    assert (recorded.compute.nnodes, recorded.compute.node_rank) == (2, 1)


def test_two_nodes_of_one_process_each_write_one_record_on_node_0(tmp_path, tiny_model):
    port = free_port()
    processes, logs = [], []
    for rank in (0, 1):
        folder = tmp_path / f"node{rank}"
        spec = node_spec(folder, tiny_model, port)
        log = open(folder / "log.txt", "w")  # noqa: SIM115 - closed below
        logs.append(log)
        env = dict(os.environ, RUNNER_CACHE_DIR=str(folder / "cache"), OMP_NUM_THREADS="1")
        env.pop("NODE_RANK", None)
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "runner", "run", spec.name, "--set", f"compute.node_rank={rank}"],
            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        codes = [process.wait(timeout=600) for process in processes]
    finally:
        for process in processes:
            process.kill()
        for log in logs:
            log.close()
    output = [(tmp_path / f"node{rank}" / "log.txt").read_text() for rank in (0, 1)]
    assert codes == [0, 0], output[0][-3000:] + output[1][-3000:]
    assert "launching 1 processes on node 0 of 2" in output[0]
    assert "--nnodes=2 --node_rank=1 --master_addr=127.0.0.1" in output[1]

    run = tmp_path / "node0" / "run"
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["status"] == "finished"
    assert manifest["environment"]["device"] == "cpu, 2 processes (gloo)"  # world size 2
    assert manifest["spec"]["compute"]["nnodes"] == 2  # the record shows what the user ran
    assert manifest["timing"]["global_step"] == 64 // 16  # two processes of batch 8 share each step
    predictions = (run / "predictions" / "validation.jsonl").read_text().splitlines()
    assert len(predictions) == manifest["results"]["data_summary"]["rows"]["validation"] == 16
    # Node 1 trained but wrote no record: only global rank 0 does. The Trainer keeps each process's
    # random state next to the checkpoint, on its own machine, for --resume.
    written = sorted(p.relative_to(tmp_path / "node1" / "run").as_posix()
                     for p in (tmp_path / "node1" / "run").rglob("*") if p.is_file())
    assert written == ["checkpoints/checkpoint-4/rng_state_1.pth"]
    # node 0 finished the run, so its kept checkpoint lost its RNG state (train.keep_checkpoints keeps it)
    assert sorted(p.name for p in (run / "checkpoints" / "checkpoint-4").glob("rng_state*")) == []


FSDP2_CONFIG = ROOT / "examples" / "accelerate" / "fsdp2.yaml"
# accelerate keeps its FSDP plugin only for GPU-like backends; this sitecustomize makes it shard on the CPU too
# (its docstring says where and why). Test-only: on PYTHONPATH for the FSDP2 test alone.
FSDP_ON_CPU = ROOT / "tests" / "support" / "fsdp_on_cpu"


def accelerate_launch(config, *args, cwd, env=None, timeout=600) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", RUNNER_CACHE_DIR=str(cwd / "cache"), **(env or {}))
    return subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
def test_fsdp2_full_fine_tuning_of_a_tiny_decoder_on_the_cpu_saves_and_resumes(tmp_path):
    """The shipped FSDP2 configuration on the CPU (use_cpu, gloo, sharded through the test-only shim), two
    processes, a tiny Llama fully fine-tuned for two epochs: stopped (SIGTERM in every process at step 6, after
    the epoch checkpoint of step 4), resumed with --resume from the checkpoint the stop saved, and the final model,
    gathered from the shards, loads on its own and predicts what the run predicted."""
    import yaml
    from support.tiny_models import build_tiny

    config = yaml.safe_load(FSDP2_CONFIG.read_text())
    assert config["distributed_type"] == "FSDP" and config["fsdp_config"]["fsdp_version"] == 2
    config.update(use_cpu=True, num_processes=2, main_process_port=free_port())
    cpu_config = tmp_path / "fsdp2-cpu.yaml"
    cpu_config.write_text(yaml.safe_dump(config))
    model = build_tiny(tmp_path / "llama", "llama")
    write_csv(tmp_path / "data" / "train.csv", labelled_rows())
    spec = write_spec(tmp_path, tiny_spec_text(model).replace("  epochs: 1\n", "  epochs: 2\n  precision: fp32\n"))
    shim = {"PYTHONPATH": os.pathsep.join((str(FSDP_ON_CPU), os.environ["PYTHONPATH"])), "RUNNER_TEST_FSDP_ON_CPU": "1"}
    run, checkpoints = tmp_path / "run", tmp_path / "run" / "checkpoints"

    stopped = accelerate_launch(cpu_config, "-m", "runner", "run", spec.name, cwd=tmp_path,
                                env={**shim, "RUNNER_TEST_SIGTERM_AT_STEP": "6"})
    assert stopped.returncode != 0, stopped.stdout[-3000:] + stopped.stderr[-3000:]
    assert "interrupted at step 6; continue with: runner run spec.yaml --resume" in stopped.stderr, \
        stopped.stderr[-3000:]
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["timing"]["global_step"] == 6
    # sharded: FSDP2 in the record, and the Trainer's checkpoints hold FSDP's copy of the model beside the
    # gathered weights, the full optimizer state and each process's random state
    assert manifest["environment"]["device"] == "cpu, 2 processes (gloo, fsdp2)"
    assert manifest["model"]["architecture"] == "LlamaForSequenceClassification"  # not fully_shard's FSDP<class>
    for step in (4, 6):  # the epoch's checkpoint and the stop's
        names = {p.name for p in (checkpoints / f"checkpoint-{step}").iterdir()}
        assert {"model.safetensors", "pytorch_model_fsdp.bin", "optimizer.bin", "scheduler.pt", "rng_state_0.pth",
                "rng_state_1.pth", "trainer_state.json"} <= names, names
    assert not (run / "model").exists()

    resumed = accelerate_launch(cpu_config, "-m", "runner", "run", spec.name, "--resume", cwd=tmp_path, env=shim)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["status"] == "finished" and manifest["timing"]["global_step"] == 8  # 6 done, 2 more
    assert manifest["environment"]["device"] == "cpu, 2 processes (gloo, fsdp2)"
    assert manifest["results"]["distributed"] == {"strategy": "fsdp2", "world_size": 2}  # numbers, not only words
    history = manifest["results"]["log_history"]
    # epoch 1's evaluation (and the stop's, at 1.5) kept in the resumed run's history, epoch 2's added
    assert [entry["epoch"] for entry in history if "eval_loss" in entry] == [1, 1.5, 2]
    # what a finished run keeps: no optimizer, random state or FSDP's second copy of the model
    for kept in checkpoints.glob("checkpoint-*"):
        assert not {p.name for p in kept.iterdir()} & {"pytorch_model_fsdp.bin", "optimizer.bin", "rng_state_1.pth"}

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    trained = AutoModelForSequenceClassification.from_pretrained(run / "model").eval()
    assert sum(p.numel() for p in trained.parameters()) == manifest["model"]["total_params"]  # gathered, not a shard
    tokenizer = AutoTokenizer.from_pretrained(run / "model")
    rows = [json.loads(line) for line in (run / "predictions" / "validation.jsonl").read_text().splitlines()]
    assert len(rows) == 16
    with torch.no_grad():
        batch = tokenizer([row["text"] for row in rows], padding=True, truncation=True, max_length=32,
                          return_tensors="pt")
        probabilities = trained(**batch).logits.softmax(-1)
    for row, predicted in zip(rows, probabilities):
        assert trained.config.id2label[int(predicted.argmax())] == row["label"]
        assert [round(float(p), 4) for p in predicted] == pytest.approx(
            [row["probabilities"][trained.config.id2label[i]] for i in range(len(predicted))], abs=2e-4)


def test_sky_task_runs_its_run_step_as_two_nodes(tmp_path, tiny_model, monkeypatch):
    """`runner sky`: the task's run step, executed here as SkyPilot runs it on each node (its
    environment, a copy of the workdir per node), trains over 127.0.0.1 and node 0 writes the record."""
    import shutil

    import yaml

    source = tmp_path / "project"
    shutil.copytree(tiny_model, source / "model")
    write_csv(source / "data" / "train.csv", labelled_rows())
    spec = write_spec(source, tiny_spec_text("model"))
    monkeypatch.setenv("RUNNER_JOBS_IMAGE", "ghcr.io/me/runner")
    port = free_port()
    result = run_cli("sky", str(spec), "--set", "compute.nnodes=2", "--accelerators", "A100:1", "--rdzv-port",
                     str(port), "-o", str(tmp_path / "task.yaml"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    task = yaml.safe_load((tmp_path / "task.yaml").read_text())
    assert task["num_nodes"] == 2 and task["workdir"] == str(source)
    assert task["resources"] == {"image_id": f"docker:ghcr.io/me/runner:{__version__}", "accelerators": "A100:1"}
    assert "secrets" not in task  # no hub.push, no token asked for
    if importlib.util.find_spec("sky"):
        import sky

        sky.Task.from_yaml_config(task)

    processes, logs = [], []
    for rank in (0, 1):
        node = tmp_path / f"node{rank}"
        shutil.copytree(source, node)  # SkyPilot syncs the workdir to every node
        logs.append(open(node / "log.txt", "w"))  # noqa: SIM115 - closed below
        env = dict(os.environ, SKYPILOT_NODE_RANK=str(rank), SKYPILOT_NODE_IPS="127.0.0.1\n127.0.0.2",
                   SKYPILOT_NUM_NODES="2", RUNNER_CACHE_DIR=str(node / "cache"), OMP_NUM_THREADS="1",
                   PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
        processes.append(subprocess.Popen(["bash", "-c", task["run"]], cwd=node, env=env, stdout=logs[-1],
                                          stderr=subprocess.STDOUT))
    try:
        codes = [process.wait(timeout=600) for process in processes]
    finally:
        for process in processes:
            process.kill()
        for log in logs:
            log.close()
    output = [(tmp_path / f"node{rank}" / "log.txt").read_text() for rank in (0, 1)]
    assert codes == [0, 0], output[0][-3000:] + output[1][-3000:]
    manifest = json.loads((tmp_path / "node0" / "run" / "run.json").read_text())
    assert manifest["status"] == "finished" and manifest["environment"]["device"] == "cpu, 2 processes (gloo)"
    assert not (tmp_path / "node1" / "run" / "run.json").exists()
