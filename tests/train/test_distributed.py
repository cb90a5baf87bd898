"""`runner run --nproc 2`: two CPU processes (torchrun, gloo) train the tiny model through the real CLI."""

from __future__ import annotations

import json
import math

import pytest
import yaml
from conftest import run_cli, tiny_spec_text, write_spec

from runner.train.distributed import torchrun_command, worker_argv


def test_workers_run_the_same_command_without_nproc():
    argv = ["--debug", "run", "spec.yaml", "--nproc", "2", "--set", "train.epochs=1", "--nproc=3", "--overwrite"]
    assert worker_argv(argv) == [
        "--debug",
        "run",
        "spec.yaml",
        "--set",
        "train.epochs=1",
        "--overwrite",
        "--set",
        "compute.nproc=1",
    ]
    command = torchrun_command(["run", "spec.yaml", "--nproc", "2"], 2)
    assert command[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    assert command[6:] == ["runner", "run", "spec.yaml", "--set", "compute.nproc=1"]


def test_two_cpu_processes_train_and_write_one_record(tmp_path, tiny_model, tiny_data):
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    result = run_cli("run", str(spec), "--nproc", "2", cwd=tmp_path, env={"RUNNER_CACHE_DIR": str(tmp_path / "cache")})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "launching 2 processes" in result.stdout

    run = tmp_path / "run"
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("run.json")] == [run.relative_to(tmp_path) / "run.json"]
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["status"] == "finished"
    assert manifest["environment"]["device"] == "cpu, 2 processes (gloo)"
    assert manifest["results"]["distributed"] == {"strategy": "ddp", "world_size": 2}
    assert manifest["spec"]["compute"]["nproc"] == 2  # the record shows what the user ran
    assert "--nproc" in manifest["argv"]
    assert yaml.safe_load((run / "spec.yaml").read_text())["compute"]["nproc"] == 2
    rows = manifest["results"]["data_summary"]["rows"]
    assert rows == {"train": 64, "validation": 16}
    # Two processes of batch 8 take 16 rows a step: half the steps of one process.
    assert manifest["timing"]["global_step"] == 64 // 16
    # Evaluation saw every validation row once: sharding lost or doubled none.
    predictions = [json.loads(line) for line in (run / "predictions" / "validation.jsonl").read_text().splitlines()]
    assert len(predictions) == rows["validation"] == len({p["row"] for p in predictions})
    # The recorded loss is the mean cross-entropy of those predictions, not a multiple of it.
    cross_entropy = -sum(math.log(p["probabilities"][p["true_label"]]) for p in predictions) / len(predictions)
    assert json.loads((run / "metrics.json").read_text())["validation"]["loss"] == pytest.approx(
        cross_entropy, abs=1e-3
    )
