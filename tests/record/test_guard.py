"""The guarded writer: export, predict, reproduce, init and convert never write onto their
inputs, onto a run folder's files or into a folder that holds other files without --force/--overwrite;
they write atomically, export and reproduce take the run's lock, and a SIGTERM during an export says
one line and leaves no temporary folder. Every case checks the exit code, the message, that no
traceback was printed, and that the inputs and runs are byte-identical afterwards."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import labelled_rows, refused, run_cli, tiny_spec_text, write_csv, write_spec


def hashes(*roots: Path) -> dict[str, str]:
    """sha256 of every file under each root (or of the root itself when it is a file)."""
    out = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def ws(tiny_model, tmp_path_factory):
    """A workspace with two finished runs (run/ and other/) of the tiny model, on one data file."""
    folder = tmp_path_factory.mktemp("guarded")
    write_csv(folder / "data" / "train.csv", labelled_rows(per_label=30))
    spec = write_spec(folder, tiny_spec_text(tiny_model, extra="labels: [neg, pos]\n"))
    for name in ("run", "other"):
        result = run_cli("run", str(spec), "--output", name, cwd=folder)
        assert result.returncode == 0, result.stderr[-3000:]
    return folder


def test_export_never_replaces_the_run_or_its_files(ws):
    before = hashes(ws)
    for target in ("run", "run/model", "run/metrics.json", "other", "."):
        result = run_cli("export", "run", "-o", target, cwd=ws)
        refused(result, 2, "-o")
    result = run_cli("export", "run", "-o", ".", "--force", cwd=ws)  # the current folder, even with --force
    refused(result, 2, "current folder")
    assert hashes(ws) == before


def test_export_never_replaces_a_folder_of_someone_elses_even_with_force(ws, tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "notes.txt").write_text("keep me", encoding="utf-8")
    before = hashes(ws, target)
    for force in ([], ["--force"]):
        refused(run_cli("export", "run", "-o", str(target), *force, cwd=ws), 2, "files runner did not write",
                "notes.txt")
    assert hashes(ws, target) == before
    (target / "notes.txt").unlink()
    result = run_cli("export", "run", "-o", str(target), "--min-agreement", "0", cwd=ws)  # an empty folder
    assert result.returncode == 0, result.stderr[-2000:]
    assert (target / "model.onnx").is_file() and (target / ".runner").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temporary or old folder left
    again = run_cli("export", "run", "-o", str(target), "--min-agreement", "0", cwd=ws)  # its own earlier export
    assert again.returncode == 0, again.stderr[-2000:]
    assert (target.stat().st_mode & 0o777) == 0o777 & ~current_umask()  # the usual mode, not mkdtemp's 0700
    (target / "NOTES.md").write_text("mine", encoding="utf-8")  # a note added to an export keeps it
    refused(run_cli("export", "run", "-o", str(target), "--force", cwd=ws), 2, "NOTES.md")
    assert (target / "NOTES.md").read_text(encoding="utf-8") == "mine"


@pytest.mark.parametrize("mark", [None, "garbage", '{"made_by": "runner predict"}'])
def test_a_folder_with_an_exports_names_is_not_an_export_without_its_mark(ws, tmp_path, mark):
    """The fifth hostile pass: a user's folder holding only model.onnx and config.json (names an export also
    writes), with no mark, a mark of garbage or another command's, was replaced, with or without --force."""
    target = tmp_path / "mine"
    target.mkdir()
    (target / "model.onnx").write_text("my own onnx", encoding="utf-8")
    (target / "config.json").write_text('{"mine": 1}', encoding="utf-8")
    if mark is not None:
        (target / ".runner").write_text(mark, encoding="utf-8")
    before = hashes(target)
    for force in ([], ["--force"]):
        refused(run_cli("export", "run", "-o", str(target), "--min-agreement", "0", *force, cwd=ws), 2,
                "files runner did not write")
    assert hashes(target) == before


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_export_force_never_touches_home_a_repository_a_mount_or_a_link(ws, tmp_path):
    """The hostile pass's cases: -o $HOME --force deleted a home folder, -o REPO --force a repository."""
    home = tmp_path / "home"
    (home / "Documents").mkdir(parents=True)
    (home / ".bashrc").write_text("export PATH\n", encoding="utf-8")
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "src").mkdir()
    (repo / "src" / "main.py").write_text("print(1)\n", encoding="utf-8")
    user = tmp_path / "thesis"
    user.mkdir()
    (user / "thesis.txt").write_text("years of work", encoding="utf-8")
    (tmp_path / "link").symlink_to(user, target_is_directory=True)
    lookalike = tmp_path / "lookalike"  # an export's names and a note of the user's
    lookalike.mkdir()
    for name in ("model.onnx", "config.json", "NOTES.md"):
        (lookalike / name).write_text(name, encoding="utf-8")
    (ws / "other" / "onnx").symlink_to(user, target_is_directory=True)  # RUN/onnx is a link to the user's folder
    before = hashes(ws / "run", home, repo, user, lookalike)
    try:
        env = {"HOME": str(home)}
        cases = [(["-o", str(home), "--force"], "home folder"), (["-o", str(repo), "--force"], "repository"),
                 (["-o", "/proc", "--force"], "mount point"), (["-o", str(tmp_path / "link"), "--force"],
                                                               "symbolic link"),
                 (["-o", str(lookalike)], "NOTES.md"), (["-o", str(lookalike), "--force"], "NOTES.md")]
        for args, word in cases:
            refused(run_cli("export", "run", *args, cwd=ws, env=env), 2, word)
        refused(run_cli("export", "other", cwd=ws), 2, "symbolic link")
        assert hashes(ws / "run", home, repo, user, lookalike) == before
        assert (ws / "other" / "onnx").is_symlink()
    finally:
        (ws / "other" / "onnx").unlink()


IMAGE = "ghcr.io/tester/runner:1"


def test_docs_and_sky_write_only_their_own_files(ws, tmp_path):
    """docs --output spec.yaml replaced a spec; sky -o spec.yaml/train.csv/RUN/run.json --force replaced the spec,
    its data and a run's manifest; sky -o a/b/c.yaml made folders."""
    before = hashes(ws)
    refused(run_cli("docs", "--output", "spec.yaml", cwd=ws), 2, "already exists")
    refused(run_cli("docs", "--output", "spec.yaml", "--force", cwd=ws), 2, "runner did not write")
    refused(run_cli("docs", "--output", "run/metrics.json", "--force", cwd=ws), 2, "run folder")
    for target in ("spec.yaml", "data/train.csv", "run/run.json"):
        refused(run_cli("sky", "spec.yaml", "--image", IMAGE, "-o", target, "--force", cwd=ws), 2, "-o ")
    refused(run_cli("sky", "spec.yaml", "--image", IMAGE, "-o", "a/b/c.yaml", cwd=ws), 2, "does not exist")
    assert hashes(ws) == before and not (ws / "a").exists()
    # its own earlier output is replaced with --force (sky.s: tests/train/test_multinode.py)
    out = tmp_path / "reference.md"
    assert run_cli("docs", "--output", str(out), cwd=ws).returncode == 0
    refused(run_cli("docs", "--output", str(out), cwd=ws), 2, "already exists", "--force")
    result = run_cli("docs", "--output", str(out), "--force", cwd=ws)
    assert result.returncode == 0, result.stderr


def test_export_waits_for_no_one_holding_the_run(ws):
    """A run --overwrite of the same folder holds its lock: the export refuses instead of mixing models."""
    from runner.record.rundir import RunDir

    before = hashes(ws / "run")
    with RunDir(ws / "run").lock("a run"):
        result = run_cli("export", "run", cwd=ws)
    refused(result, 1, "in use by another runner process")
    assert hashes(ws / "run") == before and not (ws / "run" / "onnx").exists()


@pytest.mark.timing
def test_sigterm_during_export_says_one_line_and_leaves_no_temporary_folder(ws):
    env = dict(os.environ)
    process = subprocess.Popen([sys.executable, "-m", "runner", "export", "other"], cwd=ws, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    temporary = ws / "other" / ".onnx.tmp"
    deadline = time.time() + 120
    while not temporary.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 143, err[-2000:]
    assert "Traceback" not in out + err
    assert "export stopped by SIGTERM" in err and "runner export other" in err
    assert not temporary.exists() and not (ws / "other" / "onnx").exists()


def catches_sigterm(process: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until `process` has a handler for SIGTERM (its SigCgt mask in /proc, Linux): runner's, installed as the
    command starts. A signal sent earlier (the interpreter starting, on a busy machine) ends it with -15."""
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{process.pid}/status").read_text(encoding="ascii")
        except OSError:
            return
        caught = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:")), 16)
        if caught & (1 << (signal.SIGTERM - 1)):
            return
        time.sleep(0.01)


@pytest.mark.timing
def test_sigterm_anywhere_in_an_export_exits_143_with_one_line_and_no_leftovers(ws, tmp_path):
    """The signal lands at many points of one export (imports of torch and onnx, loading, exporting, the
    parity check, putting the folder in place): always exit 143 (or 0 when the export had ended), never a
    traceback or an abort, no temporary folder, and the export is either absent or whole. The points are
    spread over one measured export; the assertions hold wherever each lands."""
    started = time.monotonic()
    whole = run_cli("export", "run", "-o", str(tmp_path / "reference"), cwd=ws)
    assert whole.returncode == 0, whole.stderr[-2000:]
    seconds = time.monotonic() - started
    codes = []
    for point in range(5):
        target = tmp_path / f"out{point}"
        process = subprocess.Popen([sys.executable, "-m", "runner", "export", "run", "-o", str(target)], cwd=ws,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        catches_sigterm(process)  # before its handler a SIGTERM kills it (-15), as it would any program
        time.sleep(seconds * (0.05 + point / 5))
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=300)
        codes.append(process.returncode)
        assert process.returncode in (0, 143), (point, process.returncode, err[-3000:])
        assert "Traceback" not in out + err and "internal error" not in err, err[-3000:]
        if process.returncode == 143:
            lines = [line for line in err.splitlines() if "SIGTERM" in line]
            assert len(lines) == 1, err[-3000:]
            assert ("nothing was written" in lines[0]) == (not target.exists()), (lines, target.exists())
        if target.exists():
            reference = sorted(p.name for p in (tmp_path / "reference").iterdir())
            assert sorted(p.name for p in target.iterdir()) == reference
        assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(f".out{point}")]
    assert 143 in codes, codes


@pytest.mark.timing
def test_the_next_export_removes_what_a_killed_one_left_and_nothing_of_a_live_one(ws, tmp_path):
    """SIGKILL cannot be caught: an export killed while it builds leaves .out.tmp-*. The next export of the same
    target removes it (its process is gone); a leftover-looking folder of a live process (a concurrent export)
    or of another machine sharing the folder is left alone."""
    from runner.files import _machine

    target = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "runner", "export", "run", "-o", str(target)], cwd=ws,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list(tmp_path.glob(".out.tmp-*")) and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, process.communicate()
    process.kill()
    process.communicate(timeout=60)
    killed = list(tmp_path.glob(".out.tmp-*"))
    assert killed and not target.exists()
    live = tmp_path / f".out.tmp-{_machine()}-{os.getpid()}-concurrent"  # this test's own process: alive
    elsewhere = tmp_path / ".out.tmp-0123abcd-12345-another-machine"
    for folder in (live, elsewhere):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"half")
    result = run_cli("export", "run", "-o", str(target), cwd=ws)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (target / "model.onnx").is_file()
    assert sorted(p.name for p in tmp_path.glob(".out.*")) == sorted([live.name, elsewhere.name])


def test_predict_never_writes_onto_its_input_or_a_run(ws):
    texts = ws / "texts.csv"
    write_csv(texts, [{"text": "a great day", "label": "pos"}])
    before = hashes(ws)
    refused(run_cli("predict", "run", "--input", "texts.csv", "--output", "texts.csv", cwd=ws), 2, "input file")
    os.link(texts, ws / "hardlink.csv")
    try:
        refused(run_cli("predict", "run", "--input", "texts.csv", "--output", "hardlink.csv", "--force", cwd=ws), 2,
                "input file")
    finally:
        (ws / "hardlink.csv").unlink()
    for target in ("run/metrics.json", "run/predictions/validation.jsonl", "other/new.jsonl"):
        refused(run_cli("predict", "run", "a great day", "--output", target, "--force", cwd=ws), 2, "run folder")
    assert hashes(ws) == before


def test_predict_replaces_an_earlier_output_only_with_force(ws, tmp_path):
    out = tmp_path / "p.jsonl"
    assert run_cli("predict", "run", "a great day", "--output", str(out), cwd=ws).returncode == 0
    refused(run_cli("predict", "run", "a great day", "--output", str(out), cwd=ws), 2, "already exists", "--force")
    result = run_cli("predict", "run", "a dull day", "--output", str(out), "--force", cwd=ws)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(out.read_text(encoding="utf-8"))["text"] == "a dull day"
    mine = tmp_path / "mine.jsonl"  # a file runner did not write is never replaced, even with --force
    mine.write_text("earlier\n", encoding="utf-8")
    refused(run_cli("predict", "run", "a great day", "--output", str(mine), "--force", cwd=ws), 2,
            "runner did not write")
    assert mine.read_text(encoding="utf-8") == "earlier\n"


@pytest.mark.parametrize("content, runners", [
    ('{"label": "pos", "score": 0.9, "probabilities": {}, "text": "a"}\n', True),  # single label
    ('{"labels": ["pos"], "probabilities": {}, "text": "a"}\n', True),  # multi-label
    ('{"value": 0.3, "text": "a"}\n', True),  # regression
    ("label,score,probabilities,text\r\npos,0.9,{},a\r\n", True),  # the CSV form
    ('{"label": "pos", "score": 0.9}\n', False),  # no text: not predict's
    ("text,label\na,pos\n", False),  # a data file
    ("text,value\na,0.3\n", False),  # a regression data set (predict writes value,text)
    ("text,label,score\na,pos,0.9\n", False),  # a graded data set: a label and a score, not predict's columns
    ('{"text": "a", "label": "pos", "score": 0.9}\n', False),
    ("earlier\n", False),
])
def test_predictions_of_every_task_are_known_as_runners(tmp_path, content, runners):
    from runner.record.guard import made_by_runner

    path = tmp_path / "p.out"
    path.write_bytes(content.encode())
    assert made_by_runner(path, "predictions") is runners


def test_reproduce_into_another_finished_run_needs_overwrite(ws):
    before = hashes(ws)
    refused(run_cli("reproduce", "run", "--output", "other", cwd=ws), 2, "already holds another run", "--overwrite")
    refused(run_cli("reproduce", "run", "--output", "run/inner", cwd=ws), 2, "inside the run")
    refused(run_cli("reproduce", "run", "--output", ".", cwd=ws), 2, "holds it")
    assert hashes(ws) == before


def test_init_and_convert_never_write_into_a_run(ws):
    before = hashes(ws)
    refused(run_cli("init", "data/train.csv", "-o", "run/spec.yaml", "--force", cwd=ws), 2, "run folder")
    refused(run_cli("init", "data/train.csv", "-o", "other/new.yaml", cwd=ws), 2, "run folder")
    refused(run_cli("init", "data/train.csv", "-o", "data/train.csv", "--force", cwd=ws), 2, "input file")
    assert hashes(ws) == before


def test_a_refused_run_leaves_no_empty_folder(ws):
    bad = write_spec(ws, (ws / "spec.yaml").read_text(encoding="utf-8").replace("data/train.csv", "data/bad.csv"),
                     "bad.yaml")
    write_csv(ws / "data" / "bad.csv", [{"words": "no text column", "label": "pos"}] * 10)
    try:
        result = run_cli("run", str(bad), "--output", "fresh/nested", cwd=ws)
        refused(result, 2)
        assert not (ws / "fresh").exists()
    finally:
        bad.unlink()
        (ws / "data" / "bad.csv").unlink()


def test_lora_export_carries_temperature_and_thresholds(tiny_model, tmp_path):
    write_csv(tmp_path / "data" / "train.csv", labelled_rows(per_label=100))  # 40 validation rows: the floor
    extra = "labels: [neg, pos]\nlora:\n  r: 4\n  alpha: 8\n  target_modules: [query, value]\n" \
            "predict: {calibration: temperature, tune_thresholds: true}\n"
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model, extra=extra))
    assert run_cli("run", str(spec), cwd=tmp_path).returncode == 0
    result = run_cli("export", "run", "--min-agreement", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((tmp_path / "run" / "run.json").read_text(encoding="utf-8"))["results"]
    config = json.loads((tmp_path / "run" / "onnx" / "config.json").read_text(encoding="utf-8"))
    # calibration is applied only when it helps: the export carries what the run applied
    temperature = results["temperature"]
    assert config.get("runner_temperature") == (pytest.approx(temperature) if temperature else None)
    assert results["thresholds"] and config["runner_thresholds"] == pytest.approx(results["thresholds"])


# ---------------------------------------------------------------------------------------------
# Smaller promises of the guarded writer


@pytest.mark.parametrize("extra, words", [
    ("train:\n  class_weights: {pos: 1.0e39}\n", ["class_weights", "spec.yaml:"]),
    ("hub:\n  repo_id: me/x--y\n", ["hub.repo_id", "spec.yaml:"]),
    ("hub:\n  repo_id: me/x.git\n", ["hub.repo_id", "spec.yaml:"]),
])
def test_validate_refuses_with_the_line(tmp_path, tiny_model, extra, words):
    write_csv(tmp_path / "data" / "train.csv", labelled_rows(per_label=5))
    text = tiny_spec_text(tiny_model).replace("train:\n  epochs", "train:\n  epochs", 1)
    if extra.startswith("train:"):
        text = text.replace("train:\n", extra, 1)
    else:
        text += extra
    spec = write_spec(tmp_path, text)
    refused(run_cli("validate", str(spec), cwd=tmp_path), 2, *words)


def test_bare_no_is_the_documented_no(tmp_path, tiny_model):
    write_csv(tmp_path / "data" / "train.csv", labelled_rows(per_label=5))
    extra = "train:\n  eval_strategy: no\n  load_best_model_at_end: false\n"
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model).replace("train:\n", extra, 1))
    result = run_cli("validate", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    from runner.spec.document import load_spec

    assert load_spec(spec)["train"]["eval_strategy"] == "no"


def test_a_run_validates_its_own_spec_and_prints_to_a_latin1_terminal(ws):
    assert run_cli("validate", "run/spec.yaml", cwd=ws).returncode == 0
    env = {**os.environ, "PYTHONIOENCODING": "latin-1"}
    for args in (("predict", "run", "日本語のテキスト ✓"), ("report", "run")):
        result = subprocess.run([sys.executable, "-m", "runner", *args], cwd=ws, env=env, capture_output=True)
        err = result.stderr.decode("latin-1")
        assert result.returncode == 0 and "Traceback" not in err, err[-2000:]
        assert result.stdout.decode("latin-1").strip()


def test_eval_hints_name_the_file_not_the_spec(ws, tmp_path):
    data = write_csv(tmp_path / "e.csv", [{"words": "a great day", "label": "pos"}])
    result = run_cli("eval", "run", "--data", str(data), cwd=ws)
    refused(result, 2, "fix the file")
    hint = [line for line in result.stderr.splitlines() if line.startswith("hint:")][0]
    assert "spec" not in hint


def test_numeric_labels_match_across_formats():
    from runner.data.labels import encode_single_labels

    frame = pd.DataFrame({"label": [1.0, 0.0, 1.0], "__row__": [1, 2, 3]})
    encoded, labels = encode_single_labels(frame, "label", ["0.0", "1.0"], "e.jsonl", "e.jsonl")
    assert encoded.tolist() == [1, 0, 1] and labels == ["0.0", "1.0"]


def test_calibration_on_a_few_rows_warns_at_its_bound(capsys):
    from runner.evaluate.quality import fit_temperature

    assert fit_temperature(np.array([[2.0, -2.0]]), np.array([1]), False) > 10
    assert "at its bound" in capsys.readouterr().err
    fit_temperature(np.array([[2.0, -2.0], [1, 0], [0, 1.0], [0.5, 0.2]] * 10), np.array([0, 1, 1, 0] * 10), False)
    assert "bound" not in capsys.readouterr().err


def test_predict_on_a_record_without_its_model_says_what_is_missing(ws, tmp_path):
    """A record fetched from a job without --fetch-model holds spec.yaml and run.json, not model/: predict said
    "no spec.yaml or model/" although spec.yaml was there."""
    import shutil

    record = tmp_path / "fetched"
    shutil.copytree(ws / "run", record, ignore=shutil.ignore_patterns("model", "onnx", "checkpoints"))
    result = run_cli("predict", str(record), "a great day", cwd=ws)
    assert result.returncode == 2, result.stderr
    assert "holds a run's record but not its model (no model/)" in result.stderr and "--fetch-model" in result.stderr
    (record / "spec.yaml").unlink()
    (record / "run.json").unlink()
    result = run_cli("predict", str(record), "a great day", cwd=ws)
    assert "is not a finished run folder (no spec.yaml and model/)" in result.stderr


@pytest.mark.timing
def test_a_signal_after_the_command_finished_stops_nothing_and_says_so(ws, tmp_path):
    """SIGTERM right after predict said it wrote its file (the interpreter still shutting down, torch's exit
    handlers running) gave exit 143 with no word, or exit 0 with a traceback from an exit handler. Now: the file
    is whole, and either the command finished (exit 0: the signal is ignored once the work is done) or it says in
    one line that it was interrupted (exit 143); never a traceback, never killed by the signal (exit -15).
    Synchronised on the line predict prints."""
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(f"a great day number {i}\n" for i in range(200)), encoding="utf-8")
    codes = []
    for attempt in range(3):
        out = tmp_path / f"p{attempt}.jsonl"
        process = subprocess.Popen([sys.executable, "-m", "runner", "predict", "run", "--input", str(texts),
                                    "--output", str(out)], cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        for line in process.stdout:
            if line.startswith("wrote "):
                process.send_signal(signal.SIGTERM)
                break
        stdout, stderr = process.communicate(timeout=120)
        codes.append(process.returncode)
        assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr[-2000:]
        assert process.returncode in (0, 143), (process.returncode, stderr[-2000:])
        if process.returncode == 143:
            assert "interrupted (SIGTERM)" in stderr, stderr[-2000:]
        assert len(out.read_text(encoding="utf-8").splitlines()) == 200  # whole, whatever the signal did


def test_export_into_a_read_only_folder_is_one_line_not_an_internal_error(ws, tmp_path):
    """The fifth hostile pass: `export -o` on a read-only file system said `internal error: OSError`."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'mount failed'}): needs root")
    try:
        result = run_cli("export", "run", "-o", str(folder / "out"), cwd=ws)
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    assert f"error: {folder}: cannot write beside {folder / 'out'}: Read-only file system" in result.stderr


@pytest.mark.parametrize("kind", ["init", "docs", "sky"])
def test_force_replaces_runners_file_only_while_it_is_unchanged(ws, tmp_path, kind):
    """init --force and docs --force replaced a file that kept runner's header after the user rewrote the rest:
    the seal (the SHA-256 of the lines above it, on runner's last line) must still match the file."""
    out = tmp_path / f"{kind}-output"
    command = {"init": ["init", "data/train.csv", "-o", str(out)], "docs": ["docs", "--output", str(out)],
               "sky": ["sky", "spec.yaml", "--set", "model.name=prajjwal1/bert-tiny", "--image", IMAGE, "-o",
                       str(out)]}[kind]
    assert run_cli(*command, cwd=ws).returncode == 0
    written = out.read_text(encoding="utf-8")
    assert "SHA-256 of the lines above" in written.splitlines()[-1]
    assert run_cli(*command, "--force", cwd=ws).returncode == 0  # unchanged: runner's, replaced
    for edit in (written.replace("\n", "\n# my note\n", 1),  # a line added after the header
                 written + "extra: kept\n",  # a line after the seal
                 written.rsplit("\n", 2)[0] + "\n"):  # the seal removed
        out.write_text(edit, encoding="utf-8")
        refused(run_cli(*command, "--force", cwd=ws), 2, "edited since")
        assert out.read_text(encoding="utf-8") == edit


def test_a_run_writes_nothing_in_home_or_tmpdir(ws, tmp_path):
    """matplotlib wrote its font list and config into $HOME/.cache and $HOME/.config: library caches go under
    runner's cache folder (MPLCONFIGDIR, TORCHINDUCTOR_CACHE_DIR), unless the user set them."""
    home, scratch, cache = tmp_path / "home", tmp_path / "tmp", tmp_path / "cache"
    for folder in (home, scratch):
        folder.mkdir()
    env = {"HOME": str(home), "TMPDIR": str(scratch), "RUNNER_CACHE_DIR": str(cache), "MPLCONFIGDIR": "",
           "TORCHINDUCTOR_CACHE_DIR": "", "XDG_CACHE_HOME": "", "XDG_CONFIG_HOME": ""}
    result = run_cli("run", "spec.yaml", "--output", str(tmp_path / "third"), cwd=ws, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "third" / "report.md").is_file()
    assert [str(p) for p in home.rglob("*")] == [] and [str(p) for p in scratch.rglob("*")] == []
    assert (cache / "matplotlib").is_dir()


ONNXRUNTIME_CI_VARIABLES = ("CI", "TF_BUILD", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "TRAVIS", "JENKINS_URL",
                            "CODEBUILD_BUILD_ID", "BUILDKITE", "TEAMCITY_VERSION", "APPVEYOR", "BITBUCKET_BUILD_NUMBER",
                            "ORT_DISABLE_TELEMETRY")


def test_an_export_writes_nothing_in_home_or_tmpdir(ws, tmp_path):
    """onnxruntime's telemetry wrote $HOME/.cache/Microsoft/DeveloperTools/... and TMPDIR/.ses as it loaded: its
    import points both into runner's cache."""
    home, scratch, cache = tmp_path / "home", tmp_path / "tmp", tmp_path / "cache"
    for folder in (home, scratch):
        folder.mkdir()
    env = {"HOME": str(home), "TMPDIR": str(scratch), "RUNNER_CACHE_DIR": str(cache), "XDG_CACHE_HOME": ""}
    # onnxruntime turns its telemetry off on CI services (it reads these variables): the test runs as a user would.
    quiet = dict.fromkeys(ONNXRUNTIME_CI_VARIABLES)
    result = run_cli("export", "run", "-o", str(tmp_path / "exported"), cwd=ws, env={**env, **quiet})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "exported" / "model.onnx").is_file()
    assert [str(p) for p in home.rglob("*")] == [] and [str(p) for p in scratch.rglob("*")] == []
    # The control: the same bare import, without runner, writes into HOME here; where it writes nothing (a
    # build without telemetry) the assertions above hold and this one has nothing to show.
    bare_home = tmp_path / "bare-home"
    bare_home.mkdir()
    bare_env = {**os.environ, **env, **quiet, "HOME": str(bare_home)}
    bare_env = {key: value for key, value in bare_env.items() if value is not None}
    subprocess.run([sys.executable, "-c", "import onnxruntime"], env=bare_env, check=True, timeout=120)
    if any(bare_home.rglob("*")):
        assert (cache / "onnxruntime" / "Microsoft").is_dir()
