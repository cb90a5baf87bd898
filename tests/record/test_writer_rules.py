"""One door for every write (issue #30), a hostile pass: nothing deleted or overwritten that runner did not make,
and --force replaces only runner's own unchanged earlier output. Each case goes through the real CLI (a subprocess;
where a moment inside the command matters, a wrapper makes it happen there, not at a guessed time) and checks the
exit code, one `error:` and one `hint:` line, no traceback, and the user's files byte for byte."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import labelled_rows, refused, run_cli, tiny_spec_text, write_csv, write_spec

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e .[onnx])")
pytest.importorskip("onnxscript", reason="onnxscript is not installed (pip install -e .[onnx])")

GOLD = '{"label": "pos", "score": 0.9, "probabilities": {"neg": 0.1, "pos": 0.9}, "text": "a great day"}\n'


def hashes(root: Path) -> dict[str, str]:
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def wrapped(cwd: Path, before: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess, with `before` (Python) run first: it makes something happen at a set point of
    the command (a user's folder appearing, a signal arriving), so nothing depends on timing."""
    code = (f"import os, signal, sys\nfrom pathlib import Path\n{before}\n"
            f"sys.argv = {['runner', *args]!r}\nfrom runner.cli import entry\nentry()\n")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def ws(tiny_model, tmp_path_factory):
    """A workspace with a finished run of the tiny model (run/), a copy of it (other/) and an export of run (ex/)."""
    folder = tmp_path_factory.mktemp("writer-rules")
    write_csv(folder / "data" / "train.csv", labelled_rows(per_label=30))
    spec = write_spec(folder, tiny_spec_text(tiny_model, extra="labels: [neg, pos]\n"))
    result = run_cli("run", str(spec), "--output", "run", cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    shutil.copytree(folder / "run", folder / "other")
    result = run_cli("export", "run", "-o", "ex", "--min-agreement", "0", cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


def test_a_fifo_a_socket_or_a_device_is_refused_at_once(ws, tmp_path):
    """Finding 1: `predict --output fifo.jsonl --force` and `init -o fifo.yaml --force` hung forever (the ownership
    check opened the FIFO). Now exit 2 at once (a hang fails on the subprocess's timeout)."""
    fifo, sock_path = tmp_path / "fifo.jsonl", tmp_path / "s.jsonl"
    os.mkfifo(fifo)
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock_path))
    try:
        for command in (["predict", "run", "great", "--output", str(fifo), "--force"],
                        ["init", "data/train.csv", "-o", str(fifo), "--force"],
                        ["docs", "--output", str(fifo), "--force"],
                        ["predict", "run", "great", "--output", str(sock_path), "--force"],
                        ["predict", "run", "great", "--output", os.devnull, "--force"]):
            refused(run_cli(*command, cwd=ws, timeout=120), 2, "not a regular file")
        result = run_cli("docs", "--check", "--output", str(fifo), cwd=ws, timeout=120)  # never opened either
        refused(result, 1, "out of date")
    finally:
        server.close()
    assert stat.S_ISFIFO(os.stat(fifo).st_mode) and stat.S_ISSOCK(os.stat(sock_path).st_mode)


def test_force_replaces_predictions_only_when_runner_wrote_that_content(ws, tmp_path):
    """Finding 2: a hand-written gold.jsonl with predict's exact columns was replaced by --force. Now runner's
    ledger (the SHA-256 of each predictions file it wrote, in its cache) must hold the file's current content."""
    gold = tmp_path / "gold.jsonl"
    gold.write_text(GOLD, encoding="utf-8")
    gold_csv = tmp_path / "gold.csv"
    gold_csv.write_text('label,score,probabilities,text\npos,0.9,"{}",a\n', encoding="utf-8")
    for path in (gold, gold_csv):
        before = hashes(path)
        refused(run_cli("predict", "run", "a great day", "--output", str(path), "--force", cwd=ws), 2,
                "runner did not write", "move the file away yourself")
        assert hashes(path) == before
    out = tmp_path / "p.csv"
    assert run_cli("predict", "run", "a great day", "--output", str(out), cwd=ws).returncode == 0
    result = run_cli("predict", "run", "a dull day", "--output", str(out), "--force", cwd=ws)  # runner's: replaced
    assert result.returncode == 0, result.stderr[-2000:]
    assert "a dull day" in out.read_text(encoding="utf-8")
    edited = out.read_text(encoding="utf-8") + "mine,1,{},added by hand\n"
    out.write_text(edited, encoding="utf-8")  # runner's file, edited since: the user's now
    refused(run_cli("predict", "run", "a day", "--output", str(out), "--force", cwd=ws), 2, "edited since")
    assert out.read_text(encoding="utf-8") == edited


def test_an_export_is_replaced_only_while_every_file_is_as_written(ws, tmp_path):
    """Findings 3 and 7: an export edited by hand was replaced without a flag, and a refusal named runner's own
    files (.runner, config.json...) as the user's. The mark holds each file's SHA-256 and size; the refusal names
    only what was added or changed."""
    mark = json.loads((ws / "ex" / ".runner").read_text(encoding="utf-8"))
    assert mark["made_by"] == "runner export" and {"model.onnx", "config.json"} <= set(mark["files"])
    assert mark["files"]["model.onnx"]["bytes"] == (ws / "ex" / "model.onnx").stat().st_size
    cases = {"edited": lambda f: (f / "config.json").write_text('{"mine": 1}', encoding="utf-8"),
             "added": lambda f: (f / "NOTES.md").write_text("my notes", encoding="utf-8"),
             "unlisted": lambda f: (f / ".runner").write_text('{"made_by": "runner export", "run": "run"}',
                                                             encoding="utf-8")}
    named = {"edited": "(config.json (changed))", "added": "(NOTES.md)", "unlisted": "config.json"}
    for case, change in cases.items():
        target = tmp_path / case
        shutil.copytree(ws / "ex", target)
        change(target)
        before = hashes(target)
        for force in ([], ["--force"]):
            refused(run_cli("export", "run", "-o", str(target), *force, cwd=ws), 2, "files runner did not write",
                    named[case])
        assert hashes(target) == before
    added = run_cli("export", "run", "-o", str(tmp_path / "added"), cwd=ws)
    assert ".runner" not in added.stderr and "config.json" not in added.stderr, added.stderr
    same = tmp_path / "same"  # an unchanged earlier export: replaced
    shutil.copytree(ws / "ex", same)
    result = run_cli("export", "run", "-o", str(same), "--min-agreement", "0", cwd=ws)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_run_s_own_export_folder_as_a_link_is_named(ws, tmp_path):
    """Finding 7: with run/onnx a symbolic link and no -o, the error said "-o is a symbolic link"."""
    link = ws / "other" / "onnx"
    link.symlink_to(tmp_path)
    try:
        refused(run_cli("export", "other", cwd=ws), 2, "other/onnx", "symbolic link", "remove the link")
        result = run_cli("export", "other", cwd=ws)
        assert "-o is" not in result.stderr
    finally:
        link.unlink()


def test_a_folder_that_appears_during_the_export_is_never_replaced(ws):
    """Finding 4: `export -o ex3` checked ex3 only at the start; a folder made meanwhile (thesis.txt in it) was
    deleted at the swap. The folder is made just before the swap (wrapping the export's last step)."""
    before = "\n".join([
        "import runner.inference.export as e",
        "mark = e._mark",
        "def user_then_mark(folder, run):",
        "    Path('ex3').mkdir(); Path('ex3/thesis.txt').write_text('my thesis', encoding='utf-8')",
        "    mark(folder, run)",
        "e._mark = user_then_mark",
    ])
    manifest = (ws / "run" / "run.json").read_bytes()
    result = wrapped(ws, before, "export", "run", "-o", "ex3")
    refused(result, 1, "changed during the export", "thesis.txt", "the export was removed")
    assert sorted(p.name for p in (ws / "ex3").iterdir()) == ["thesis.txt"]
    assert (ws / "ex3" / "thesis.txt").read_text(encoding="utf-8") == "my thesis"
    assert not [p.name for p in ws.iterdir() if p.name.startswith(".ex3")]  # no temporary, old or lock left
    assert (ws / "run" / "run.json").read_bytes() == manifest


def test_a_second_export_to_the_same_folder_refuses(ws):
    """Finding 4: two exports (of two runs) to the same -o both succeeded, the last one's model under the first
    one's record. The first holds a lock beside the target; the second refuses with exit 1."""
    from runner.files import exclusive

    with exclusive(ws / ".shared.lock"):  # what a running export to -o shared holds
        refused(run_cli("export", "other", "-o", "shared", cwd=ws), 1, "another runner process")
    assert not (ws / "shared").exists() and not (ws / ".shared.lock").exists()


def test_run_json_records_the_export_folder_without_a_machine_path(ws):
    """Finding 5: export.dir was "/tmp/ws/ex3"."""
    record = json.loads((ws / "run" / "run.json").read_text(encoding="utf-8"))["export"]
    assert record["dir"]["outside"] is True and "/" not in record["dir"]["path"], record["dir"]
    assert str(ws) not in (ws / "run" / "run.json").read_text(encoding="utf-8")


def test_a_signal_during_the_export_says_error_and_hint_with_the_whole_command(ws):
    """Finding 6: SIGTERM during an export printed one plain line, and the command it suggested dropped `-o exps`
    (it would have exported into run/onnx). The signal is sent as the ONNX export starts."""
    before = "\n".join([
        "import runner.inference.export as e",
        "def stopped(*args, **kwargs):",
        "    os.kill(os.getpid(), signal.SIGTERM)",
        "e.export_onnx = stopped",
    ])
    result = wrapped(ws, before, "export", "run", "-o", "exps", "--min-agreement", "0.5")
    refused(result, 143, "export stopped by SIGTERM",
            "hint: run the same command again to export: runner export run -o exps --min-agreement 0.5")
    assert not (ws / "exps").exists() and not [p.name for p in ws.iterdir() if p.name.startswith(".exps")]


def test_a_signal_once_the_export_is_in_place_says_it_is_whole(ws):
    """A SIGTERM that landed after the export was put in place (the shielded step over, the locks being released)
    said "export stopped by SIGTERM; nothing was written" beside a whole export. The signal is sent as the export
    returns, which is where it lands."""
    before = "\n".join([
        "import runner.inference.export as e",
        "real = e._export",
        "def then_stopped(*args, **kwargs):",
        "    record = real(*args, **kwargs)",
        "    os.kill(os.getpid(), signal.SIGTERM)",
        "    return record",
        "e._export = then_stopped",
    ])
    result = wrapped(ws, before, "export", "run", "-o", "late")
    refused(result, 143, f"SIGTERM arrived as the export finished; it is whole in {(ws / 'late').resolve()}",
            "hint: nothing to run again")
    assert "nothing was written" not in result.stderr, result.stderr
    assert (ws / "late" / "model.onnx").is_file() and not [p.name for p in ws.iterdir() if p.name.startswith(".late")]


def test_docs_check_compares_bytes(ws, tmp_path):
    """Finding 8: `docs --check` said "up to date" for a CRLF copy that `docs --force` refuses."""
    out = tmp_path / "ref.md"
    assert run_cli("docs", "--output", str(out), cwd=ws).returncode == 0
    assert run_cli("docs", "--check", "--output", str(out), cwd=ws).returncode == 0
    out.write_bytes(out.read_bytes().replace(b"\n", b"\r\n"))
    before = hashes(out)
    refused(run_cli("docs", "--check", "--output", str(out), cwd=ws), 1, "out of date")
    refused(run_cli("docs", "--output", str(out), "--force", cwd=ws), 2, "edited since")
    assert hashes(out) == before


def test_only_the_newest_tracebacks_are_kept(ws, tmp_path):
    """Finding 9: every internal error left $TMPDIR/runner-traceback-XXXX.txt and nothing swept them."""
    from runner.files import TRACEBACKS_KEPT

    crash = "import runner.spec.schema as s\ndef broken():\n    raise ValueError('a bug')\ns.load_schema = broken"
    other = tmp_path / "runner-traceback-someone.txt.keep"  # not a traceback's name: never touched
    other.write_text("x", encoding="utf-8")
    for _ in range(TRACEBACKS_KEPT + 2):
        result = wrapped(ws, crash, "schema", env={"TMPDIR": str(tmp_path)})
        assert result.returncode == 1 and "internal error: ValueError: a bug" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    kept = sorted(p.name for p in tmp_path.glob("runner-traceback-*.txt"))
    assert len(kept) == TRACEBACKS_KEPT, kept
    newest = result.stderr.split("the traceback is in ", 1)[1].split(";", 1)[0]
    assert Path(newest).name in kept and "ValueError: a bug" in Path(newest).read_text(encoding="utf-8")
    assert other.is_file()
