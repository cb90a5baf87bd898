"""AutoTrain Advanced text-classification configs: detection, translation to a native spec, the
errors, `runner convert`, and end-to-end runs of configs in AutoTrain's documented format."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from support.tiny_models import build_tiny_model

from runner.cli import main
from runner.errors import SpecError
from runner.spec import autotrain
from runner.spec.convert import convert_file
from runner.spec.document import load_spec, load_spec_text

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "autotrain" / "config.yml"
SECRET = "hf_abcdefghijklmnopqrstuvwxyzSECRET"
ROWS = [
    ("i feel happy and light today", "joy"),
    ("what a wonderful surprise party", "joy"),
    ("we laughed all afternoon at the beach", "joy"),
    ("my team won the final", "joy"),
    ("i miss my grandmother so much", "sadness"),
    ("the house is empty since he left", "sadness"),
    ("i cried all night after the news", "sadness"),
    ("nobody came to my birthday", "sadness"),
    ("the door creaked open in the dark", "fear"),
    ("i am scared of the exam results", "fear"),
    ("someone is following me home", "fear"),
    ("the plane shook and people screamed", "fear"),
]

# AutoTrain's documented local-folder config (configs/text_classification/local_dataset.yml),
# with its comments; base_model, epochs and precision are set per test.
LOCAL_CONFIG = """\
task: text_classification
base_model: {base_model}
project_name: autotrain-bert-imdb-finetuned
log: tensorboard
backend: local

data:
  path: data/ # this must be the path to the directory containing the train and valid files
  train_split: train # this must be either train.csv or train.json
  valid_split: valid # this must be either valid.csv or valid.json
  column_mapping:
    text_column: text # this must be the name of the column containing the text
    target_column: label # this must be the name of the column containing the target

params:
  max_seq_length: {max_seq_length}
  epochs: {epochs}
  batch_size: 4
  lr: 2e-5
  optimizer: adamw_torch
  scheduler: linear
  gradient_accumulation: 1
  mixed_precision: {mixed_precision}

hub:
  username: ${{HF_USERNAME}}
  token: ${{HF_TOKEN}}
  push_to_hub: {push_to_hub}
"""


def write_rows(path: Path, rows=ROWS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["text,label"] + [f"{text},{label}" for text, label in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def local_config(
    folder: Path,
    base_model="google-bert/bert-base-uncased",
    max_seq_length=512,
    epochs=3,
    mixed_precision="fp16",
    push_to_hub="true",
    valid=True,
) -> Path:
    write_rows(folder / "data" / "train.csv")
    if valid:
        write_rows(folder / "data" / "valid.csv", ROWS[::2])
    config = folder / "config.yml"
    config.write_text(
        LOCAL_CONFIG.format(
            base_model=base_model,
            max_seq_length=max_seq_length,
            epochs=epochs,
            mixed_precision=mixed_precision,
            push_to_hub=push_to_hub,
        ),
        encoding="utf-8",
    )
    return config


def minimal(**params) -> str:
    """A small AutoTrain config whose params are given; data is a folder named data/."""
    text = "task: text_classification\nbase_model: google-bert/bert-base-uncased\nproject_name: p1\nbackend: local\n"
    text += "data:\n  path: data/\n  column_mapping:\n    text_column: text\n    target_column: label\n"
    if params:
        text += "params:\n" + "".join(f"  {key}: {json.dumps(value)}\n" for key, value in params.items())
    return text


def load(tmp_path: Path, text: str, name: str = "config.yml"):
    if not (tmp_path / "data" / "train.csv").exists():
        write_rows(tmp_path / "data" / "train.csv")
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_spec(path)


def problems_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        load(tmp_path, text)
    return caught.value.lines()


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ("HF_USERNAME", "HF_TOKEN", "MY_TOKEN"):
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------------------------------------
# Detection


@pytest.mark.parametrize("task", sorted(autotrain.AUTOTRAIN_TASKS))
def test_detects_each_autotrain_task(task):
    assert autotrain.is_autotrain_config({"task": task, "base_model": "m", "data": {}})


def test_native_specs_are_not_autotrain_configs():
    assert not autotrain.is_autotrain_config({"version": 1, "data": {"train": "x.csv"}})
    assert not autotrain.is_autotrain_config({"version": 1, "task": "single_label_classification"})


def test_other_autotrain_tasks_are_refused_with_a_reason(tmp_path):
    lines = problems_of(tmp_path, minimal().replace("text_classification", "llm-sft"))
    assert any("config.yml:1:7 task: AutoTrain task 'llm-sft' is not text classification" in line for line in lines)


@pytest.mark.parametrize("task", sorted(autotrain.AUTOTRAIN_TASKS))
def test_every_task_name_trains_a_single_label_classifier(tmp_path, task):
    spec = load(tmp_path, minimal().replace("task: text_classification", f"task: {task}"))
    assert spec["task"] == "single_label_classification"


# ---------------------------------------------------------------------------------------------
# Translation


def test_documented_local_config_becomes_the_equivalent_spec(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_USERNAME", "alice")
    spec = load_spec(local_config(tmp_path))
    data, train = spec["data"], spec["train"]
    assert spec["name"] == "autotrain-bert-imdb-finetuned"
    assert spec["output"]["dir"] == "autotrain-bert-imdb-finetuned"
    assert spec["model"]["name"] == "google-bert/bert-base-uncased"
    assert spec["model"]["max_length"] == 512
    assert (data["train"], data["validation_file"]) == ("data/train.csv", "data/valid.csv")
    assert (data["text_column"], data["label_column"]) == ("text", "label")
    assert spec.resolve(data["train"]) == tmp_path / "data" / "train.csv"
    assert train["learning_rate"] == 2e-5  # YAML reads `2e-5` as a string; AutoTrain's pydantic makes it a float
    assert (train["epochs"], train["batch_size"], train["eval_batch_size"]) == (3, 4, 8)
    assert (train["optimizer"], train["lr_scheduler"], train["gradient_accumulation_steps"]) == (
        "adamw_torch",
        "linear",
        1,
    )
    assert train["precision"] == "fp16"
    assert train["report_to"] == ["tensorboard"]
    assert spec["hub"]["repo_id"] == "alice/autotrain-bert-imdb-finetuned"
    assert spec["hub"]["push"] is True


def test_autotrain_defaults_apply_when_params_are_absent(tmp_path):
    text = minimal().replace("    target_column: label\n", "")  # AutoTrain's default target column is `target`
    spec = load(tmp_path, text)
    train = spec["train"]
    assert (train["learning_rate"], train["epochs"], spec["model"]["max_length"]) == (5e-5, 3, 128)
    assert (train["batch_size"], train["eval_batch_size"]) == (8, 16)
    assert (train["warmup_ratio"], train["weight_decay"], train["max_grad_norm"]) == (0.1, 0.0, 1.0)
    assert (train["optimizer"], train["lr_scheduler"]) == ("adamw_torch", "linear")
    assert (train["save_total_limit"], train["early_stopping_patience"], train["early_stopping_threshold"]) == (
        1,
        5,
        0.01,
    )
    assert (train["eval_strategy"], train["save_strategy"], train["metric_for_best_model"]) == (
        "epoch",
        "epoch",
        "loss",
    )
    assert train["precision"] == "fp32"
    assert train["logging_steps"] == 10  # AutoTrain's -1 (automatic) leaves runner's own
    assert train["report_to"] == []
    assert spec["seed"] == 42
    assert spec["data"]["label_column"] == "target"
    assert spec["data"]["validation_file"] is None  # no valid_split: a seeded, stratified 20% is held out
    assert spec["data"]["validation_fraction"] == 0.2 and spec["data"]["stratify"] is True


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"lr": 3e-4}, {("train", "learning_rate"): 3e-4}),
        ({"lr": "1e-4"}, {("train", "learning_rate"): 1e-4}),
        ({"epochs": 7}, {("train", "epochs"): 7}),
        ({"max_seq_length": 64}, {("model", "max_length"): 64}),
        ({"batch_size": 4}, {("train", "batch_size"): 4, ("train", "eval_batch_size"): 8}),
        ({"warmup_ratio": 0.25}, {("train", "warmup_ratio"): 0.25}),
        ({"gradient_accumulation": 4}, {("train", "gradient_accumulation_steps"): 4}),
        ({"optimizer": "adafactor"}, {("train", "optimizer"): "adafactor"}),
        ({"optimizer": "sgd"}, {("train", "optimizer"): "sgd"}),
        ({"scheduler": "cosine"}, {("train", "lr_scheduler"): "cosine"}),
        ({"weight_decay": 0.05}, {("train", "weight_decay"): 0.05}),
        ({"max_grad_norm": 0.5}, {("train", "max_grad_norm"): 0.5}),
        ({"seed": 7}, {("seed",): 7}),
        ({"logging_steps": 5}, {("train", "logging_steps"): 5}),
        ({"logging_steps": -1}, {("train", "logging_steps"): 10}),
        ({"eval_strategy": "epoch"}, {("train", "eval_strategy"): "epoch", ("train", "save_strategy"): "epoch"}),
        (
            {"eval_strategy": "steps", "logging_steps": 20},
            {
                ("train", "eval_strategy"): "steps",
                ("train", "save_strategy"): "steps",
                ("train", "eval_steps"): 20,
                ("train", "save_steps"): 20,
            },
        ),
        (
            {"eval_strategy": "no"},
            {
                ("train", "eval_strategy"): "no",
                ("train", "load_best_model_at_end"): False,
                ("train", "early_stopping_patience"): None,
            },
        ),
        ({"save_total_limit": 3}, {("train", "save_total_limit"): 3}),
        ({"auto_find_batch_size": True}, {("train", "auto_find_batch_size"): True}),
        ({"mixed_precision": "fp16"}, {("train", "precision"): "fp16"}),
        ({"mixed_precision": "bf16"}, {("train", "precision"): "bf16"}),
        ({"mixed_precision": "none"}, {("train", "precision"): "fp32"}),
        ({"mixed_precision": None}, {("train", "precision"): "fp32"}),
        ({"early_stopping_patience": 2}, {("train", "early_stopping_patience"): 2}),
        ({"early_stopping_threshold": 0.05}, {("train", "early_stopping_threshold"): 0.05}),
    ],
)
def test_each_param_maps_to_the_spec(tmp_path, params, expected):
    spec = load(tmp_path, minimal(**params))
    for path, value in expected.items():
        node = spec.values
        for part in path:
            node = node[part]
        assert node == value, path


@pytest.mark.parametrize("log, report_to", [("none", []), ("tensorboard", ["tensorboard"]), ("wandb", ["wandb"])])
def test_log_maps_to_report_to(tmp_path, log, report_to, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec  # wandb need not be installed here: validate checks that separately
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "wandb" else real(name, *a))
    spec = load(tmp_path, minimal() + f"log: {log}\n")
    assert spec["train"]["report_to"] == report_to


def test_every_documented_param_is_translated():
    assert set(autotrain.PARAMS) == {
        "lr",
        "epochs",
        "max_seq_length",
        "batch_size",
        "warmup_ratio",
        "gradient_accumulation",
        "optimizer",
        "scheduler",
        "weight_decay",
        "max_grad_norm",
        "seed",
        "logging_steps",
        "eval_strategy",
        "save_total_limit",
        "auto_find_batch_size",
        "mixed_precision",
        "early_stopping_patience",
        "early_stopping_threshold",
    }


# ---------------------------------------------------------------------------------------------
# Data conventions


def test_jsonl_is_used_when_the_folder_has_no_csv(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.jsonl").write_text(
        "".join(json.dumps({"text": text, "label": label}) + "\n" for text, label in ROWS), encoding="utf-8"
    )
    path = tmp_path / "config.yml"
    path.write_text(minimal(), encoding="utf-8")
    assert load_spec(path)["data"]["train"] == "data/train.jsonl"


def test_a_folder_without_the_train_file_is_an_error(tmp_path):
    write_rows(tmp_path / "data" / "training.csv")
    path = tmp_path / "config.yml"
    path.write_text(minimal(), encoding="utf-8")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert "config.yml:6:9 data.path: folder 'data/' has no train.csv or train.jsonl" in "\n".join(caught.value.lines())


def test_a_missing_validation_file_points_at_valid_split(tmp_path):
    config = local_config(tmp_path, push_to_hub="false", valid=False)
    with pytest.raises(SpecError) as caught:
        load_spec(config)
    assert "config.yml:10:16 data.validation_file: data file 'data/valid.csv' not found" in "\n".join(
        caught.value.lines()
    )


def test_a_name_that_is_no_folder_is_a_hub_dataset(tmp_path):
    text = minimal().replace("path: data/", "path: stanfordnlp/imdb") + "  valid_split: test\n"
    text = text.replace("  column_mapping:", "  train_split: train\n  column_mapping:")
    spec = load(tmp_path, text)
    assert spec["data"]["hub"]["id"] == "stanfordnlp/imdb"
    assert (spec["data"]["hub"]["split"], spec["data"]["hub"]["validation_split"]) == ("train", "test")
    assert "train" not in spec["data"]


def test_a_missing_folder_path_is_an_error(tmp_path):
    lines = problems_of(tmp_path, minimal().replace("path: data/", "path: ./nowhere/"))
    assert any("data.path: './nowhere/' is neither a folder" in line for line in lines)


# ---------------------------------------------------------------------------------------------
# Hub: username and token


def test_username_is_read_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_USERNAME", "bob")
    spec = load(tmp_path, minimal() + "hub:\n  username: ${HF_USERNAME}\n  token: ${HF_TOKEN}\n  push_to_hub: true\n")
    assert spec["hub"]["repo_id"] == "bob/p1"
    assert spec["hub"]["push"] is True


def test_an_unset_username_variable_is_an_error_only_when_pushing(tmp_path):
    lines = problems_of(tmp_path, minimal() + "hub:\n  username: ${HF_USERNAME}\n  push_to_hub: true\n")
    assert any("config.yml:11:13 hub.username: reads ${HF_USERNAME}, which is not set" in line for line in lines)
    spec = load(tmp_path, minimal() + "hub:\n  username: ${HF_USERNAME}\n  push_to_hub: false\n")
    assert spec["hub"]["repo_id"] is None and spec["hub"]["push"] is False


def test_a_literal_token_is_refused_without_echoing_it(tmp_path):
    text = minimal() + f"hub:\n  username: bob\n  token: {SECRET}\n  push_to_hub: true\n"
    lines = problems_of(tmp_path, text)
    assert (
        "error: "
        + str(tmp_path / "config.yml")
        + ":12:10 hub.token: a token is written in the config; secrets never live in the spec"
        in lines
    )
    assert SECRET not in "\n".join(lines)
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "config.yml")])
    assert result.exit_code == 2
    assert SECRET not in result.output
    result = CliRunner().invoke(main, ["convert", str(tmp_path / "config.yml")])
    assert result.exit_code == 2
    assert SECRET not in result.output


def test_the_token_never_reaches_the_spec(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    spec = load(tmp_path, minimal() + "hub:\n  username: bob\n  token: ${HF_TOKEN}\n  push_to_hub: true\n")
    assert SECRET not in json.dumps(spec.values)
    assert "token" not in spec["hub"]


def test_a_token_from_another_variable_must_match_hf_token(tmp_path, monkeypatch):
    text = minimal() + "hub:\n  username: bob\n  token: ${MY_TOKEN}\n  push_to_hub: true\n"
    monkeypatch.setenv("MY_TOKEN", SECRET)
    lines = problems_of(tmp_path, text)
    assert any(
        "hub.token: reads ${MY_TOKEN}, but runner takes the Hub token only from HF_TOKEN" in line for line in lines
    )
    assert any('export HF_TOKEN="$MY_TOKEN"' in line for line in lines)
    assert SECRET not in "\n".join(lines)
    monkeypatch.setenv("HF_TOKEN", SECRET)  # the same token AutoTrain would use: fine
    assert load(tmp_path, text)["hub"]["repo_id"] == "bob/p1"


# ---------------------------------------------------------------------------------------------
# Keys we cannot honour, unknown keys


def test_unknown_keys_get_a_suggestion_and_a_position(tmp_path):
    text = minimal(lrr=2e-5).replace("base_model:", "base_modle: x\nbase_model:")
    lines = problems_of(tmp_path, text)
    where = str(tmp_path / "config.yml")
    assert f"error: {where}:2:1 base_modle: unknown key 'base_modle' in an AutoTrain config" in lines
    assert f"error: {where}:12:3 params.lrr: unknown AutoTrain text-classification param 'lrr'" in lines
    assert lines.count("hint: did you mean 'lr'?") == 1
    assert lines.count("hint: did you mean 'base_model'?") == 1


def test_old_param_names_are_suggested_their_new_name(tmp_path):
    lines = problems_of(tmp_path, minimal(evaluation_strategy="epoch"))
    assert "hint: did you mean 'eval_strategy'?" in lines


def test_params_that_belong_elsewhere_say_where(tmp_path):
    lines = problems_of(tmp_path, minimal(model="bert-base-cased"))
    assert any("params.model: 'model' is read from base_model in an AutoTrain config" in line for line in lines)


@pytest.mark.parametrize("backend", ["spaces-a10g-large", "ep-aws-useast1-m", "ngc-a100", "nvcf-l40sx1"])
def test_remote_backends_are_refused_with_the_reason(tmp_path, backend):
    lines = problems_of(tmp_path, minimal().replace("backend: local", f"backend: {backend}"))
    assert any(
        f"config.yml:4:10 backend: '{backend}' trains on" in line
        and "runner trains on this machine or a CI runner only" in line
        for line in lines
    )
    assert any("set `backend: local`" in line for line in lines)


@pytest.mark.parametrize("backend", ["local", "local-cli", "local-ui"])
def test_local_backends_are_accepted(tmp_path, backend):
    load(tmp_path, minimal().replace("backend: local", f"backend: {backend}"))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"optimizer": "adamw_8bit"}, "params.optimizer: 'adamw_8bit' is not an optimizer runner supports"),
        ({"scheduler": "cosine_warmup"}, "params.scheduler: 'cosine_warmup' is not a scheduler runner supports"),
        ({"mixed_precision": "fp8"}, "params.mixed_precision: 'fp8' is not fp16, bf16 or none"),
        ({"eval_strategy": "sometimes"}, "params.eval_strategy: 'sometimes' is not epoch, steps or no"),
        ({"epochs": 0}, "params.epochs: 0 is out of range: must be > 0"),
        ({"lr": "fast"}, "params.lr: must be a number, got fast"),
        ({"batch_size": 2.5}, "params.batch_size: must be an integer, got 2.5"),
        ({"logging_steps": 0}, "params.logging_steps: must be -1 (automatic) or at least 1, got 0"),
    ],
)
def test_values_we_cannot_honour_are_errors_in_autotrain_terms(tmp_path, params, message):
    lines = problems_of(tmp_path, minimal(**params))
    assert any(message in line and ":11:" in line for line in lines), lines


def test_all_problems_are_reported_together(tmp_path):
    text = minimal(lrr=1, epochs=0).replace("backend: local", "backend: spaces-t4-small")
    lines = [line for line in problems_of(tmp_path, text) if line.startswith("error:")]
    assert len(lines) == 3


def test_native_schema_errors_point_at_the_autotrain_line(tmp_path):
    lines = problems_of(tmp_path, minimal() + "hub:\n  username: not a name!\n  push_to_hub: true\n")
    assert any("config.yml:11:13 hub.repo_id:" in line for line in lines)


def test_an_invalid_project_name_is_refused_as_autotrain_does(tmp_path):
    lines = problems_of(tmp_path, minimal().replace("project_name: p1", "project_name: my_project"))
    assert any(
        "config.yml:3:15 project_name: 'my_project' is not a valid AutoTrain project name" in line for line in lines
    )


# ---------------------------------------------------------------------------------------------
# runner convert


def test_convert_writes_a_native_spec_that_validates(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_USERNAME", "alice")
    config = local_config(tmp_path)
    text = convert_file(config)
    assert text.startswith("# yaml-language-server: $schema=")
    schema_reference = text.splitlines()[0].split("$schema=")[1]
    assert (tmp_path / schema_reference).resolve() == (REPO / "schemas" / "spec-v1.schema.json").resolve()
    native = yaml.safe_load(text)
    assert native["version"] == 1 and "base_model" not in native
    converted = load_spec_text(text, tmp_path / "spec.yaml")
    original = load_spec(config)
    assert converted.values == original.values


def test_convert_comments_every_line_whose_meaning_changed(tmp_path):
    config = local_config(tmp_path, push_to_hub="false")
    lines = convert_file(config).splitlines()

    def line(prefix: str) -> str:
        return next(text for text in lines if text.strip().startswith(prefix))

    assert "# AutoTrain's default (runner's own: 0.0)" in line("warmup_ratio:")
    assert "# AutoTrain's default (runner's own: 0.01)" in line("weight_decay:")
    assert "# AutoTrain's default (runner's own: 2)" in line("save_total_limit:")
    assert "# AutoTrain's default (runner's own: 3)" in line("early_stopping_patience:")
    assert "twice params.batch_size" in line("eval_batch_size:")
    assert "lowest validation loss" in line("metric_for_best_model:")
    assert "saves a checkpoint whenever it evaluates" in line("save_strategy:")
    assert "project folder" in line("dir:")
    assert "run their own code" in line("trust_remote_code:")
    assert "AutoTrain's -1" in line("# logging_steps:")
    assert "HF_TOKEN only" in line("# token:")
    assert "#" not in line("learning_rate:")  # same meaning: no comment
    assert "#" not in line("precision:")  # fp16 is fp16


def test_convert_rewrites_paths_for_a_spec_in_another_folder(tmp_path):
    config = local_config(tmp_path / "autotrain", push_to_hub="false")
    out = tmp_path / "specs" / "converted.yaml"
    out.parent.mkdir()
    text = convert_file(config, spec_path=out)
    assert yaml.safe_load(text)["data"]["train"] == "../autotrain/data/train.csv"
    out.write_text(text, encoding="utf-8")
    assert load_spec(out).resolve("../autotrain/data/train.csv").exists()


def test_convert_on_the_command_line(tmp_path):
    config = local_config(tmp_path, push_to_hub="false")
    out = tmp_path / "native.yaml"
    result = CliRunner().invoke(main, ["convert", str(config), "-o", str(out)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["validate", str(out)])
    assert result.exit_code == 0, result.output


def test_convert_refuses_a_native_spec(tmp_path):
    write_rows(tmp_path / "train.csv")
    spec = tmp_path / "spec.yaml"
    spec.write_text("version: 1\ndata:\n  train: train.csv\n", encoding="utf-8")
    with pytest.raises(SpecError, match="already a native spec"):
        convert_file(spec)


# ---------------------------------------------------------------------------------------------
# runner validate


def test_validate_accepts_an_autotrain_config(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_USERNAME", "alice")
    result = CliRunner().invoke(main, ["validate", str(local_config(tmp_path))])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: ")


def test_validate_rejects_a_broken_autotrain_config(tmp_path):
    config = local_config(tmp_path, push_to_hub="false")
    config.write_text(config.read_text().replace("  lr: 2e-5", "  learning_rate: 2e-5"), encoding="utf-8")
    result = CliRunner().invoke(main, ["validate", str(config)])
    assert result.exit_code == 2
    assert (
        f"{config}:19:3 params.learning_rate: unknown AutoTrain text-classification param 'learning_rate'"
        in result.output
    )
    assert "hint: allowed keys here: lr, epochs, max_seq_length," in result.output


def test_the_shipped_example_validates():
    result = CliRunner().invoke(main, ["validate", str(EXAMPLE)])
    assert result.exit_code == 0, result.output


# ---------------------------------------------------------------------------------------------
# End to end: train the tiny model from configs in AutoTrain's documented format

needs_recipe = pytest.mark.skipif(
    importlib.util.find_spec("runner.flows.recipe") is None, reason="runner.flows.recipe is not written yet"
)


def runner_command(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The real `runner` in a fresh process, so a run's environment changes stay in it."""
    return subprocess.run(
        [sys.executable, "-m", "runner", *args],
        cwd=cwd,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def emotions_model(tmp_path_factory) -> Path:
    """A two-layer BERT (hidden size 32) with a WordPiece vocabulary trained on the example texts
    (conftest's tiny_model knows only its own fixture words)."""
    texts = [line.split(",")[0] for line in (REPO / "examples/autotrain/data/train.csv").read_text().splitlines()[1:]]
    corpus = texts + [text for text, _ in ROWS]
    return build_tiny_model(tmp_path_factory.mktemp("tiny-bert"), corpus=corpus, vocab_size=400, max_length=512)


@needs_recipe
def test_runs_the_documented_local_config_end_to_end(tmp_path, monkeypatch, emotions_model):
    folder = tmp_path / "autotrain"
    shutil.copytree(REPO / "examples" / "autotrain" / "data", folder / "data")
    config = folder / "config.yml"
    config.write_text(
        LOCAL_CONFIG.format(
            base_model=emotions_model, max_seq_length=64, epochs=1, mixed_precision="none", push_to_hub="false"
        ),
        encoding="utf-8",
    )
    monkeypatch.setenv("HF_TOKEN", SECRET)
    result = runner_command("run", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert SECRET not in result.stdout + result.stderr
    project = (
        tmp_path / "autotrain-bert-imdb-finetuned"
    )  # AutoTrain writes to the project folder in the working directory
    assert (project / "model" / "config.json").exists()
    metrics = json.loads((project / "metrics.json").read_text())
    assert metrics["headline"]["name"] == "loss"  # AutoTrain keeps the checkpoint with the lowest validation loss
    saved = yaml.safe_load((project / "spec.yaml").read_text())
    assert saved["train"]["learning_rate"] == 2e-5 and saved["train"]["batch_size"] == 4
    assert saved["data"]["validation_file"] == "data/valid.csv"
    for path in project.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


@needs_recipe
def test_runs_a_hub_dataset_config_end_to_end(tmp_path, monkeypatch, emotions_model):
    from support.hub_server import FakeHub, forget_connections, point_hf_at

    hub = FakeHub().start()
    try:
        point_hf_at(monkeypatch, hub.url, tmp_path / "hf_home")
        monkeypatch.setenv("HF_TOKEN", hub.token)
        monkeypatch.setenv("HF_USERNAME", hub.user)
        train = (REPO / "examples/autotrain/data/train.csv").read_bytes()
        valid = (REPO / "examples/autotrain/data/valid.csv").read_bytes()
        hub.upload("tester/emotions", {"train.csv": train, "test.csv": valid}, repo_type="dataset")
        # AutoTrain's documented Hub config (configs/text_classification/hub_dataset.yml), sized for the tiny model.
        config = tmp_path / "hub_dataset.yml"
        config.write_text(
            f"""\
task: text_classification
base_model: {emotions_model}
project_name: autotrain-tiny-emotions
log: tensorboard
backend: local

data:
  path: tester/emotions
  train_split: train
  valid_split: test
  column_mapping:
    text_column: text
    target_column: label

params:
  max_seq_length: 64
  epochs: 1
  batch_size: 16
  lr: 2e-5
  optimizer: adamw_torch
  scheduler: linear
  gradient_accumulation: 1

hub:
  username: ${{HF_USERNAME}}
  token: ${{HF_TOKEN}}
  push_to_hub: true
""",
            encoding="utf-8",
        )
        result = runner_command("run", str(config), cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        assert hub.token not in result.stdout + result.stderr
        project = tmp_path / "autotrain-tiny-emotions"
        summary = json.loads((project / "run.json").read_text())["results"]["data_summary"]
        assert summary["rows"] == {"train": 300, "validation": 60}
        assert summary["sources"] == {"train": "tester/emotions[train]", "validation": "tester/emotions[test]"}
        pushed = hub.files("tester/autotrain-tiny-emotions")
        assert "config.json" in pushed or any(name.endswith("config.json") for name in pushed)
        assert hub.repo("tester/autotrain-tiny-emotions").private  # AutoTrain creates private repos too
        assert all(hub.token.encode() not in content for content in pushed.values())
    finally:
        hub.stop()
        forget_connections()
