"""Spec v1: schema, validation with file:line:column, defaults, cross-field rules, CLI commands
that must not need torch, the generated reference, and every example."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from runner.cli import main
from runner.errors import SpecErrors
from runner.spec.document import load_schema, load_spec, load_spec_text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_SPECS = sorted(p for p in (ROOT / "examples").glob("*.yaml"))

GOOD = """version: 1
name: demo
data:
  train: train.csv
  text_column: text
  label_column: label
model:
  name: distilbert-base-uncased
train:
  epochs: 2
  learning_rate: 3.0e-5
"""


@pytest.fixture
def spec_dir(tmp_path) -> Path:
    (tmp_path / "train.csv").write_text("text,label\nhello,a\nbye,b\n", encoding="utf-8")
    return tmp_path


def validate(spec_dir: Path, text: str):
    path = spec_dir / "spec.yaml"
    path.write_text(text, encoding="utf-8")
    return CliRunner().invoke(main, ["validate", str(path)]), path


def test_schema_is_valid_draft_2020_12_and_every_field_is_described():
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("2020-12/schema")

    def walk(node, path):
        for key, prop in node.get("properties", {}).items():
            assert prop.get("description"), f"{path}{key} has no description"
            walk(prop, f"{path}{key}.")

    walk(schema, "")


def test_schema_ships_inside_the_package():
    from importlib import resources

    shipped = resources.files("runner").joinpath("schemas", "spec-v1.schema.json").read_text(encoding="utf-8")
    assert json.loads(shipped) == json.loads((ROOT / "schemas" / "spec-v1.schema.json").read_text(encoding="utf-8"))


def test_defaults_are_filled_in(spec_dir):
    spec = load_spec_text(GOOD, spec_dir / "spec.yaml")
    assert spec["task"] == "single_label_classification"
    assert spec["seed"] == 42
    assert spec["train"]["batch_size"] == 16
    assert spec["train"]["epochs"] == 2
    assert spec["train"]["metric_for_best_model"] == "f1_macro"
    assert spec["lora"] is None
    assert spec["output"]["dir"] == "runs/demo"
    assert spec["hub"]["private"] is True
    assert "hub" not in spec["data"]


def test_name_defaults_to_the_file_name(spec_dir):
    spec = load_spec_text(GOOD.replace("name: demo\n", ""), spec_dir / "my spec.yaml")
    assert spec["name"] == "my-spec"


def test_lora_section_gets_its_defaults(spec_dir):
    spec = load_spec_text(GOOD + "lora:\n  r: 4\n", spec_dir / "spec.yaml")
    assert spec["lora"] == {"r": 4, "alpha": 16, "dropout": 0.1, "target_modules": None, "bias": "none", "merge": False}


def test_set_overrides_are_parsed_as_yaml(spec_dir):
    spec = load_spec_text(GOOD, spec_dir / "spec.yaml", overrides=["train.epochs=5", "lora.r=16", "labels=[x, y]"])
    assert spec["train"]["epochs"] == 5
    assert spec["lora"]["r"] == 16
    assert spec["labels"] == ["x", "y"]


def test_bad_override_points_at_the_flag(spec_dir):
    with pytest.raises(SpecErrors) as caught:
        load_spec_text(GOOD, spec_dir / "spec.yaml", overrides=["train.learning_rate=-1"])
    assert "--set train.learning_rate" in caught.value.problems[0].where


@pytest.mark.parametrize("override, flag, message", [
    ("train.epoch=3", "--set train.epoch", "unknown key 'epoch'"),  # a misspelt key inside a section of the file
    ("trian.epochs=3", "--set trian.epochs", "unknown key 'trian'"),  # a section that --set itself made
    ("train=3", "--set train", "expected object"),
    ("train={epochs: abc}", "--set train train.epochs", "expected number"),  # inside a mapping --set replaced
    ("labels=[a, 3]", "--set labels labels[1]", "expected string"),
])
def test_a_wrong_key_given_by_set_points_at_the_flag_not_at_the_file(spec_dir, override, flag, message):
    with pytest.raises(SpecErrors) as caught:
        load_spec_text(GOOD + "labels: [x, y]\n", spec_dir / "spec.yaml", overrides=[override])
    [problem] = caught.value.problems
    assert problem.where == flag and message in problem.message


@pytest.mark.parametrize("folder", ["2024", "yes", "null", "~x", "#x", "&a b", "[1]"])
def test_output_is_taken_as_the_folder_name_it_is(spec_dir, folder):
    """`--output` is a folder name, never YAML: 2024, yes and null are folders like any other."""
    spec = load_spec_text(GOOD, spec_dir / "spec.yaml", flags={"output.dir": ("--output", folder)})
    assert spec.values["output"]["dir"] == folder
    assert spec.output_dir == Path(folder)  # `--output '~x'` is that folder, not a home folder: the shell expands


def test_a_quoted_tilde_output_is_a_folder_named_tilde(spec_dir):
    spec = load_spec_text(GOOD, spec_dir / "spec.yaml", flags={"output.dir": ("--output", "~")})
    assert spec.output_dir == Path("~")


def test_an_option_that_sets_a_bad_value_is_named_in_the_error(spec_dir):
    with pytest.raises(SpecErrors) as caught:
        load_spec_text(GOOD, spec_dir / "spec.yaml", flags={"compute.nproc": ("--nproc", -3)})
    [problem] = caught.value.problems
    assert problem.where == "--nproc" and "out of range" in problem.message


# Each case: (what is wrong, spec text, expected spec path, expected line, expected column, text in the message)
CATALOGUE = [
    ("unknown key", GOOD + "colour: blue\n", "colour", 12, 1, "unknown key 'colour'"),
    (
        "misspelt key",
        GOOD.replace("  learning_rate:", "  learnig_rate:"),
        "train.learnig_rate",
        11,
        3,
        "did you mean 'learning_rate'",
    ),
    ("misspelt section", GOOD.replace("model:", "modle:"), "modle", 7, 1, "did you mean 'model'"),
    ("wrong type", GOOD.replace("epochs: 2", "epochs: two"), "train.epochs", 10, 11, "expected number"),
    ("bad enum value", GOOD + "task: sentiment\n", "task", 12, 7, "is not one of"),
    ("negative learning rate", GOOD.replace("3.0e-5", "-0.1"), "train.learning_rate", 11, 18, "must be > 0"),
    (
        "fraction out of range",
        GOOD.replace("  label_column: label\n", "  label_column: label\n  validation_fraction: 1.5\n"),
        "data.validation_fraction",
        7,
        24,
        "must be < 1",
    ),
    ("bad LoRA rank", GOOD + "lora:\n  r: 0\n", "lora.r", 13, 6, "must be >= 1"),
    ("duplicate labels", GOOD + "labels: [joy, anger, joy]\n", "labels", 12, 9, "duplicate values: joy"),
    ("one label", GOOD + "labels: [joy]\n", "labels", 12, 9, "at least 2"),
    ("missing data file", GOOD.replace("train: train.csv", "train: nope.csv"), "data.train", 4, 10, "not found"),
    ("list where a mapping belongs", GOOD + "lora: [8, 16]\n", "lora", 12, 7, "expected object"),
    ("mapping where a list belongs", GOOD + "labels:\n  a: 1\n", "labels", 13, 3, "expected array"),
    ("wrong version", GOOD.replace("version: 1", "version: 2"), "version", 1, 10, "must be 1"),
    ("missing version", GOOD.replace("version: 1\n", ""), "(top level)", 1, 1, "missing required key 'version'"),
    ("missing data section", "version: 1\nmodel:\n  name: x\n", "(top level)", 1, 1, "missing required key 'data'"),
    ("bad repo id", GOOD + "hub:\n  repo_id: not a repo\n", "hub.repo_id", 13, 12, "not a valid value"),
    ("string batch size", GOOD + "  batch_size: '16'\n", "train.batch_size", 12, 15, "expected integer"),
    (
        "load best needs matching strategies",
        GOOD + "  save_strategy: 'no'\n",
        "train.save_strategy",
        12,
        18,
        "needs save_strategy to match",
    ),
    (
        "early stopping needs evaluation",
        GOOD + "  eval_strategy: 'no'\n  load_best_model_at_end: false\n",
        "train.early_stopping_patience",
        10,
        3,
        "early stopping needs evaluation",
    ),
    (
        "steps strategy without steps",
        GOOD + "  eval_strategy: steps\n  save_strategy: steps\n",
        "train.eval_strategy",
        12,
        18,
        "eval_steps is not set",
    ),
    (
        "text pair task without pair column",
        GOOD + "task: text_pair_classification\n",
        "task",
        12,
        7,
        "needs data.text_pair_column",
    ),
    ("regression with labels", GOOD + "task: regression\nlabels: [a, b]\n", "labels", 13, 9, "not used for regression"),
    (
        "metric of another task",
        GOOD + "  metric_for_best_model: mse\n",
        "train.metric_for_best_model",
        12,
        26,
        "not computed for task",
    ),
    ("push without repo", GOOD + "hub:\n  push: true\n", "hub.push", 13, 9, "repo_id is not set"),
    (
        "fp16 on cpu",
        GOOD + "  device: cpu\n  precision: fp16\n",
        "train.precision",
        13,
        14,
        "fp16 is not supported on the CPU",
    ),
]


@pytest.mark.parametrize("case, text, spec_path, line, column, message", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_broken_spec_catalogue(spec_dir, case, text, spec_path, line, column, message):
    result, path = validate(spec_dir, text)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.output.strip().splitlines()
    place = f"error: {path}:{line}:{column} {spec_path}" + ("" if spec_path == "(top level)" else ":")
    matches = [i for i, text in enumerate(lines) if text.startswith(place)]
    assert matches, f"no error at {place} in:\n{result.output}"
    error, hint = lines[matches[0]], lines[matches[0] + 1]
    assert hint.startswith("hint: ") and len(hint) > 8
    assert message in error + hint


def test_every_problem_is_reported_at_once(spec_dir):
    text = GOOD.replace("epochs: 2", "epochs: -1").replace("model:", "modle:") + "lora:\n  r: 0\n"
    result, _ = validate(spec_dir, text)
    assert result.exit_code == 2
    assert result.output.count("error: ") == 3


@pytest.mark.parametrize(
    "text, message",
    [
        ("version: 1\ndata:\n  train: [unclosed\n", "YAML syntax error"),
        ("", "the spec is empty"),
        ("# only a comment\n", "the spec is empty"),
        ("- a\n- b\n", "must be a mapping"),
        ("just a string\n", "must be a mapping"),
        ("version: 1\nversion: 1\ndata: {train: train.csv}\n", "duplicate key 'version'"),
        ("version: 1\ndata: !!python/object/apply:os.system ['echo hi']\n", "YAML syntax error"),
    ],
)
def test_unparseable_specs(spec_dir, text, message):
    result, path = validate(spec_dir, text)
    assert result.exit_code == 2
    assert message in result.output
    assert re.search(rf"{re.escape(str(path))}:\d+:\d+", result.output)
    assert "Traceback" not in result.output


def test_validate_missing_file_and_folder(tmp_path):
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "nope.yaml"), str(tmp_path)])
    assert result.exit_code == 2
    assert "spec file not found" in result.output and "is a folder" in result.output


def test_valid_spec_exits_zero(spec_dir):
    result, _ = validate(spec_dir, GOOD)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ok: ")


@pytest.mark.parametrize("path", EXAMPLE_SPECS, ids=[p.name for p in EXAMPLE_SPECS])
def test_every_example_validates_and_declares_the_schema(path):
    assert path.read_text(encoding="utf-8").startswith("# yaml-language-server: $schema=")
    schema_ref = path.read_text(encoding="utf-8").splitlines()[0].split("$schema=")[1]
    assert (path.parent / schema_ref).resolve() == (ROOT / "schemas" / "spec-v1.schema.json").resolve()
    load_spec(path)


def test_examples_exist():
    assert len(EXAMPLE_SPECS) >= 2


def test_validate_and_schema_do_not_import_torch(tmp_path):
    example = EXAMPLE_SPECS[0]
    code = (
        "import sys; from runner.cli import main\n"
        f"sys.argv = ['runner', 'validate', {str(example)!r}]\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "sys.argv = ['runner', 'schema']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'datasets', 'peft') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out


def test_schema_command_prints_the_schema():
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.output) == load_schema()


def test_reference_is_generated_and_current():
    result = CliRunner().invoke(main, ["docs", "--check", "--output", str(ROOT / "spec" / "reference.md")])
    assert result.exit_code == 0, "spec/reference.md is stale: run `runner docs --force`"
    text = (ROOT / "spec" / "reference.md").read_text(encoding="utf-8")
    for key in ("train.learning_rate", "lora.target_modules", "data.validation_fraction", "hub.repo_id"):
        assert f"`{key}`" in text


def test_docs_check_fails_when_stale(tmp_path):
    stale = tmp_path / "reference.md"
    stale.write_text("old\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["docs", "--check", "--output", str(stale)])
    assert result.exit_code == 1


def test_dry_run_prints_resolved_spec_and_plan(spec_dir):
    path = spec_dir / "spec.yaml"
    path.write_text(GOOD, encoding="utf-8")
    result = CliRunner().invoke(main, ["run", str(path), "--dry-run", "--set", "train.epochs=4"])
    assert result.exit_code == 0, result.output
    assert "epochs: 4" in result.output and "batch_size: 16" in result.output
    assert "# plan" in result.output and "4 epoch(s)" in result.output


def test_init_guesses_columns_and_writes_a_valid_spec(tmp_path):
    data = tmp_path / "data" / "reviews.csv"
    data.parent.mkdir()
    rows = ["id,review,sentiment"] + [
        f"{i},this is a fairly long review number {i},{'pos' if i % 2 else 'neg'}" for i in range(20)
    ]
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    out = tmp_path / "spec.yaml"
    result = CliRunner().invoke(main, ["init", str(data), "-o", str(out)])
    assert result.exit_code == 0, result.output
    spec = load_spec(out)
    assert spec["data"]["text_column"] == "review"
    assert spec["data"]["label_column"] == "sentiment"
    assert spec.resolve(spec["data"]["train"]).resolve() == data.resolve()
    again = CliRunner().invoke(main, ["init", str(data), "-o", str(out)])
    assert again.exit_code == 2


def test_version_flag():
    from runner import __version__

    result = CliRunner().invoke(main, ["--version"])
    assert __version__ in result.output


def test_validate_is_fast():
    """Not a timing assertion on the machine: validate reports its own figure, which must be printed."""
    result = CliRunner().invoke(main, ["validate", str(EXAMPLE_SPECS[0])])
    assert re.match(r"ok: .* \(\d+ ms\)", result.output)


def test_hugging_face_names_get_runners_key_in_the_hint_and_eval_metrics_are_read(tmp_path):
    """`per_device_train_batch_size` got "did you mean 'eval_batch_size'?", `num_train_epochs` and `bf16` only the
    key list; `metric_for_best_model: eval_loss` was refused. Every hint's key exists in the schema."""
    from conftest import run_cli

    from runner.spec.document import load_spec
    from runner.spec.hf_names import HF_NAMES
    from runner.spec.schema import load_schema

    schema = load_schema()
    for target, _ in HF_NAMES.values():
        node = schema
        for part in target.split("."):
            node = node["properties"][part] if "properties" in node else next(
                o for o in node.get("anyOf", []) + node.get("oneOf", []) if "properties" in o)["properties"][part]
    (tmp_path / "d.csv").write_text("text,label\na,pos\nb,neg\n")
    text = ("version: 1\nname: x\ndata:\n  train: d.csv\nmodel:\n  name: some/model\ntrain:\n"
            "  per_device_train_batch_size: 8\n  num_train_epochs: 2\n  bf16: true\n")
    (tmp_path / "s.yaml").write_text(text)
    result = run_cli("validate", "s.yaml", cwd=tmp_path)
    assert result.returncode == 2
    for line, key, ours in ((8, "per_device_train_batch_size", "batch_size (batch_size: 8)"),  # the user's values
                            (9, "num_train_epochs", "epochs (epochs: 2)"), (10, "bf16", "precision (precision: bf16)")):
        assert f"error: s.yaml:{line}:3 train.{key}: unknown key '{key}'" in result.stderr
        assert f"hint: that is Hugging Face's name; runner's is {ours}" in result.stderr
    (tmp_path / "s.yaml").write_text(text.split("  per_device")[0] + "  metric_for_best_model: eval_loss\n"
                                     "gate:\n  metric: eval_accuracy\n  min: 0.1\n")
    result = run_cli("validate", "s.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "note: s.yaml:8:26 train.metric_for_best_model: eval_loss is loss in runner" in result.stderr
    spec = load_spec(tmp_path / "s.yaml", check_files=False)
    assert spec.train.metric_for_best_model == "loss" and spec.gate.metric == "accuracy"
