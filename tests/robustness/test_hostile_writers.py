"""Hostile cases of the writers beyond issue #30's list, each through the real CLI with the user's files
checked byte for byte: a file that appears while predict runs, a dry run aimed at a folder the run would refuse,
`reproduce` cut short then run again as its message says, and a file writer given a folder."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import labelled_rows, refused, run_cli, tiny_spec_text, write_csv, write_spec


def hashes(*roots: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ws(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile-writers")
    write_csv(folder / "data" / "train.csv", labelled_rows(per_label=30))
    spec = write_spec(folder, tiny_spec_text(tiny_model, extra="labels: [neg, pos]\n"))
    result = run_cli("run", str(spec), "--output", "run", cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def test_a_file_written_by_someone_else_while_predict_runs_is_kept(ws, tmp_path):
    big = write_csv(tmp_path / "big.csv", labelled_rows(per_label=30) * 300)
    target = tmp_path / "out.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen([sys.executable, "-m", "runner", "predict", "run", "--input", str(big), "--output",
                                str(target)], cwd=ws, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        for line in process.stderr:  # the output was checked (absent) before the first batch
            if line.startswith("predict: batch"):
                break
        process.send_signal(signal.SIGSTOP)  # paused while the user writes: no race with the end of the command
        target.write_text("mine\n", encoding="utf-8")
        process.send_signal(signal.SIGCONT)
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 1, err[-2000:]
    assert "someone else" in err and "hint:" in err and "Traceback" not in err + out, err[-2000:]
    assert target.read_bytes() == b"mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.csv", "out.jsonl"]  # no temporary file left


def test_a_dry_run_refuses_the_folders_the_run_refuses(ws):
    (ws / "link").symlink_to(ws / "run")
    before = hashes(ws)
    try:
        for output, words in (("data", "which no run wrote"), ("run/model", "inside the run folder"),
                              (".", "which no run wrote"), ("link", "symbolic link"), ("spec.yaml", "is a file")):
            for flags in ((), ("--overwrite",)):
                refused(run_cli("run", "spec.yaml", "--output", output, "--dry-run", *flags, cwd=ws), 2, "--output",
                        words)
        for flags in ((), ("--overwrite",)):  # a finished run: the plan (the run itself asks for --overwrite)
            result = run_cli("run", "spec.yaml", "--output", "run", "--dry-run", *flags, cwd=ws)
            assert result.returncode == 0 and "# plan" in result.stdout, result.stderr
        assert hashes(ws) == before
    finally:
        (ws / "link").unlink()


def test_a_reproduction_cut_short_is_replaced_when_run_again_as_its_message_says(ws):
    first = run_cli("reproduce", "run", "--output", "again", cwd=ws)
    assert first.returncode == 0, first.stderr[-2000:]
    before = hashes(ws / "run", ws / "data")
    refused(run_cli("reproduce", "run", "--output", "again", cwd=ws), 2, "already holds another run", "--overwrite")
    record = ws / "again" / "run.json"  # what a signal after training leaves: the record cut short
    manifest = json.loads(record.read_text(encoding="utf-8"))
    record.write_text(json.dumps({**manifest, "status": "recording"}), encoding="utf-8")
    result = run_cli("reproduce", "run", "--output", "again", cwd=ws)  # "run it again: runner reproduce run --output"
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(record.read_text(encoding="utf-8"))["status"] == "finished"
    assert hashes(ws / "run", ws / "data") == before
    other = ws / "mine"  # a folder of someone else's is still never replaced
    other.mkdir()
    (other / "run.json").write_text('{"status": "recording"}', encoding="utf-8")
    refused(run_cli("reproduce", "run", "--output", "mine", cwd=ws), 2, "which no run wrote")
    assert (other / "run.json").read_text(encoding="utf-8") == '{"status": "recording"}'


@pytest.mark.parametrize("command, name", [
    (("init", "data/train.csv", "-o"), "new-spec.yaml"),
    (("docs", "--output"), "reference.md"),
    (("predict", "run", "a day", "--output"), "predictions.jsonl"),
])
def test_a_file_writer_given_a_folder_hints_at_a_file_of_its_kind(ws, tmp_path, command, name):
    before = hashes(ws, tmp_path)
    refused(run_cli(*command, str(tmp_path), cwd=ws), 2, "is a folder", str(tmp_path / name))
    assert hashes(ws, tmp_path) == before


def test_push_never_uploads_what_a_link_in_the_run_points_to(ws, tmp_path, fake_hub):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(ws / "run", run)
    private = tmp_path / "thesis.txt"
    private.write_text("my thesis, not for the Hub\n", encoding="utf-8")
    for link in ("model/README.md", "report.md"):
        (run / link).unlink()
        (run / link).symlink_to(private)
    before = hashes(run, private.parent)
    refused(run_cli("push", str(run), "--repo", "me/tiny", cwd=ws), 2, "model/README.md", "report.md",
            "symbolic link")
    assert not fake_hub.commits and hashes(run, private.parent) == before
    for link in ("model/README.md", "report.md"):  # the files themselves: pushed
        (run / link).unlink()
        shutil.copy(ws / "run" / link, run / link)
    result = run_cli("push", str(run), "--repo", "me/tiny", cwd=ws)
    assert result.returncode == 0, result.stderr[-2000:]
    assert b"my thesis" not in b"".join(fake_hub.files("me/tiny").values())


@pytest.mark.parametrize("command", [
    ("init", "data/train.csv", "-o"), ("convert", "spec.yaml", "-o"), ("docs", "--output"),
    ("sky", "spec.yaml", "--image", "me/runner", "-o"), ("predict", "run", "a day", "--output"),
    ("export", "run", "-o"),
])
def test_a_name_the_system_refuses_is_one_line_exit_2(ws, command):
    before = hashes(ws)
    refused(run_cli(*command, "a" * 300 + ".x", cwd=ws), 2, "cannot be used", "File name too long")
    refused(run_cli(*command, "spec.yaml/x.y", cwd=ws), 2, "a part of it is a file")
    assert hashes(ws) == before


def test_a_path_with_a_line_break_or_an_escape_is_shown_on_one_line(ws, tmp_path):
    """The success lines printed paths raw: `--output "x<newline>error: spoofed"` made `done: ...; run folder x`
    and a second line `error: spoofed` that a reader or a log scraper takes for runner's; an ESC in a name moves
    the terminal's cursor. Each command's own line now shows such a name escaped, on one line."""
    odd = "x\nerror: spoofed \x1b[2K"
    texts = tmp_path / "texts.txt"
    texts.write_text("a great day\n", encoding="utf-8")
    results = {
        "run": run_cli("run", "spec.yaml", "--output", str(tmp_path / f"run{odd}"), cwd=ws),
        "predict": run_cli("predict", "run", "--input", str(texts), "--output", str(tmp_path / f"p{odd}.jsonl"),
                           cwd=ws),
        "init": run_cli("init", "data/train.csv", "-o", str(tmp_path / f"s{odd}.yaml"), cwd=ws),
        "docs": run_cli("docs", "--output", str(tmp_path / f"d{odd}.md"), cwd=ws),
    }
    results["validate"] = run_cli("validate", str(tmp_path / f"s{odd}.yaml"), cwd=ws)
    for command, result in results.items():
        assert result.returncode == 0, (command, result.stderr[-2000:])
        lines = (result.stdout + result.stderr).splitlines()
        assert not any(line.startswith("error: spoofed") for line in lines), (command, lines[-5:])
        assert "\x1b" not in result.stdout + result.stderr, command
        said = [line for line in result.stdout.splitlines() if "spoofed" in line]
        assert said and all("x\\nerror: spoofed \\x1b[2K" in line for line in said), (command, said)


def test_a_dash_output_prints_and_a_typo_suggests_only_what_help_shows(ws):
    """`init -o -` wrote a file named `-`; `-` now means standard output, as for other tools (init and predict here;
    sky and convert take the same option). `export --frce` suggested `--force`, an option --help does not show
    (accepted, changes nothing)."""
    before = hashes(ws)
    init = run_cli("init", "data/train.csv", "-o", "-", cwd=ws)
    assert init.returncode == 0 and init.stdout.startswith("#") and "model:" in init.stdout, init.stderr[-2000:]
    predict = run_cli("predict", "run", "a great day", "--output", "-", cwd=ws)
    assert predict.returncode == 0, predict.stderr[-2000:]
    assert json.loads(predict.stdout.splitlines()[0])["label"] in ("neg", "pos")
    assert not (ws / "-").exists() and hashes(ws) == before
    refused(run_cli("export", "run", "--frce", cwd=ws), 2, "No such option '--frce'", "export --help")
    assert "Did you mean" not in run_cli("export", "run", "--frce", cwd=ws).stderr
    typo = run_cli("export", "run", "--outpt", "x", cwd=ws)
    assert typo.returncode == 2 and "Did you mean '--output'?" in typo.stderr, typo.stderr
