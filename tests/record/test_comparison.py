"""`runner report --compare` reads two run folders (runner.record.comparison): predictions files written or edited
on another system (a byte order mark, CRLF line ends, U+2028 and U+0085 inside texts) pair as they are, and runs
with different label sets are said to be so, by their labels, and fail a max_drop gate instead of passing it on
figures that average other classes."""

from __future__ import annotations

import json

from conftest import run_cli

LINE_LIKE = ("\u2028", "\u0085", "\u2029", "\u000c")


def fake_run(folder, labels, truth, predicted, gate=None, name="tiny", spec_file="specs/tiny.yaml"):
    """A finished run folder as runner writes one: validation predictions, metrics, spec and run.json."""
    (folder / "predictions").mkdir(parents=True)
    lines = []
    for row, (t, p) in enumerate(zip(truth, predicted), 2):
        probabilities = {label: (0.9 if label == p else 0.1 / (len(labels) - 1)) for label in labels}
        text = f"text{LINE_LIKE[row % len(LINE_LIKE)]}{row}"  # each text holds a character splitlines() splits at
        lines.append({"row": row, "text": text, "true_label": t, "label": p, "probabilities": probabilities})
    (folder / "predictions" / "validation.jsonl").write_text(
        "".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), encoding="utf-8")
    f1 = sum(t == p for t, p in zip(truth, predicted)) / len(truth)
    (folder / "metrics.json").write_text(json.dumps({"validation": {"f1_macro": f1},
                                                     "headline": {"split": "validation", "name": "f1_macro",
                                                                  "value": f1}}))
    spec = {"version": 1, "name": name, "task": "single_label_classification", "gate": gate}
    (folder / "spec.yaml").write_text(json.dumps(spec))
    (folder / "run.json").write_text(json.dumps({"status": "finished", "name": name, "spec_file": spec_file,
                                                 "spec": spec, "results": {"labels": labels, "task": spec["task"]}}))
    return folder


TRUTH = ["neg", "pos"] * 30


def test_predictions_with_a_byte_order_mark_crlf_and_line_like_characters_are_paired(tmp_path):
    base = fake_run(tmp_path / "base", ["neg", "pos"], TRUTH, TRUTH)
    new = fake_run(tmp_path / "new", ["neg", "pos"], TRUTH, ["neg"] * 60, gate={"max_drop": 0.0})
    written = base / "predictions" / "validation.jsonl"
    edited = "\ufeff" + written.read_text(encoding="utf-8").replace("\n", "\r\n")  # saved by an editor on Windows
    written.write_bytes(edited.encode("utf-8"))
    result = run_cli("report", str(new), "--compare", str(base), "--format", "json")
    summary = json.loads(result.stdout)
    assert summary["comparison"]["paired"] is True, summary["comparison"]
    assert summary["comparison"]["rows"] == 60 and summary["comparison"]["delta"] < 0
    assert summary["gate"]["passed"] is False and result.returncode == 1
    assert "95% paired bootstrap interval" in summary["gate"]["reasons"][0]


def test_runs_with_different_labels_are_named_and_a_max_drop_gate_fails(tmp_path):
    base = fake_run(tmp_path / "base", ["neg", "pos"], TRUTH, TRUTH)
    three = ["neg", "neu", "pos"] * 20
    new = fake_run(tmp_path / "new", ["neg", "neu", "pos"], three, three, gate={"max_drop": 0.0})
    result = run_cli("report", str(new), "--compare", str(base))
    assert result.returncode == 1, result.stdout
    said = "the runs have different labels (new run: neg, neu, pos; baseline: neg, pos)"
    assert f"no difference called, because {said}" in result.stdout  # not "different rows"
    assert f"error: gate: gate.max_drop cannot be checked: {said}" in result.stderr
    assert "Quality gate: passed" not in result.stdout and "Traceback" not in result.stderr
    # renamed labels (pos -> positive) are other labels too, even on the same rows with the same figures
    renamed = fake_run(tmp_path / "renamed", ["negative", "positive"], [{"neg": "negative", "pos": "positive"}[t]
                                                                        for t in TRUTH],
                       [{"neg": "negative", "pos": "positive"}[t] for t in TRUTH], gate={"max_drop": 0.0})
    result = run_cli("report", str(renamed), "--compare", str(base), "--format", "json")
    summary = json.loads(result.stdout)
    assert summary["comparison"]["labels_differ"] is True and summary["gate"]["passed"] is False
    # the same labels: paired, and the gate passes on equal figures
    same = fake_run(tmp_path / "same", ["neg", "pos"], TRUTH, TRUTH, gate={"max_drop": 0.0})
    result = run_cli("report", str(same), "--compare", str(base), "--format", "json")
    assert result.returncode == 0 and json.loads(result.stdout)["comparison"]["paired"] is True


def test_a_baseline_of_another_spec_file_with_the_same_name_is_told_apart_by_its_file(tmp_path):
    """Two spec files may carry one name (`name: tiny`): the warning names both files, not "tiny, not tiny's"."""
    base = fake_run(tmp_path / "base", ["neg", "pos"], TRUTH, TRUTH, spec_file="specs/tiny.yaml")
    new = fake_run(tmp_path / "new", ["neg", "pos"], TRUTH, TRUTH, spec_file="specs/tiny-copy.yaml")
    result = run_cli("report", str(new), "--compare", str(base))
    assert result.returncode == 0, result.stderr
    assert ("warning: the baseline is another spec's run (tiny, from specs/tiny.yaml), not this spec's (tiny, from "
            "specs/tiny-copy.yaml)") in result.stderr
    assert ("**The baseline is another spec's run** (tiny, from specs/tiny.yaml), not this spec's (tiny, from "
            "specs/tiny-copy.yaml)") in result.stdout
