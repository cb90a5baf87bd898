"""What a run publishes (spec.yaml, run.json's spec, the model card, the report) carries no path of
the machine that ran it: output.dir is `.`, the run folder itself, however --output was given."""

import json

import yaml
from conftest import labelled_rows, run_cli, tiny_spec_text, write_csv

from runner.record.rundir import portable


def test_portable_keeps_everything_but_the_output_folder():
    values = {"name": "x", "output": {"dir": "/tmp/runner-temp/runs/x", "save_predictions": True}}
    assert portable(values) == {"name": "x", "output": {"dir": ".", "save_predictions": True}}
    assert values["output"]["dir"] == "/tmp/runner-temp/runs/x"  # the spec itself is left as it was
    assert portable({"name": "x"}) == {"name": "x"}


def test_a_run_into_an_absolute_temp_folder_publishes_no_such_path(tmp_path, tiny_model):
    project = tmp_path / "repo"
    write_csv(project / "specs" / "data" / "train.csv", labelled_rows())
    (project / "specs" / "tiny.yaml").write_text(tiny_spec_text(tiny_model))
    temp = tmp_path / "runner-temp" / "runner-runs" / "specs-tiny"
    proc = run_cli("run", "specs/tiny.yaml", "--output", str(temp), cwd=project, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]

    published = {
        "spec.yaml": (temp / "spec.yaml").read_text(),
        "model/README.md": (temp / "model" / "README.md").read_text(),
        "report.md": (temp / "report.md").read_text(),
        "run.json spec": json.dumps(json.loads((temp / "run.json").read_text())["spec"]),
    }
    for name, text in published.items():
        assert str(tmp_path / "runner-temp") not in text, name
    assert yaml.safe_load(published["spec.yaml"])["output"]["dir"] == "."
    # and the run folder still serves predict (it reads spec.yaml from the run folder)
    proc = run_cli("predict", str(temp), "a lovely happy day", cwd=project)
    assert proc.returncode == 0, proc.stderr[-2000:]
