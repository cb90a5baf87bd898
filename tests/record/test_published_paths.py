"""What a run publishes (spec.yaml, run.json, the model card, the report) carries no path of the machine
that ran it: output.dir is `.`, the run folder itself, however --output was given; run.json's paths are
relative to the run folder, the spec's folder or the working folder (or a file name marked outside), its
argv starts with `runner`; and the commands that read them back (predict's guard, report, reproduce) still
find the files."""

import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, labelled_rows, run_cli, tiny_spec_text, write_csv

from runner.record.paths import published_arg, published_argv, published_path, recorded_path, recorded_spec_file
from runner.record.rundir import portable


def test_portable_keeps_everything_but_the_output_folder():
    values = {"name": "x", "output": {"dir": "/tmp/runner-temp/runs/x", "save_predictions": True}}
    assert portable(values) == {"name": "x", "output": {"dir": ".", "save_predictions": True}}
    assert values["output"]["dir"] == "/tmp/runner-temp/runs/x"  # the spec itself is left as it was
    assert portable({"name": "x"}) == {"name": "x"}


def test_a_published_path_is_relative_to_the_first_folder_that_holds_it(tmp_path, monkeypatch):
    run, spec, cwd = tmp_path / "runs" / "x", tmp_path / "repo" / "specs", tmp_path / "repo"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    assert published_path(run / "model" / "a.bin", run, spec) == {"path": "model/a.bin", "relative_to": "run"}
    assert published_path(spec / "data" / "t.csv", run, spec) == {"path": "data/t.csv", "relative_to": "spec"}
    # beside the spec in the working folder: from the spec's folder, found again wherever a command runs
    assert published_path(cwd / "data" / "t.csv", run, spec) == {"path": "../data/t.csv", "relative_to": "spec"}
    assert published_path(cwd / "data" / "t.csv", run, "/srv/specs") == {"path": "data/t.csv", "relative_to": "cwd"}
    assert published_path(cwd / "data" / "t.csv", run) == {"path": "data/t.csv", "relative_to": "cwd"}
    assert published_path("/srv/shared/t.csv", run, spec) == {"path": "t.csv", "outside": True}
    assert published_path(spec / ".." / "specs" / "t.csv", run, spec)["path"] == "t.csv"  # `..` resolved
    # a command line: the program is `runner`; a path typed is relative to the working folder, else its name
    argv = [str(ROOT / ".venv" / "bin" / "runner"), "run", str(spec / "a.yaml"), "--output", str(run),
            f"--output={run}", "--set", f"output.dir={run}", "--set", "train.epochs=2", "specs/a.yaml"]
    assert published_argv(argv) == ["runner", "run", "specs/a.yaml", "--output", "x", "--output=x",
                                    "--set", "output.dir=x", "--set", "train.epochs=2", "specs/a.yaml"]
    assert published_argv([sys.executable, "-m", "runner"]) == ["runner", "-m", "runner"]
    assert published_arg("a=b") == "a=b" and published_arg("/a=b/c.csv") == "c.csv"


def test_recorded_paths_are_found_again_from_the_run_folder(tmp_path, monkeypatch):
    run = tmp_path / "runs" / "x"
    manifest = {"spec_file": "specs/a.yaml", "spec_dir": "../../repo/specs"}
    spec_dir = (tmp_path / "repo" / "specs").resolve()
    assert recorded_spec_file(run, manifest) == spec_dir / "a.yaml"
    assert recorded_path({"path": "data/t.csv", "relative_to": "spec"}, run, manifest) == spec_dir / "data/t.csv"
    assert recorded_path({"path": "model/a", "relative_to": "run"}, run, manifest) == run / "model/a"
    monkeypatch.chdir(tmp_path)
    assert recorded_path({"path": "d/t.csv", "relative_to": "cwd"}, run, manifest) == tmp_path / "d/t.csv"
    assert recorded_path({"path": "t.csv", "outside": True}, run, manifest) is None
    # a record written before: absolute paths, no spec_dir
    old = {"spec_file": "/srv/specs/a.yaml"}
    assert recorded_spec_file(run, old) == Path("/srv/specs/a.yaml")
    assert recorded_path({"path": "/srv/data/t.csv"}, run, old) == Path("/srv/data/t.csv")
    assert recorded_path({"path": "data/t.csv", "relative_to": "spec"}, run, old) == Path("/srv/specs/data/t.csv")
    # without spec_dir, the folder spec.yaml's first line names
    run.mkdir(parents=True)
    (run / "spec.yaml").write_text("# paths in this spec are relative to: ../../repo/specs\nversion: 1\n")
    assert recorded_spec_file(run, {"spec_file": "a.yaml"}) == spec_dir / "a.yaml"


@pytest.fixture
def published_run(tmp_path, tiny_model):
    """The action's layout: the spec and its data in the repository (the working folder), a test file
    elsewhere on the machine, the base model beside them, the run folder in the runner's temp folder."""
    project = tmp_path / "repo"
    write_csv(project / "data" / "train.csv", labelled_rows())
    write_csv(tmp_path / "elsewhere" / "test.csv", labelled_rows(per_label=10, seed=3))
    (project / "specs").mkdir(parents=True)
    model = os.path.relpath(tiny_model, project / "specs")  # a relative model path, as a repository has it
    extra = f"  test_file: {tmp_path / 'elsewhere' / 'test.csv'}\n"
    text = tiny_spec_text(Path(model), train="../data/train.csv").replace("  train: ../data/train.csv\n",
                                                                          "  train: ../data/train.csv\n" + extra)
    (project / "specs" / "tiny.yaml").write_text(text)
    temp = tmp_path / "runner-temp" / "runner-runs" / "specs-tiny"
    proc = run_cli("run", "specs/tiny.yaml", "--output", str(temp), cwd=project, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return project, temp


def test_a_run_into_an_absolute_temp_folder_publishes_no_machine_path(published_run, tmp_path, tiny_model):
    project, temp = published_run
    published = {
        "spec.yaml": (temp / "spec.yaml").read_text(),
        "model/README.md": (temp / "model" / "README.md").read_text(),
        "report.md": (temp / "report.md").read_text(),
        "run.json": (temp / "run.json").read_text(),
    }
    # the spec's own test_file (an absolute path the user wrote) is the user's: only the spec's copies carry it
    users = str(tmp_path / "elsewhere" / "test.csv")
    published = {name: text.replace(users, "USERS") for name, text in published.items()}
    machine = {str(tmp_path), str(tiny_model), str(ROOT), sys.executable, sys.prefix, str(Path.home() / ".cache")}
    for name, text in published.items():
        for path in machine:
            assert path not in text, (name, path)
    assert yaml.safe_load(published["spec.yaml"])["output"]["dir"] == "."
    manifest = json.loads(published["run.json"])
    assert manifest["spec"]["data"]["test_file"] == "USERS"
    assert "USERS" not in json.dumps({k: v for k, v in manifest.items() if k != "spec"})
    assert manifest["argv"] == manifest["results"]["argv"] == ["runner", "run", "specs/tiny.yaml", "--output",
                                                              "specs-tiny"]
    assert manifest["spec_file"] == "specs/tiny.yaml" and manifest["spec_dir"] == "../../../repo/specs"
    files = manifest["data"]["files"]
    assert {k: v for k, v in files["train"].items() if k in ("path", "relative_to")} == {
        "path": "../data/train.csv", "relative_to": "spec"}
    assert files["test"]["path"] == "test.csv" and files["test"]["outside"] is True and files["test"]["sha256"]
    assert manifest["results"]["data_files"]["train"] == {"path": "../data/train.csv", "relative_to": "spec"}
    assert not os.path.isabs(manifest["model"]["path"]) and not os.path.isabs(manifest["results"]["model"]["path"])


def test_the_commands_that_read_a_published_run_still_find_its_files(published_run, tmp_path):
    project, temp = published_run
    # predict's guard finds the training file run.json names relative to the spec's folder, from anywhere
    for cwd in (project, tmp_path):
        target = os.path.relpath(project / "data" / "train.csv", cwd)
        proc = run_cli("predict", str(temp), "a lovely happy day", "--output", target, "--force", cwd=cwd)
        assert proc.returncode == 2 and "is the input file" in proc.stderr, proc.stderr[-2000:]
    proc = run_cli("predict", str(temp), "a lovely happy day", cwd=project)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert run_cli("report", str(temp), cwd=project).returncode == 0
    # reproduce finds the spec's folder from the run folder (spec_dir), wherever it is run from
    proc = run_cli("reproduce", str(temp), "--output", str(tmp_path / "again"), cwd=tmp_path,
                   env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0 and "metrics match" in proc.stdout, proc.stderr[-3000:]
    again = json.loads((tmp_path / "again" / "run.json").read_text())
    assert again["argv"] == ["runner", "reproduce", "runner-temp/runner-runs/specs-tiny", "--output", "again"]
    assert again["data"]["files"]["train"]["sha256"] == json.loads((temp / "run.json").read_text())["data"][
        "files"]["train"]["sha256"]
