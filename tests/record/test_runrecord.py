"""A run read back (runner.record.runrecord.RunRecord): typed fields from run.json and spec.yaml, and one error
for a folder that is not a finished run."""

from __future__ import annotations

import json

import pytest
import yaml

from runner.errors import DataError
from runner.record.runrecord import RunRecord


def write_run(folder, status="finished", results=None, hub=None):
    folder.mkdir(parents=True)
    results = (
        {
            "task": "single_label_classification",
            "labels": ["neg", "pos"],
            "metrics": {
                "validation": {"accuracy": 0.75},
                "headline": {"split": "validation", "name": "accuracy", "value": 0.75},
            },
            "class_weights": {"neg": 2.0, "pos": 0.5},
        }
        if results is None
        else results
    )
    manifest = {"status": status, "results": results} | ({"hub": hub} if hub else {})
    (folder / "run.json").write_text(json.dumps(manifest), encoding="utf-8")
    (folder / "spec.yaml").write_text(yaml.safe_dump({"task": "single_label_classification", "name": "x"}))
    return folder


def test_a_finished_run_reads_back_typed(tmp_path):
    record = RunRecord.load(write_run(tmp_path / "run", hub={"repo_id": "me/model"}))
    assert record.status == "finished" and record.task == "single_label_classification"
    assert record.labels == ["neg", "pos"] and record.headline["value"] == 0.75
    assert record.result.class_weights == {"neg": 2.0, "pos": 0.5}
    assert record.hub_url == "https://huggingface.co/me/model" and record.section("export") == {}


@pytest.mark.parametrize("status", ["recording", "interrupted", None])
def test_a_run_that_did_not_finish_is_one_error_with_its_status(tmp_path, status):
    folder = write_run(tmp_path / "run", status=status)
    with pytest.raises(DataError, match="is not a finished run") as caught:
        RunRecord.load(folder)
    assert (status or "not recorded") in caught.value.message and "--resume" in caught.value.hint
    assert RunRecord.load(folder, finished=False).status == (status or "")


@pytest.mark.parametrize("make", ["missing", "file", "no run.json", "damaged"])
def test_what_is_not_a_run_folder_is_a_data_error_not_a_traceback(tmp_path, make):
    path = tmp_path / "run"
    if make == "file":
        path.write_text("x")
    elif make == "no run.json":
        path.mkdir()
    elif make == "damaged":
        write_run(path)
        (path / "run.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(DataError):
        RunRecord.load(path)


def test_results_of_the_wrong_shape_read_as_empty(tmp_path):
    record = RunRecord.load(write_run(tmp_path / "run", results=["not", "a", "mapping"]))
    assert record.result.metrics == {} and record.labels == [] and record.headline == {}
