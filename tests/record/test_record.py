"""The run record: report and pictures, model card, manifest, summary, and reproduce's refusal."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner
from huggingface_hub import ModelCard

from runner import record
from runner.cli import main
from runner.errors import DataError
from runner.files import atomic_write_json, sha256_file
from runner.flows import reproduce as reproduction
from runner.record import card
from runner.record import manifest as manifest_file
from runner.record import summary as pr_summary
from runner.record.paths import recorded_path, recorded_spec_file
from runner.record.result import RunResult
from runner.record.rundir import RunDir, portable
from runner.spec.document import load_spec_text

LABELS = ["anger", "fear", "joy"]
TOKEN = "hf_" + "A1b2C3d4" * 5

SPEC = """\
version: 1
name: emotions-tiny
data:
  train: data/train.csv
  test_file: data/test.csv
labels: [anger, fear, joy]
model:
  name: sentence-transformers/all-MiniLM-L6-v2
  max_length: 64
train:
  epochs: 2
hub:
  repo_id: acme/emotions-tiny
  license: apache-2.0
"""


def make_spec(folder, text=SPEC, overrides=()):
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    rows = ["text,label"] + [f"sample text number {i},{LABELS[i % 3]}" for i in range(30)]
    (data / "train.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (data / "test.csv").write_text("\n".join(rows[:10]) + "\n", encoding="utf-8")
    spec_path = folder / "spec.yaml"
    spec_path.write_text(text, encoding="utf-8")
    return load_spec_text(text, spec_path, overrides)


def make_result(folder, **changes) -> dict:
    validation = {
        "accuracy": 0.8333,
        "f1_macro": 0.8312,
        "f1_weighted": 0.8320,
        "precision_macro": 0.84,
        "recall_macro": 0.8333,
        "loss": 0.4711,
        "runtime": 1.93,
        "samples_per_second": 93.2,
    }
    test = {
        "accuracy": 0.8,
        "f1_macro": 0.79,
        "f1_weighted": 0.795,
        "precision_macro": 0.81,
        "recall_macro": 0.8,
        "loss": 0.52,
    }
    per_class = {
        label: {"precision": 0.8 + i / 50, "recall": 0.85 - i / 40, "f1": 0.82, "support": 2 + i}
        for i, label in enumerate(LABELS)
    }
    log_history = []
    for step in range(5, 61, 5):
        log_history.append(
            {
                "loss": 1.1 * 0.97**step + 0.05,
                "grad_norm": 3.2,
                "learning_rate": 5e-5 * (1 - step / 60),
                "epoch": step / 30,
                "step": step,
            }
        )
        if step % 30 == 0:
            log_history.append(
                {
                    "eval_loss": 0.9 - step / 150,
                    "eval_f1_macro": 0.6 + step / 250,
                    "eval_accuracy": 0.62 + step / 250,
                    "eval_runtime": 1.9,
                    "epoch": step / 30,
                    "step": step,
                }
            )
    log_history.append(
        {"train_runtime": 61.2, "train_samples_per_second": 39.2, "train_loss": 0.61, "epoch": 2.0, "step": 60}
    )
    result = {
        "status": "finished",
        "task": "single_label_classification",
        "labels": LABELS,
        "metrics": {
            "validation": validation,
            "test": test,
            "headline": {"split": "validation", "name": "f1_macro", "value": 0.8312},
        },
        "per_class": {"validation": per_class, "test": per_class},
        "confusion_matrix": {
            "validation": [[8, 1, 1], [2, 7, 1], [0, 1, 9]],
            "test": [[3, 0, 1], [1, 2, 0], [0, 0, 3]],
        },
        "data_summary": {
            "rows": {"train": 24, "validation": 6, "test": 10},
            "label_distribution": {
                "train": {"anger": 8, "fear": 8, "joy": 8},
                "validation": {"anger": 2, "fear": 2, "joy": 2},
            },
            "token_lengths": {"p50": 7, "p90": 9, "p95": 9, "p99": 10, "max": 11},
            "truncated": {"rows": 1, "fraction": 1 / 24, "max_length": 64},
            "dropped": [{"reason": "empty text", "rows": 2, "split": "train"}],
            "split_note": "stratified 80/20 split, seed 42",
        },
        "log_history": log_history,
        "timing": {
            "train_seconds": 61.2,
            "train_samples_per_second": 39.2,
            "total_seconds": 75.0,
            "started_at": "2025-11-25T10:00:00+00:00",
            "finished_at": "2025-11-25T10:01:15+00:00",
        },
        "model": {
            "name": "sentence-transformers/all-MiniLM-L6-v2",
            "source": "hub",
            "revision": "c9745ed1d9f207416be6d2e6f8de32d1f16199bf",
            "weight_files": {"model.safetensors": "ab" * 32},
            "kind": "full",
            "trainable_params": 22_714_371,
            "total_params": 22_714_371,
            "architecture": "BertForSequenceClassification",
        },
        "device": "cpu",
        "precision": "fp32",
        "data_files": {"train": str(folder / "data" / "train.csv"), "test": str(folder / "data" / "test.csv")},
        "argv": ["runner", "run", "spec.yaml", "--set", f"note={TOKEN}"],
    }
    result.update(changes)
    return result


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A run folder with a full record, written once for the tests that only read it."""
    folder = tmp_path_factory.mktemp("project")
    spec = make_spec(folder)
    result = make_result(folder)
    run_dir = folder / "runs" / "emotions-tiny"
    (run_dir / "model").mkdir(parents=True)
    atomic_write_json(run_dir / "metrics.json", result["metrics"])
    record.write_run_record(RunDir(run_dir), spec, RunResult.from_dict(result))
    return run_dir, spec, result


def test_report_shows_metrics_data_and_pictures(recorded):
    run_dir, _, _ = recorded
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "# Run report: emotions-tiny" in report
    assert "| **f1_macro** | 0.8312 | 0.7900 |" in report
    assert "runtime" not in report.split("## Data")[0]  # throughput numbers are not model metrics
    assert "![Confusion matrix](confusion_matrix.png)" in report
    assert "![Training curves](training_curves.png)" in report
    assert "### Per class (validation)" in report and "| anger |" in report
    assert "stratified 80/20 split, seed 42" in report
    assert "| train | empty text | 2 |" in report
    assert "Truncated: 1 row was (4.2%) longer" in report
    assert "1 min 01 s (39.2 samples/s)" in report
    for name in ("confusion_matrix.png", "training_curves.png"):
        data = (run_dir / name).read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n")
        assert 10_000 < len(data) < 1_000_000


def test_model_card_metadata_parses_with_eval_results(recorded):
    run_dir, _, _ = recorded
    card = ModelCard.load(run_dir / "model" / "README.md")
    data = card.data
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "text-classification"
    assert data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert data.license == "apache-2.0"
    assert "runner" in data.tags and "lora" not in data.tags
    results = {(r.dataset_split, r.metric_type, r.metric_config): r.metric_value for r in data.eval_results}
    assert results[("validation", "accuracy", None)] == 0.8333
    assert results[("validation", "f1", "macro")] == 0.8312
    assert results[("test", "f1", "macro")] == 0.79
    assert all(r.task_type == "text-classification" and r.dataset_type == "csv" for r in data.eval_results)
    # each split under its own file: validation held out of train.csv, test results under test.csv
    assert {(r.dataset_split, r.dataset_name) for r in data.eval_results} == {("validation", "train.csv"),
                                                                               ("test", "test.csv")}
    assert not any("runtime" in (r.metric_name or "") for r in data.eval_results)
    assert 'pipeline("text-classification", model="acme/emotions-tiny")' in card.text
    assert "| 0 | anger |" in card.text and "```yaml" in card.text and "max_length: 64" in card.text
    assert str(run_dir.parent.parent) not in card.content  # no absolute local paths


def test_manifest_hashes_match_the_files_they_name(recorded):
    run_dir, spec, _ = recorded
    manifest = json.loads((run_dir / "run.json").read_text())
    # paths relative to the run folder (spec_dir), the spec's folder (data files): no path of this machine
    assert manifest["spec_file"] == "spec.yaml" and manifest["spec_dir"] == "../.."
    assert recorded_spec_file(run_dir, manifest) == spec.path.resolve()
    assert manifest["spec_sha256"] == sha256_file(spec.path) == spec.sha256
    assert manifest["spec"] == portable(spec.values) and manifest["spec"]["train"]["epochs"] == 2
    files = manifest["data"]["files"]
    assert set(files) == {"train", "test"}
    for entry in files.values():
        assert entry["relative_to"] == "spec" and not Path(entry["path"]).is_absolute()
        assert entry["sha256"] == sha256_file(recorded_path(entry, run_dir, manifest))
    assert manifest["model"]["revision"] == "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
    packages = manifest["environment"]["packages"]
    assert packages["torch"] and packages["transformers"] and packages["runner"]
    assert {"scikit-learn", "huggingface_hub", "peft", "numpy"} <= set(packages)
    assert manifest["environment"]["device"] == "cpu" and manifest["seed"] == 42
    assert manifest["status"] == "finished" and manifest["started_at"].startswith("2025-11-25")
    assert manifest["argv"][:3] == ["runner", "run", "spec.yaml"]


def test_no_token_anywhere_in_the_record(recorded):
    run_dir, _, _ = recorded
    for path in [run_dir / "run.json", run_dir / "report.md", run_dir / "model" / "README.md"]:
        assert TOKEN not in path.read_text(encoding="utf-8")
    assert "note=<redacted>" in json.loads((run_dir / "run.json").read_text())["argv"]


def test_manifest_keeps_hub_record_and_git_state(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    spec = make_spec(tmp_path)
    run_dir = tmp_path / "run"
    atomic_write_json(run_dir / "run.json", {"hub": {"repo_id": "acme/emotions-tiny", "commit": "123"}})
    assert manifest_file.git_state(tmp_path) is None
    git = [
        "git",
        "-C",
        str(tmp_path),
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "-c",
        "commit.gpgsign=false",
    ]
    subprocess.run(git + ["init", "-q"], check=True)
    subprocess.run(git + ["add", "spec.yaml", "data"], check=True)
    subprocess.run(git + ["commit", "-q", "-m", "spec"], check=True)
    manifest_file.write_manifest(RunDir(run_dir), spec, RunResult.from_dict(make_result(tmp_path)))
    manifest = json.loads((run_dir / "run.json").read_text())
    assert manifest["hub"] == {"repo_id": "acme/emotions-tiny", "commit": "123"}
    assert len(manifest["git"]["commit"]) == 40 and manifest["git"]["dirty"] is False
    (tmp_path / "data" / "train.csv").write_text("text,label\nchanged,joy\n")
    assert manifest_file.git_state(tmp_path)["dirty"] is True


def test_summary_shows_deltas_against_a_baseline(recorded, tmp_path):
    run_dir, _, result = recorded
    base = {
        "validation": {
            **result["metrics"]["validation"],
            "f1_macro": 0.8012,
            "accuracy": 0.85,
            "loss": 0.5711,
            "f1_weighted": 0.832001,
        },
        "headline": {"split": "validation", "name": "f1_macro", "value": 0.8012},
    }
    atomic_write_json(tmp_path / "base" / "metrics.json", base)
    text = pr_summary.summary_markdown(run_dir, tmp_path / "base")
    assert text.startswith("### runner: emotions-tiny · f1_macro 0.8312 (validation) ▲ +0.0300 (better)")
    assert "| **f1_macro** | 0.8312 | 0.8012 | ▲ +0.0300 (better) |" in text
    assert "| accuracy | 0.8333 | 0.8500 | ▼ -0.0167 (worse) |" in text
    assert "| loss | 0.4711 | 0.5711 | ▼ -0.1000 (better) |" in text
    assert "| recall_macro | 0.8333 | 0.8333 | = no change |" in text
    assert "| f1_weighted | 0.8320 | 0.8320 | ▼ -1.0e-06 (worse) |" in text
    assert "| accuracy | 0.8000 | – | – |" in text  # the baseline has no test split
    assert "Data: train 24 rows · validation 6 rows · test 10 rows" in text
    assert "<details><summary>Per-class metrics</summary>" in text and "| joy |" in text
    # a metrics.json path works as the baseline too
    # a metrics.json path works as the baseline too; either is named without a path of this machine
    assert f"Baseline: …/{tmp_path.name}/base. Lower is better" in text and str(tmp_path) not in text
    assert pr_summary.summary_markdown(run_dir, tmp_path / "base" / "metrics.json") == text.replace(
        f"…/{tmp_path.name}/base", "…/base/metrics.json"
    )


def test_summary_json_structure(recorded, tmp_path):
    run_dir, _, _ = recorded
    atomic_write_json(tmp_path / "metrics.json", {"validation": {"f1_macro": 0.9, "loss": 0.3}})
    summary = pr_summary.summary_json(run_dir, tmp_path / "metrics.json")
    assert json.loads(json.dumps(summary)) == summary
    assert summary["name"] == "emotions-tiny" and summary["status"] == "finished"
    assert summary["task"] == "single_label_classification"
    assert set(summary["metrics"]) == {"validation", "test"}
    assert "runtime" not in summary["metrics"]["validation"]
    f1 = summary["metrics"]["validation"]["f1_macro"]
    assert f1 == {
        "value": 0.8312,
        "base": 0.9,
        "delta": -0.0688,
        "change": "down",
        "better": False,
        "higher_is_better": True,
    }
    loss = summary["metrics"]["validation"]["loss"]
    assert loss["change"] == "up" and loss["better"] is False and loss["higher_is_better"] is False
    assert summary["headline"]["name"] == "f1_macro" and summary["headline"]["delta"] == -0.0688
    assert summary["data_rows"] == {"train": 24, "validation": 6, "test": 10}
    assert summary["per_class"]["validation"]["anger"]["support"] == 2
    assert summary["hub_url"] is None and summary["metrics"]["test"]["accuracy"]["base"] is None


def test_summary_links_the_hub_and_works_without_a_baseline(recorded, tmp_path):
    run_dir, _, _ = recorded
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    manifest = json.loads((copy / "run.json").read_text())
    atomic_write_json(copy / "run.json", {**manifest, "hub": {"repo_id": "acme/emotions-tiny"}})
    text = pr_summary.summary_markdown(copy)
    assert "Model on the Hub: <https://huggingface.co/acme/emotions-tiny>" in text  # a link: the runner wrote it
    assert "| **f1_macro** | 0.8312 |" in text and "baseline" not in text


@pytest.mark.parametrize(
    "write, message",
    [
        (None, "has no metrics.json"),
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"headline": {}}', "has no validation or test metrics"),
    ],
)
def test_summary_of_a_broken_run_folder_is_a_data_error(tmp_path, write, message):
    if write is not None:
        (tmp_path / "metrics.json").write_text(write)
    with pytest.raises(DataError, match=message) as caught:
        pr_summary.summary_markdown(tmp_path)
    assert caught.value.exit_code == 2 and caught.value.hint
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2 and message in result.output


def test_regression_and_lora_records(tmp_path):
    spec = make_spec(
        tmp_path,
        SPEC.replace("labels: [anger, fear, joy]\n", "task: regression\n").replace("repo_id: acme/emotions-tiny\n", "")
        + "lora:\n  r: 4\n",
    )
    result = make_result(
        tmp_path,
        task="regression",
        labels=[],
        per_class={},
        confusion_matrix={},
        metrics={
            "validation": {"mse": 0.31, "mae": 0.4, "r2": 0.7, "loss": 0.31},
            "headline": {"split": "validation", "name": "mse", "value": 0.31},
        },
        log_history=[
            {"loss": 1.0, "learning_rate": 5e-5, "epoch": 0.5, "step": 5},
            {"eval_loss": 0.31, "eval_mse": 0.31, "epoch": 1.0, "step": 10},
        ],
    )
    result["model"] = {**result["model"], "kind": "lora", "trainable_params": 80_000}
    run_dir = tmp_path / "run"
    (run_dir / "confusion_matrix.png").parent.mkdir(parents=True)
    (run_dir / "confusion_matrix.png").write_bytes(b"stale")
    record.write_run_record(RunDir(run_dir), spec, RunResult.from_dict(result))
    assert not (run_dir / "confusion_matrix.png").exists()
    assert (run_dir / "training_curves.png").read_bytes().startswith(b"\x89PNG")
    report = (run_dir / "report.md").read_text()
    assert "Confusion matrix" not in report and "| **mse** | 0.3100 |" in report and "LoRA (r=4" in report
    card = ModelCard.load(run_dir / "model" / "README.md")
    assert card.data.library_name == "peft" and "lora" in card.data.tags
    assert {(r.metric_type, r.metric_value) for r in card.data.eval_results} >= {("mse", 0.31), ("r_squared", 0.7)}
    assert "AutoPeftModelForSequenceClassification" in card.text and 'function_to_apply="none"' in card.text


def test_base_model_of_a_local_folder_comes_only_from_its_own_card(tmp_path):
    folder = tmp_path / "base-model"
    folder.mkdir()
    # config.json's _name_or_path often names an ancestor (all-MiniLM-L6-v2 says nreimers/MiniLM-...): not trusted.
    (folder / "config.json").write_text(json.dumps({"_name_or_path": "nreimers/MiniLM-L6-H384-uncased"}))
    spec = make_spec(tmp_path, SPEC.replace("sentence-transformers/all-MiniLM-L6-v2", "./base-model"))
    local = {"name": str(folder), "source": "local"}
    assert card.base_model_id(spec.model, local, spec.resolve) is None
    (folder / "README.md").write_text("---\nbase_model: sentence-transformers/all-MiniLM-L6-v2\n---\n# card\n")
    assert card.base_model_id(spec.model, local, spec.resolve) == "sentence-transformers/all-MiniLM-L6-v2"
    (folder / "README.md").write_text("---\nbase_model: /home/someone/models/minilm\n---\n")
    assert card.base_model_id(spec.model, local, spec.resolve) is None


def card_data(spec, result):
    """The card's Hub metadata from a spec's sections, as write_model_card asks for it."""
    return card.model_card_data(result, name=spec.name, task=spec.task, data=spec.data, model=spec.model,
                                lora=spec.lora, license=spec.hub.license, resolve=spec.resolve)


def local_base(tmp_path):
    """A local base model folder (no card yet), a spec that names it and sets no hub.license, the spec's text,
    and the run's record of that base model."""
    folder = tmp_path / "base-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    text = SPEC.replace("sentence-transformers/all-MiniLM-L6-v2", "./base-model").replace("  license: apache-2.0\n",
                                                                                           "")
    model = {"name": "./base-model", "source": "local", "path": str(folder)}
    return folder, make_spec(tmp_path, text), text, model


def test_the_card_takes_the_base_models_license_unless_the_spec_sets_one(tmp_path):
    """A fine-tune inherits its base model's license: the card names it (from the base's own card) when the spec
    sets no hub.license; the spec's wins; a base without a card leaves it unnamed."""
    folder, spec, text, model = local_base(tmp_path)
    assert card.base_model_license(spec.model, model, spec.resolve) is None
    (folder / "README.md").write_text("---\nlicense: cc-by-nc-4.0\n---\n# card\n")
    assert card.base_model_license(spec.model, model, spec.resolve) == "cc-by-nc-4.0"
    result = RunResult.from_dict(make_result(tmp_path, model=model))
    assert card_data(spec, result).license == "cc-by-nc-4.0"
    own = make_spec(tmp_path, text.replace("  repo_id: acme/emotions-tiny\n", "  repo_id: acme/emotions-tiny\n"
                                                                              "  license: mit\n"))
    assert card_data(own, result).license == "mit"
    (folder / "README.md").write_text("---\nlicense: \"<b>x</b> y\"\n---\n")  # not a license id: not published
    assert card.base_model_license(spec.model, model, spec.resolve) is None


def test_a_base_models_other_license_keeps_its_name_and_link(tmp_path):
    """`license: other` means nothing without the base card's license_name and license_link: the card carries
    them over (only a plain id and an https link), and only with `other`."""
    folder, spec, _, model = local_base(tmp_path)
    result = RunResult.from_dict(make_result(tmp_path, model=model))
    (folder / "README.md").write_text("---\nlicense: other\nlicense_name: llama3\n"
                                      "license_link: https://llama.meta.com/llama3/license\n---\n")
    data = card_data(spec, result).to_dict()
    assert (data["license"], data["license_name"], data["license_link"]) == (
        "other", "llama3", "https://llama.meta.com/llama3/license")
    (folder / "README.md").write_text("---\nlicense: mit\nlicense_name: llama3\n---\n")  # only with other
    assert "license_name" not in card_data(spec, result).to_dict()
    (folder / "README.md").write_text("---\nlicense: other\nlicense_name: <b>x</b>\n"
                                      "license_link: file:///home/someone/LICENSE\n---\n")  # not published
    data = card_data(spec, result).to_dict()
    assert data["license"] == "other" and "license_name" not in data and "license_link" not in data


def test_hub_dataset_goes_into_the_card(tmp_path):
    text = SPEC.replace(
        "  train: data/train.csv\n  test_file: data/test.csv\n",
        "  hub:\n    id: dair-ai/emotion\n    config: split\n    test_split: test\n",
    )
    spec = make_spec(tmp_path, text)
    result = make_result(
        tmp_path, data_files={"hub": {"id": "dair-ai/emotion", "config": "split", "revision": "cab853a"}}
    )
    data = card_data(spec, RunResult.from_dict(result))
    assert data.datasets == ["dair-ai/emotion"]
    first = data.eval_results[0]
    assert (first.dataset_type, first.dataset_config, first.dataset_revision) == ("dair-ai/emotion", "split", "cab853a")
    manifest_file.write_manifest(RunDir(tmp_path / "run"), spec, RunResult.from_dict(result))
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["data"]["files"] == {} and manifest["data"]["hub"]["revision"] == "cab853a"


def _reproducible_run(tmp_path):
    spec = make_spec(tmp_path)
    result = make_result(tmp_path)
    run_dir = tmp_path / "runs" / "emotions-tiny"
    atomic_write_json(run_dir / "metrics.json", result["metrics"])
    manifest_file.write_manifest(RunDir(run_dir), spec, RunResult.from_dict(result))
    return run_dir


def test_reproduce_refuses_when_a_data_file_changed(tmp_path):
    run_dir = _reproducible_run(tmp_path)
    with open(tmp_path / "data" / "test.csv", "a", encoding="utf-8") as stream:
        stream.write("one more row,joy\n")
    with pytest.raises(DataError, match=r"test data file .*test\.csv changed since the run") as caught:
        reproduction.reproduce_run(run_dir)
    assert caught.value.exit_code == 2
    result = CliRunner().invoke(main, ["reproduce", str(run_dir)])
    assert result.exit_code == 2 and "test.csv changed since the run" in result.output
    (tmp_path / "data" / "train.csv").unlink()
    with pytest.raises(DataError, match=r"train data file .*train\.csv is missing"):
        reproduction.reproduce_run(run_dir)
    assert not (tmp_path / "runs" / "emotions-tiny-reproduce").exists()


def test_reproduce_refuses_when_a_local_base_model_changed(tmp_path):
    folder = tmp_path / "base-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    spec = make_spec(tmp_path, SPEC.replace("sentence-transformers/all-MiniLM-L6-v2", "./base-model"))
    result = make_result(tmp_path)
    result["model"] = {
        **result["model"],
        "name": "./base-model",
        "path": str(folder),
        "source": "local",
        "revision": None,
        "weight_files": {"model.safetensors": sha256_file(folder / "model.safetensors")},
    }
    run_dir = tmp_path / "run"
    atomic_write_json(run_dir / "metrics.json", result["metrics"])
    manifest_file.write_manifest(RunDir(run_dir), spec, RunResult.from_dict(result))
    (folder / "model.safetensors").write_bytes(b"other weights")
    with pytest.raises(DataError, match=r"base model file .*model\.safetensors changed since the run"):
        reproduction.reproduce_run(run_dir)


def test_reproduce_runs_the_recorded_spec_and_compares_metrics(tmp_path, monkeypatch, capsys):
    run_dir = _reproducible_run(tmp_path)
    calls = []

    def run_spec(spec, overwrite, resume, force_resume, argv):
        calls.append((spec, overwrite, resume, force_resume, argv))
        metrics = json.loads((run_dir / "metrics.json").read_text())
        if len(calls) > 1:
            metrics["validation"]["f1_macro"] += 1e-9
        metrics["validation"]["runtime"] = 99.0  # timings differ between runs and are not compared
        atomic_write_json(spec.resolve(spec["output"]["dir"]) / "metrics.json", metrics)

    monkeypatch.setitem(sys.modules, "runner.flows.recipe", types.SimpleNamespace(run_spec=run_spec))
    assert reproduction.reproduce_run(run_dir) is True
    spec, overwrite, resume, force_resume, argv = calls[0]
    assert (overwrite, resume, force_resume) == (True, False, False)
    assert spec["output"]["dir"] == str(run_dir.with_name("emotions-tiny-reproduce"))
    assert spec["model"]["revision"] == "c9745ed1d9f207416be6d2e6f8de32d1f16199bf"
    assert spec["hub"]["push"] is False and spec["train"]["epochs"] == 2
    assert spec.resolve(spec["data"]["train"]) == tmp_path / "data" / "train.csv"
    assert argv[:2] == ["runner", "reproduce"]
    assert "metrics match" in capsys.readouterr().out

    assert reproduction.reproduce_run(run_dir, tmp_path / "elsewhere") is False
    out = capsys.readouterr().out
    assert "metrics differ" in out and "DIFFERENT" in out and "f1_macro" in out
    with pytest.raises(DataError, match="overwrite the run"):
        reproduction.reproduce_run(run_dir, run_dir)


def test_compare_metrics_is_exact_and_ignores_timings():
    matches, table = reproduction.compare_metrics(
        {"f1_macro": 0.5, "loss": float("nan"), "runtime": 1.0}, {"f1_macro": 0.5, "loss": float("nan"), "runtime": 2.0}
    )
    assert matches and "runtime" not in table
    matches, table = reproduction.compare_metrics({"f1_macro": 0.5}, {"f1_macro": 0.5000001, "accuracy": 0.9})
    assert not matches and table.count("DIFFERENT") == 2
