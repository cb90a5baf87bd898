"""A data file inside an entry the run writes (run/checkpoints/...) is refused before anything is trained or
touched (even with --overwrite), in the single run and in cross-validation alike: the flow hands the check to
the data step (runner.train.pipeline.load_data's `preflight`), which runs it as soon as the files are known."""

from __future__ import annotations

import pytest
from conftest import labelled_rows, run_cli, write_csv, write_spec

SPEC = """version: 1
name: inside
data:
  train: run/checkpoints/checkpoint-1/train.csv{extra}
model:
  name: no-such-org/no-such-model-for-runner-tests
output:
  dir: run
"""


@pytest.mark.parametrize("extra", ["", "\n  cross_validation:\n    folds: 3"])
def test_a_data_file_inside_the_run_outputs_is_refused_before_the_model_loads(tmp_path, extra):
    data = tmp_path / "run" / "checkpoints" / "checkpoint-1" / "train.csv"  # a checkpoint is the run's whole
    write_csv(data, labelled_rows(labels=("pos", "neg"), per_label=15))
    write_spec(tmp_path, SPEC.format(extra=extra))
    (tmp_path / "run" / "run.json").write_text('{"format": 2, "spec_sha256": "0", "status": "complete"}')  # a run's
    before = data.read_bytes()
    result = run_cli("run", "spec.yaml", "--overwrite", cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-2].startswith("error: spec.yaml:4:10 data.train: the train data file is inside the run folder's "
                                "own outputs"), lines
    assert lines[-1].startswith("hint: copy it elsewhere first")
    assert "no-such-model" not in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert data.read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["checkpoints", "run.json"]
