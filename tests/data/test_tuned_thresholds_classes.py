"""predict.tune_thresholds on a single-label task with three classes. `runner validate` reads no data (it
checks that the data files exist), so it can refuse this only when the spec lists its `labels:`; without
them `runner run` refuses it as soon as the data is read: before the model is downloaded or loaded, before
the run folder is made, at the setting's place in the spec."""

from __future__ import annotations

from conftest import labelled_rows, run_cli, write_csv, write_spec

SPEC = """version: 1
name: three
data:
  train: data/train.csv
model:
  name: no-such-org/no-such-model-for-runner-tests
predict:
  tune_thresholds: true
output:
  dir: run
"""
PLACE = "spec.yaml:8:20 predict.tune_thresholds"  # the value `true` of tune_thresholds


def test_run_refuses_tuned_thresholds_on_three_classes_before_the_model_loads(tmp_path):
    write_csv(tmp_path / "data" / "train.csv", labelled_rows(labels=("pos", "neg", "neu"), per_label=15))
    write_spec(tmp_path, SPEC)
    # offline with a model that exists nowhere: any attempt to fetch or load it would be the error instead
    result = run_cli("run", "spec.yaml", cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-2] == (f"error: {PLACE}: predict.tune_thresholds is for multi-label or two classes; "
                         "the data has 3 classes")
    assert lines[-1].startswith("hint: remove predict.tune_thresholds")
    assert "no-such-model" not in result.stdout + result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_validate_refuses_it_when_the_spec_lists_its_labels(tmp_path):
    write_csv(tmp_path / "data" / "train.csv", labelled_rows(labels=("pos", "neg", "neu"), per_label=2))
    write_spec(tmp_path, SPEC + "labels: [pos, neg, neu]\n")
    result = run_cli("validate", "spec.yaml", cwd=tmp_path)
    assert result.returncode == 2, result.stdout
    assert result.stderr.startswith(f"error: {PLACE}: thresholds are tuned for multi-label or two classes; "
                                    "`labels:` has 3"), result.stderr
    two = write_spec(tmp_path, SPEC + "labels: [pos, neg]\n", "two.yaml")
    assert run_cli("validate", str(two), cwd=tmp_path).returncode == 0  # two classes: tuned thresholds are fine
