"""`best-spec.yaml` is a minimal edit of the user's spec: only the searched keys change (3
significant figures), comments stay, `search` goes, output.dir is its own, and `runner validate`
passes on it where it is written (the run folder)."""

from __future__ import annotations

import difflib

import pytest
from click.testing import CliRunner
from conftest import labelled_rows, write_csv

from runner.cli import main
from runner.flows.bestspec import SPEC_PATHS, best_spec_text, rounded, scalar
from runner.record.flows import search_caveat
from runner.spec.document import load_spec

SPEC = """# yaml-language-server: $schema=schemas/spec-v1.schema.json
# My sentiment model: keep these notes.
version: 1
name: tiny
seed: 7
data:
  train: data/train.csv   # the labelled rows
model:
  name: {model}
  max_length: 32
train:
  # a comment inside train
  epochs: 1
  learning_rate: 0.003  # tried by hand first
  batch_size: 8
  early_stopping_patience: null
search:
  trials: 3
  # the space
  space:
    learning_rate: {{low: 0.001, high: 0.01, log: true}}
    weight_decay: {{choices: [0.0, 0.05]}}

output:
  dir: runs/search   # where the search run goes
"""
RECORD = {
    "metric": "f1_macro",
    "direction": "maximize",
    "space": {"learning_rate": {}, "weight_decay": {}, "batch_size": {}},
    "trials": [
        {"number": 0, "state": "complete", "value": 0.61},
        {"number": 1, "state": "complete", "value": 0.74},
        {"number": 2, "state": "pruned", "value": None},
    ],
    "best": {"number": 1, "value": 0.74, "params": {}},
}
PARAMS = {"learning_rate": 0.0005399484409787432, "weight_decay": 0.05, "batch_size": 16}


def written(tmp_path, tiny_model, text=SPEC, params=PARAMS):
    (tmp_path / "schemas").mkdir(exist_ok=True)
    write_csv(tmp_path / "data" / "train.csv", labelled_rows())
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(text.format(model=tiny_model), encoding="utf-8")
    spec = load_spec(spec_path)
    destination = spec.output_dir / "best-spec.yaml"
    destination.parent.mkdir(parents=True)
    best = best_spec_text(spec, params, RECORD | {"best": {**RECORD["best"], "params": params}}, destination)
    destination.write_text(best, encoding="utf-8")
    return spec, destination, best


def test_only_the_searched_keys_and_the_paths_change_and_comments_stay(tiny_model, tmp_path):
    spec, destination, best = written(tmp_path, tiny_model)
    original = spec.text.splitlines()
    lines = [x for x in best.splitlines() if not x.startswith("# best-spec.yaml") and "Only the searched" not in x]
    diff = list(difflib.unified_diff(original, lines, lineterm="", n=0))
    removed = [x[1:] for x in diff if x[:1] == "-" and x[:3] != "---"]
    added = [x[1:] for x in diff if x[:1] == "+" and x[:3] != "+++"]
    assert removed == [
        "# yaml-language-server: $schema=schemas/spec-v1.schema.json",
        "  train: data/train.csv   # the labelled rows",
        "  learning_rate: 0.003  # tried by hand first",
        "  batch_size: 8",
        "search:",
        "  trials: 3",
        "  # the space",
        "  space:",
        "    learning_rate: {low: 0.001, high: 0.01, log: true}",
        "    weight_decay: {choices: [0.0, 0.05]}",
        "  dir: runs/search   # where the search run goes",
    ]
    assert added == [
        "# yaml-language-server: $schema=../../schemas/spec-v1.schema.json",
        '  train: "../../data/train.csv"   # the labelled rows',
        "  weight_decay: 0.05",
        "  learning_rate: 0.00054  # tried by hand first",
        "  batch_size: 16",
        '  dir: "../search-best"   # where the search run goes',
    ]
    assert "# My sentiment model: keep these notes." in best and "  # a comment inside train" in best


def test_the_file_validates_where_it_is_written_and_runs_elsewhere(tiny_model, tmp_path):
    _, destination, _ = written(tmp_path, tiny_model)
    result = CliRunner().invoke(main, ["validate", str(destination)])
    assert result.exit_code == 0, result.output
    best = load_spec(destination)
    assert best["search"] is None
    assert best["train"]["learning_rate"] == 0.00054 and best["train"]["batch_size"] == 16
    assert best.output_dir.resolve() == (tmp_path / "runs" / "search-best").resolve()
    assert best.resolve(best["data"]["train"]).resolve() == (tmp_path / "data" / "train.csv").resolve()


def test_flow_style_sections_and_missing_sections(tiny_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # without output.dir the search run goes to runs/<name> in the working folder
    text = SPEC.replace(
        "train:\n  # a comment inside train\n  epochs: 1\n  learning_rate: 0.003  # tried by hand first\n"
        "  batch_size: 8\n  early_stopping_patience: null\n",
        "train: {{epochs: 1, learning_rate: 3.0e-3, early_stopping_patience: null}}\n",
    ).replace("output:\n  dir: runs/search   # where the search run goes\n", "")
    spec, destination, best = written(tmp_path, tiny_model, text)
    assert "train: {batch_size: 16, weight_decay: 0.05, epochs: 1, learning_rate: 0.00054, " in best
    assert best.rstrip().endswith('output:\n  dir: "../tiny-best"'), best
    assert load_spec(destination).output_dir.resolve() == (tmp_path / "runs" / "tiny-best").resolve()
    result = CliRunner().invoke(main, ["validate", str(destination)])
    assert result.exit_code == 0, result.output


def test_three_significant_figures_in_yaml_both_readers_read_as_numbers():
    import yaml

    assert rounded({"learning_rate": 0.0005399484409787432, "epochs": 3}) == {"learning_rate": 0.00054, "epochs": 3}
    for value in (0.00054, 5.4e-05, 2e-05, 0.1, 0.0, 123.0, 1e-6):
        text = scalar(value)
        assert yaml.safe_load(text) == value, (value, text)  # PyYAML (YAML 1.1) reads it as a float
    from runner.flows.search import PLACES

    assert SPEC_PATHS == {key: place for key, (place, _) in PLACES.items()}


def test_the_report_warns_when_trials_are_few_for_the_rows():
    few = search_caveat(RECORD, 96)
    assert few and "2 complete trial(s) for 3 searched key(s)" in few
    close = RECORD | {"trials": [{"state": "complete", "value": 0.70 + i / 1000} for i in range(12)]}
    assert "less than the sampling noise" in search_caveat(close, 96)
    apart = RECORD | {"trials": [{"state": "complete", "value": 0.5 + i / 10} for i in range(12)]}
    assert search_caveat(apart, 400) is None


@pytest.mark.parametrize("value", ["data/my data, v2.csv", "data/#1.csv"])
def test_odd_file_names_survive_the_edit(tiny_model, tmp_path, value):
    write_csv(tmp_path / value, labelled_rows())
    text = SPEC.replace("  train: data/train.csv   # the labelled rows", f'  train: "{value}"   # the labelled rows')
    _, destination, _ = written(tmp_path, tiny_model, text)
    assert load_spec(destination)["data"]["train"] == f"../../{value}"
