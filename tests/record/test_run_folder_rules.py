"""Issue #30, "one door for every write", for `runner run` and `runner reproduce` output folders: a folder is a
run only when runner's record is in it; `--overwrite` replaces only runner's own earlier run, never a file of the
user's inside its folders, never the base model the run reads, never through a symbolic link; a folder named `~`
is that folder, never the home folder. Every refusal is checked through the real CLI: exit 2, one error line and
one hint line, no traceback, and every file of the user's byte for byte as it was."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import labelled_rows, run_cli, tiny_spec_text, write_csv, write_spec


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file under the roots; a symbolic link by its target (it is not followed)."""
    out = {}
    for root in roots:
        for path in sorted([root, *root.rglob("*")]):
            if path.is_symlink():
                out[str(path)] = f"-> {os.readlink(path)}"
            elif path.is_file():
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def refused(result, error: str, hint: str) -> None:
    """Exit 2, no traceback, and the last two lines of stderr: the error (holding `error`) and its hint."""
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert "Traceback" not in output and "internal error" not in output, output[-3000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-2].startswith("error: ") and error in lines[-2], lines[-2:]
    assert lines[-1].startswith("hint: ") and hint in lines[-1], lines[-2:]


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory) -> Path:
    """A workspace (spec.yaml, data/train.csv) with a finished run in run/, trained once."""
    folder = tmp_path_factory.mktemp("run-folder-rules")
    write_csv(folder / "data" / "train.csv", labelled_rows())
    write_spec(folder, tiny_spec_text(tiny_model))
    result = run_cli("run", "spec.yaml", cwd=folder, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


@pytest.fixture
def ws(trained, tmp_path) -> Path:
    """A copy of the workspace, for a test to change."""
    return Path(shutil.copytree(trained, tmp_path / "ws", symlinks=True))


def run_here(ws: Path, *args: str, home: Path | None = None):
    env = {"HF_HUB_OFFLINE": "1", **({"HOME": str(home)} if home else {})}
    return run_cli(*args, cwd=ws, env=env)


# ---------------------------------------------------------------------------------------------
# 1. A folder named ~


def test_a_folder_named_tilde_is_that_folder_and_the_home_folder_is_never_written(ws, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "keep.txt").write_text("the user's own file", encoding="utf-8")
    before = snapshot(home)
    result = run_here(ws, "run", "spec.yaml", "--output", "~", home=home)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (ws / "~" / "run.json").is_file() and (ws / "~" / "model" / "config.json").is_file()
    assert (ws / "~" / "checkpoints" / "fingerprint.json").is_file()
    assert snapshot(home) == before  # no checkpoints/, nothing else: one folder everywhere


def test_set_output_dir_to_a_bare_tilde_is_refused_not_read_as_the_default(ws, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    before = snapshot(ws)
    result = run_here(ws, "run", "spec.yaml", "--set", "output.dir=~", home=home)
    refused(result, "--set output.dir: --set output.dir is empty or null", "--set 'output.dir=\"~\"'")
    assert snapshot(ws) == before and not (ws / "runs").exists() and not any(home.iterdir())


# ---------------------------------------------------------------------------------------------
# 2. A file named run.json does not make a run


@pytest.mark.parametrize("record", ['{"a": 1}', '{"status": "finished"}', "not json"])
@pytest.mark.parametrize("flags", [["--overwrite"], []])
def test_a_run_json_that_runner_did_not_write_makes_no_run_and_nothing_is_replaced(ws, record, flags):
    mine = ws / "mine"
    for name, text in {"run.json": record, "model/weights.bin": "weights", "logs/day1.txt": "day one",
                       "spec.yaml": "my spec", "report.md": "my report"}.items():
        (mine / name).parent.mkdir(parents=True, exist_ok=True)
        (mine / name).write_text(text, encoding="utf-8")
    before = snapshot(ws)
    result = run_here(ws, "run", "spec.yaml", "--output", "mine", *flags)
    refused(result, "--output: output folder 'mine' holds model, logs, run.json, spec.yaml, report.md but no run "
            "record", "set output.dir (--output) to a new or empty folder")
    assert snapshot(ws) == before


def test_a_finished_runs_record_still_makes_a_run(ws):
    """The other side of the rule: runner's own run.json (format, spec_sha256) is a run, refused without
    --overwrite and never a place for another run's folder."""
    manifest = json.loads((ws / "run" / "run.json").read_text(encoding="utf-8"))
    assert isinstance(manifest["format"], int) and isinstance(manifest["spec_sha256"], str)
    before = snapshot(ws)
    refused(run_here(ws, "run", "spec.yaml"), "already holds a finished run", "pass --overwrite to replace it")
    refused(run_here(ws, "run", "spec.yaml", "--output", "run/inner"), "is inside the run folder",
            "choose a folder outside any run folder")
    assert snapshot(ws) == before


# ---------------------------------------------------------------------------------------------
# 3. The user's files inside the run's folders


def test_overwrite_refuses_user_files_inside_the_runs_folders_and_keeps_those_at_its_top(ws):
    run = ws / "run"
    (run / "onnx").mkdir()
    for name in ("predictions/my_analysis.csv", "model/MYNOTES.txt", "onnx/thesis.txt", "NOTES.md"):
        (run / name).write_text(f"the user's {name}", encoding="utf-8")
    before = snapshot(ws)
    result = run_here(ws, "run", "spec.yaml", "--overwrite")
    refused(result, "holds files that runner does not write there: model/MYNOTES.txt, onnx/thesis.txt, "
            "predictions/my_analysis.csv", "move them out of the run's folders first")
    assert "your files at the top of the run folder are kept" in result.stderr
    assert snapshot(ws) == before
    # as the hint says: moved out of the run's folders, the run is replaced and NOTES.md stays as it was
    for name in ("predictions/my_analysis.csv", "model/MYNOTES.txt", "onnx/thesis.txt"):
        (run / name).rename(ws / Path(name).name)
    notes = (run / "NOTES.md").read_bytes()
    result = run_here(ws, "run", "spec.yaml", "--overwrite")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (run / "NOTES.md").read_bytes() == notes and (ws / "MYNOTES.txt").read_text() == "the user's " \
        "model/MYNOTES.txt"
    assert not (run / "onnx").exists()  # an export of the earlier model is stale: it went with the earlier run


def test_a_user_folder_inside_the_model_folder_is_foreign_too(ws):
    (ws / "run" / "model" / "drafts").mkdir()
    (ws / "run" / "model" / "drafts" / "a.txt").write_text("draft", encoding="utf-8")
    before = snapshot(ws)
    refused(run_here(ws, "run", "spec.yaml", "--overwrite"), "model/drafts/", "move them out of the run's folders")
    assert snapshot(ws) == before


# ---------------------------------------------------------------------------------------------
# 4. The base model inside the run


def test_a_base_model_inside_the_run_it_would_replace_is_refused(ws):
    before = snapshot(ws)
    model = ws / "run" / "model"
    result = run_here(ws, "run", "spec.yaml", "--set", f"model.name={model}", "--overwrite")
    refused(result, f"--set model.name: the base model is inside the run folder's own outputs ({model})",
            "copy it elsewhere first")
    assert snapshot(ws) == before


def test_a_lora_adapters_base_inside_the_run_is_refused(ws, tiny_model):
    adapter = ws / "adapter"
    shutil.copytree(tiny_model, adapter)  # a folder that loads, naming its base in adapter_config.json
    base = ws / "run" / "model"
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base)}), encoding="utf-8")
    before = snapshot(ws)
    result = run_here(ws, "run", "spec.yaml", "--set", f"model.name={adapter}", "--overwrite")
    refused(result, f"the base model is inside the run folder's own outputs ({base})", "copy it elsewhere first")
    assert snapshot(ws) == before


# ---------------------------------------------------------------------------------------------
# 5. A symbolic link as the output folder


def test_run_and_reproduce_never_replace_a_run_through_a_symbolic_link(ws):
    shutil.copytree(ws / "run", ws / "pristine")
    (ws / "linkrun").symlink_to("pristine", target_is_directory=True)
    before = snapshot(ws)
    refused(run_here(ws, "run", "spec.yaml", "--output", "linkrun", "--overwrite"),
            "--output: output folder 'linkrun' is a symbolic link", "give the path of a real folder")
    refused(run_here(ws, "reproduce", "run", "--output", "linkrun", "--overwrite"),
            "--output is a symbolic link", "give the path of a real folder with --output")
    assert snapshot(ws) == before


# ---------------------------------------------------------------------------------------------
# 6. reproduce: what --overwrite does, said the same way in the help, the error and the hint


@pytest.mark.parametrize("flags", [[], ["--overwrite"]])
def test_reproduce_into_a_folder_of_the_users_says_overwrite_does_not_replace_it(ws, flags):
    (ws / "mine").mkdir()
    (ws / "mine" / "mine.txt").write_text("mine", encoding="utf-8")
    before = snapshot(ws)
    result = run_here(ws, "reproduce", "run", "--output", "mine", *flags)
    refused(result, "--output holds mine.txt, which no run wrote; --overwrite replaces only an earlier run",
            "choose a new or empty --output folder")
    assert "pass --overwrite" not in result.stderr
    assert snapshot(ws) == before


def test_reproduce_help_and_its_folder_errors_name_what_the_user_gave():
    help_text = " ".join(run_cli("reproduce", "--help").stdout.split())
    assert "--overwrite Replace an earlier run in the --output folder (never other files)." in help_text


def test_reproduce_over_a_run_with_user_files_names_the_output_option(ws):
    shutil.copytree(ws / "run", ws / "other")
    (ws / "other" / "model" / "MYNOTES.txt").write_text("notes", encoding="utf-8")
    before = snapshot(ws)
    result = run_here(ws, "reproduce", "run", "--output", "other", "--overwrite")
    refused(result, "model/MYNOTES.txt", "move them out of the run's folders first")
    assert result.stderr.strip().splitlines()[-2].startswith("error: --output: output folder "), result.stderr
    assert "--set output.dir" not in result.stderr
    assert snapshot(ws) == before


@pytest.mark.parametrize("output", ["run", "mine"])
def test_a_users_folder_named_previous_is_never_moved_into_the_run(ws, output):
    """A folder holding .previous/ was taken for an earlier run set aside by a killed run: its contents were moved
    up over the folder's own entries before any check."""
    (ws / output / ".previous").mkdir(parents=True)
    (ws / output / ".previous" / "notes.txt").write_text("mine", encoding="utf-8")
    (ws / output / ".previous" / "model").mkdir()
    before = snapshot(ws)
    result = run_here(ws, "run", "spec.yaml", "--output", output, "--overwrite")
    refused(result, "holds notes.txt: not a run runner set aside", "move")
    assert snapshot(ws) == before
