"""Counts in the records print as plain digits (1250, not 1,250): the tables of report.md, the model card and
the pull-request comment stay machine-readable, and the sentences beside them say the same figure the same
way. Through a real run of the tiny model on more than a thousand rows, and `runner report`."""

from __future__ import annotations

import re

from conftest import labelled_rows, run_cli, tiny_spec_text, write_csv, write_spec

THOUSANDS = re.compile(r"\b\d{1,3}(,\d{3})+\b")  # 1,250 or 66,955,010


def test_counts_in_report_card_and_comment_are_plain_digits(tiny_model, tmp_path):
    write_csv(tmp_path / "data" / "train.csv", labelled_rows(per_label=625))  # 1250 rows: 1000 train, 250 validation
    write_csv(tmp_path / "data" / "test.csv", labelled_rows(per_label=600, seed=1))  # 1200 test rows
    text = tiny_spec_text(tiny_model).replace("  epochs: 1\n", "  epochs: 1\n  max_steps: 1\n").replace(
        "  train: data/train.csv\n", "  train: data/train.csv\n  test_file: data/test.csv\n")
    result = run_cli("run", str(write_spec(tmp_path, text)), cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = (tmp_path / "run" / "report.md").read_text(encoding="utf-8")
    assert "| train | 1000 |" in report and "| test | 1200 |" in report, report
    assert re.search(r"\| parameters \| \d{4,} trainable of \d{4,} ", report), report  # the tiny model's counts
    card = (tmp_path / "run" / "model" / "README.md").read_text(encoding="utf-8")
    comment = run_cli("report", "run", cwd=tmp_path)
    assert comment.returncode == 0, comment.stderr
    assert "Data: train 1000 rows · test 1200 rows · validation 250 rows" in comment.stdout
    assert re.search(r"\| neg \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \| 600 \|", comment.stdout)  # the test support
    for name, published in (("report.md", report), ("model card", card), ("comment", comment.stdout)):
        assert not THOUSANDS.search(published), (name, THOUSANDS.search(published).group())
