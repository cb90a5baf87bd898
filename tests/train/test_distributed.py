"""`runner run --nproc 2`: two CPU processes (torchrun, gloo) train the tiny model through the real CLI."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest
import yaml
from conftest import run_cli, tiny_spec_text, write_spec

import runner
from runner.train.distributed import torchrun_command, worker_argv
from runner.train.handoff import Launch, read_launch, write_launch

PACKAGE = Path(runner.__file__).parent


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
    # the workers get the launcher's handoff file as the last option of `runner run`
    command = torchrun_command(["run", "spec.yaml", "--nproc", "2"], 2, handoff=Path("/tmp/x/launch.json"))
    assert command[6:] == ["runner", "run", "spec.yaml", "--set", "compute.nproc=1", "--launched", "/tmp/x/launch.json"]


def test_two_cpu_processes_train_and_write_one_record(tmp_path, tiny_model, tiny_data):
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    result = run_cli("run", str(spec), "--nproc", "2", cwd=tmp_path,
                     env={"RUNNER_CACHE_DIR": str(tmp_path / "cache"), "TMPDIR": str(temporary)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "launching 2 processes" in result.stdout
    assert f"--launched {temporary}" in result.stdout  # the handoff, in a folder of the launcher's
    assert not list(temporary.glob("runner-launch-*"))  # removed once the workers stopped

    run = tmp_path / "run"
    assert [p.relative_to(tmp_path) for p in tmp_path.rglob("run.json")] == [run.relative_to(tmp_path) / "run.json"]
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["status"] == "finished"
    assert manifest["environment"]["device"] == "cpu, 2 processes (gloo)"
    assert manifest["results"]["distributed"] == {"strategy": "ddp", "world_size": 2}
    assert manifest["spec"]["compute"]["nproc"] == 2  # the record shows what the user ran
    assert manifest["argv"] == ["runner", "run", "spec.yaml", "--nproc", "2"]  # the user's, not a worker's
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


def test_a_handoff_is_read_back_as_written(tmp_path):
    for given in (Launch(2, ("runner", "run", "spec.yaml", "--nproc", "2")), Launch(4, ("runner", "run", "s"), 2, 1),
                  Launch(1, ("runner", "run", "s"), 3, None)):
        assert read_launch(write_launch(given, tmp_path)) == given
    assert Launch(2, ("runner",)).recorded_compute() == {"nproc": 2}
    assert Launch(4, ("runner",), 2, None).recorded_compute() == {"nproc": 4, "nnodes": 2, "node_rank": None}


@pytest.mark.parametrize("content, said", [
    (None, "the launcher's handoff file is missing"),
    ('{"nproc": 2, "argv": ["runner", "run"', "cannot be read (not JSON)"),
    (b"\xff\xfe{}", "cannot be read (not JSON)"),
    ('["runner", "run"]', "not an object with the keys nproc, argv, nnodes, node_rank"),
    ('{"nproc": 2, "argv": ["runner"], "nnodes": null}', "not an object with the keys"),
    ('{"nproc": "2", "argv": ["runner"], "nnodes": null, "node_rank": null}', "nproc is not a number of processes"),
    ('{"nproc": true, "argv": ["runner"], "nnodes": null, "node_rank": null}', "nproc is not a number of processes"),
    ('{"nproc": 2, "argv": "runner run", "nnodes": null, "node_rank": null}', "argv is not a command line"),
    ('{"nproc": 2, "argv": [], "nnodes": null, "node_rank": null}', "argv is not a command line"),
    ('{"nproc": 2, "argv": ["runner"], "nnodes": null, "node_rank": 0}', "nnodes is not a number of machines"),
    ('{"nproc": 2, "argv": ["runner"], "nnodes": 1, "node_rank": null}', "nnodes is not a number of machines"),
    ('{"nproc": 2, "argv": ["runner"], "nnodes": 2, "node_rank": 2}', "node_rank is not a rank below nnodes 2"),
])
def test_a_worker_with_a_missing_or_damaged_handoff_stops_with_one_clear_line(tmp_path, tiny_model, content, said):
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    handoff = tmp_path / "launch" / "launch.json"
    if content is not None:
        handoff.parent.mkdir()
        handoff.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = run_cli("run", str(spec), "--set", "compute.nproc=1", "--launched", str(handoff), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"error: {handoff}: --launched: ") and said in lines[0], lines
    assert lines[1].startswith("hint: start the run with `runner run SPEC --nproc N`")
    assert not (tmp_path / "run").exists()  # stopped before anything was written


def test_no_launch_setting_travels_in_the_environment_any_more():
    """The launcher hands its workers one file (runner/train/handoff.py); no RUNNER_LAUNCHED_* variable is left."""
    found = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*") if path.is_file()
             and path.suffix in (".py", ".json", ".yaml", ".md", ".txt") and b"RUNNER_LAUNCHED" in path.read_bytes()]
    assert not found, found


def test_the_flows_and_training_never_read_the_process_command_line():
    """The command line a run records and repeats is passed in (runner/cli.py reads sys.argv), never read inside."""
    found = []
    for path in sorted((PACKAGE / "flows").rglob("*.py")) + sorted((PACKAGE / "train").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "argv" and getattr(node.value, "id", "") == "sys":
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert not found, found
