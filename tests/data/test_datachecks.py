"""The data checks of a run (runner.data.datachecks): a test file that holds one class of two is said before the
figures it gives are read (its macro averages count the missing class as 0, ROC AUC is not computed), in the
console and in run.json's data checks; a test file with every class is not."""

from __future__ import annotations

import json
import random

from conftest import make_texts, run_cli, tiny_spec_text, write_csv, write_spec


def test_a_test_split_without_a_class_is_warned(tiny_model, tmp_path):
    rng = random.Random(4)
    write_csv(tmp_path / "data" / "train.csv", [{"text": t, "label": label} for label in ("pos", "neg")
                                                for t in make_texts(label, 30, rng)])
    write_csv(tmp_path / "data" / "test.csv", [{"text": t, "label": "pos"} for t in make_texts("pos", 12, rng)])
    text = tiny_spec_text(tiny_model).replace("  train: data/train.csv\n",
                                              "  train: data/train.csv\n  test_file: data/test.csv\n")
    write_spec(tmp_path, text)
    result = run_cli("run", "spec.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    said = ("warning: the test split has no row of 'neg' (1 of 2 classes present): its per-class figures there are "
            "0, macro averages on test count it as 0, and ROC AUC is not computed; give test rows of every class")
    assert said in result.stderr, result.stderr[-2000:]
    checks = json.loads((tmp_path / "run" / "run.json").read_text())["results"]["data_checks"]
    assert said.removeprefix("warning: ") in checks["warnings"]
    assert not any("validation split has no row" in line for line in checks["warnings"])  # validation has both
