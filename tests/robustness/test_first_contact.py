"""First contact: what a new user meets first, on real files nobody here wrote.

Trackers a spec asks for are checked by `validate` before any data is read; `runner init` detects a
file's encoding and line endings and quotes every name it writes; encoding errors give the real
byte; UTF-8 with a byte-order mark is read in every format; label variants are reported and
non-string labels refused; JSON nesting is a clean error; a crash while validating one spec does not
skip the next."""

from __future__ import annotations

import json

import pytest
import yaml
from click.testing import CliRunner
from conftest import labelled_rows, run_cli, tiny_spec_text, write_csv, write_spec

from runner.data.labels import encode_single_labels
from runner.data.prepare import read_table
from runner.errors import DataError, SpecError
from runner.spec.document import load_spec


def _spec(tmp_path, extra: str = "", train: str = "data/train.csv") -> object:
    text = f"version: 1\ndata:\n  train: {train}\nmodel:\n  name: some-model\n{extra}"
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------
# 1. Trackers: a dependency, or refused by validate with the pip line


def test_tracker_that_is_not_installed_is_refused_by_validate(tmp_path, tiny_data, monkeypatch):
    """Before: validate said ok, and the run died in the Trainer after loading everything."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in ("wandb", "mlflow") else real(name, *a)
    )
    read = []
    monkeypatch.setattr("runner.data.prepare.read_table", lambda *a, **k: read.append(a))
    with pytest.raises(SpecError) as caught:
        load_spec(_spec(tmp_path, "train:\n  report_to: [tensorboard, wandb]\n"))
    lines = caught.value.lines()
    assert (
        lines[0]
        == "error: "
        + str(tmp_path / "spec.yaml")
        + ":7:28 train.report_to[1]: train.report_to asks for wandb, which is not installed"
    )
    assert lines[1].startswith("hint: pip install wandb")
    assert not read  # before any data is read


def test_tensorboard_is_a_dependency_so_autotrain_defaults_validate():
    pyproject = (__import__("conftest").ROOT / "pyproject.toml").read_text(encoding="utf-8")
    dependencies = pyproject.split("dependencies = [", 1)[1].split("]", 1)[0]
    assert '"tensorboard' in dependencies and '"charset-normalizer' in dependencies


def test_autotrain_example_with_log_tensorboard_validates():
    from conftest import ROOT

    text = (ROOT / "examples" / "autotrain" / "config.yml").read_text(encoding="utf-8")
    assert "log: tensorboard" in text
    spec = load_spec(ROOT / "examples" / "autotrain" / "config.yml")
    assert spec["train"]["report_to"] == ["tensorboard"]


# ---------------------------------------------------------------------------------------------
# 2. runner init: encoding, line endings, quoting


def _cp1252_csv(path):
    rows = ["text,label"] + [f"row number {i} is plain ascii text,{'pos' if i % 2 else 'neg'}" for i in range(80)]
    body = (
        "\r\n".join(rows[:60])
        + "\r\nthe café was lovely and the crème brûlée – superb,pos\r\n"
        + "\r\n".join(rows[60:])
        + "\r\n"
    )
    path.write_bytes(body.encode("cp1252"))
    return path, body.encode("cp1252").index("é".encode("cp1252"))


def test_init_detects_encoding_and_line_endings_and_the_spec_validates(tmp_path):
    """Before: 'set data.encoding' with no spec to set it in, and no --encoding option."""
    data, _ = _cp1252_csv(tmp_path / "shop reviews (2024).csv")
    result = run_cli("init", data.name, "-o", "spec.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "spec.yaml").read_text(encoding="utf-8")
    assert 'encoding: "cp1252"  # detected (charset-normalizer); line endings: CRLF (Windows)' in text
    assert yaml.safe_load(text)["name"] == "shop-reviews-2024"
    check = run_cli("validate", "spec.yaml", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    spec = load_spec(tmp_path / "spec.yaml")
    from runner.data.prepare import prepare_data

    prepared = prepare_data(spec.data, spec.task, spec.labels, spec.seed, spec.resolve)
    assert "the café was lovely and the crème brûlée – superb" in set(prepared.splits["train"]["text"]) | set(
        prepared.splits["validation"]["text"]
    )


def test_init_accepts_encoding(tmp_path):
    data = tmp_path / "latin.csv"
    data.write_bytes(
        ("text,label\n" + "\n".join(f"é{i} très bien,{'a' if i % 2 else 'b'}" for i in range(30)) + "\n").encode(
            "latin-1"
        )
    )
    result = run_cli("init", "latin.csv", "--encoding", "latin-1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert 'encoding: "latin-1"  # given to runner init --encoding' in result.stdout


@pytest.mark.parametrize(
    "columns", [("a: b", "#tag"), ("yes", "no"), ("text", "null"), ("[x]", "{y}"), ("it's", 'say "hi"'), ("1", "2.5")]
)
def test_init_quotes_every_name_so_the_spec_validates(tmp_path, columns):
    """Before: a column called `a: b` gave 'YAML syntax error: mapping values are not allowed here'."""
    text_column, label_column = columns
    write_csv(
        tmp_path / "my data!.csv",
        [{text_column: f"a longer text number {i} here", label_column: f"c{i % 2}"} for i in range(20)],
    )
    result = run_cli("init", "my data!.csv", "-o", "spec.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    values = yaml.safe_load((tmp_path / "spec.yaml").read_text(encoding="utf-8"))
    assert (values["data"]["text_column"], values["data"]["label_column"]) == (text_column, label_column)
    assert values["data"]["train"] == "my data!.csv"
    check = run_cli("validate", "spec.yaml", cwd=tmp_path)
    assert check.returncode == 0, check.stderr


def test_encoding_error_gives_the_real_byte_and_line(tmp_path):
    """Before: 'byte 7' (an offset inside pandas' buffer) for a first bad byte far into the file."""
    data, offset = _cp1252_csv(tmp_path / "data.csv")
    with pytest.raises(DataError) as caught:
        read_table(data)
    assert f"byte {offset} cannot be decoded" in caught.value.message
    assert caught.value.where == f"{data}:61"  # the header is line 1


# ---------------------------------------------------------------------------------------------
# 6. Label hygiene


def test_label_variants_in_case_or_spaces_are_reported_with_counts(tmp_path, capsys):
    path = tmp_path / "d.jsonl"
    labels = ["pos"] * 5 + ["Pos"] * 2 + [" pos"] + ["neg"] * 4
    path.write_text(
        "".join(json.dumps({"text": f"t{i}", "label": label}) + "\n" for i, label in enumerate(labels)),
        encoding="utf-8",
    )
    _, names = encode_single_labels(read_table(path), "label", None, str(path), str(path))
    out = capsys.readouterr().err
    assert "warning: labels that differ only in case or surrounding spaces" in out
    assert "' pos' (1 rows), 'Pos' (2 rows), 'pos' (5 rows)" in out
    assert names == ["Pos", "neg", "pos"]


@pytest.mark.parametrize("bad, kind", [(["pos"], "an array"), ({"x": 1}, "an object"), (True, "true or false")])
def test_non_string_labels_are_data_errors(tmp_path, bad, kind):
    """Before: stringified silently into classes like "['pos']" or "True"."""
    path = tmp_path / "d.jsonl"
    rows = [{"text": "a", "label": "neg"}, {"text": "b", "label": bad}, {"text": "c", "label": "pos"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DataError) as caught:
        encode_single_labels(read_table(path), "label", None, str(path), str(path))
    assert f"a label that is {kind}, not a class name (first: row 2)" in caught.value.message
    assert caught.value.where == f"{path}:2"


# ---------------------------------------------------------------------------------------------
# JSON data files and validate A B


@pytest.mark.parametrize("suffix", ["jsonl", "json"])
def test_deeply_nested_json_is_a_data_error_with_its_line(tmp_path, suffix):
    deep = "[" * 100_000 + "]" * 100_000
    path = tmp_path / f"deep.{suffix}"
    if suffix == "jsonl":
        path.write_text('{"text": "a", "label": "x"}\n{"text": ' + deep + ', "label": "y"}\n', encoding="utf-8")
    else:
        path.write_text('[{"text": "a", "label": "x"},\n{"text": ' + deep + ', "label": "y"}]', encoding="utf-8")
    with pytest.raises(DataError) as caught:
        read_table(path)
    assert caught.value.where == f"{path}:2"
    result = run_cli("init", path.name, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "internal error" not in result.stderr


@pytest.mark.parametrize("suffix", ["jsonl", "json", "csv"])
def test_utf8_with_a_byte_order_mark_trains_in_every_format(tmp_path, tiny_model, monkeypatch, suffix):
    """Before: a CSV with a BOM (Excel, Notepad) was read, a JSONL or JSON file with one refused ("Unexpected
    UTF-8 BOM"). The JSON file's labels are class ids (numbers), which a label column keeps taking."""
    from runner.cli import main

    rows = labelled_rows()
    if suffix == "json":
        rows = [{"text": row["text"], "label": int(row["label"] == "pos")} for row in rows]
        body = json.dumps(rows)
    elif suffix == "jsonl":
        body = "".join(json.dumps(row) + "\n" for row in rows)
    else:
        body = "text,label\n" + "".join(f"{row['text']},{row['label']}\n" for row in rows)
    data = tmp_path / "data" / f"train.{suffix}"
    data.parent.mkdir()
    data.write_bytes(b"\xef\xbb\xbf" + body.encode("utf-8"))
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model, train=f"data/train.{suffix}"))
    before = data.read_bytes(), spec.read_bytes()
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(main, ["run", "spec.yaml"])

    assert result.exit_code == 0, result.output + str(result.exception)
    summary = json.loads((tmp_path / "run" / "run.json").read_text())["results"]["data_summary"]
    assert sum(summary["rows"].values()) == len(rows)
    assert (data.read_bytes(), spec.read_bytes()) == before


def test_a_crash_on_one_spec_does_not_skip_the_next(tmp_path, tiny_data, monkeypatch):
    import runner.spec.document
    from runner.cli import main

    good = _spec(tmp_path)
    crashing = tmp_path / "crash.yaml"
    crashing.write_text("version: 1\n", encoding="utf-8")
    real = runner.spec.document.load_spec

    def load(path, *args, **kwargs):
        if str(path).endswith("crash.yaml"):
            raise RuntimeError("a bug")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(runner.spec.document, "load_spec", load)
    result = CliRunner().invoke(main, ["validate", str(crashing), str(good)])
    assert result.exit_code == 1
    assert f"ok: {good}" in result.output
    assert f"error: {crashing}: internal error: RuntimeError: a bug" in result.output
