"""The model card's metadata of a real run (runner.record.card), as the Hub reads it: each split's results under
its own file and that file's type (a test.jsonl is json, though the training file is a CSV), and a spec's
hub.license given as a link (the Hub takes only ids in `license`) written as `license: other` with the link."""

from __future__ import annotations

import json

from conftest import labelled_rows, run_cli, tiny_spec_text, write_csv, write_spec


def test_each_split_is_filed_under_its_own_file_and_type_and_a_license_link_is_other(tiny_model, tmp_path):
    from huggingface_hub import ModelCard

    write_csv(tmp_path / "data" / "train.csv", labelled_rows(per_label=20))
    with open(tmp_path / "data" / "test.jsonl", "w", encoding="utf-8") as stream:
        stream.writelines(json.dumps(row) + "\n" for row in labelled_rows(per_label=10, seed=1))
    text = tiny_spec_text(tiny_model, extra="hub:\n  license: https://example.com/licenses/our-license.txt\n")
    write_spec(tmp_path, text.replace("  train: data/train.csv\n", "  train: data/train.csv\n"
                                                                   "  test_file: data/test.jsonl\n"))
    result = run_cli("run", "spec.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    data = ModelCard.load(tmp_path / "run" / "model" / "README.md").data
    filed = {(r.dataset_split, r.dataset_name, r.dataset_type) for r in data.eval_results}
    assert filed == {("validation", "train.csv", "csv"), ("test", "test.jsonl", "json")}, filed
    assert data.license == "other" and data.license_link == "https://example.com/licenses/our-license.txt"
