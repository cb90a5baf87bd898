"""The hint of a schema problem (runner.spec.schema.hint) inside a mapping of free keys: predict.class_prior's
classes are no keys of the schema, and a share out of range got "see spec/reference.md"; it gets the share's own
description (above 0 and at most 1), at the share's line and column."""

from __future__ import annotations

from conftest import run_cli, tiny_spec_text, write_csv, write_spec


def test_a_class_share_out_of_range_says_what_a_share_is(tmp_path):
    write_csv(tmp_path / "data" / "train.csv", [{"text": "a b", "label": "pos"}, {"text": "c d", "label": "neg"}])
    spec = write_spec(tmp_path, tiny_spec_text(tmp_path, extra="predict:\n  class_prior: {pos: 30, neg: 70}\n"))
    line = len(spec.read_text().splitlines())
    result = run_cli("validate", "spec.yaml", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    share = "hint: A class's share of the rows you will predict on, above 0 and at most 1"
    for column, name, value in ((22, "pos", 30), (31, "neg", 70)):
        assert (f"error: spec.yaml:{line}:{column} predict.class_prior.{name}: {value} is out of range: must be <= 1\n"
                f"{share}") in result.stderr, result.stderr
    assert "see spec/reference.md" not in result.stderr and "Traceback" not in result.stderr
