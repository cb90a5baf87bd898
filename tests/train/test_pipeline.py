"""`runner run` end to end on the tiny model: every task type, full fine-tuning and LoRA, the run
folder, `runner predict`, `runner eval`, pipeline() loading, determinism, and bad data."""

from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner
from conftest import labelled_rows, make_texts, run_cli, tiny_spec_text, write_csv, write_spec

from runner.cli import main


def invoke(*args):
    """The CLI in-process (faster than a subprocess; same code path)."""
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def read_json(path):
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def single_label_run(tiny_model, tmp_path_factory):
    """One full fine-tuning run shared by several tests, through the real CLI in a subprocess."""
    folder = tmp_path_factory.mktemp("single")
    write_csv(folder / "data" / "train.csv", labelled_rows(per_label=60))
    write_csv(folder / "data" / "test.csv", labelled_rows(per_label=10, seed=5))
    spec = write_spec(
        folder,
        tiny_spec_text(tiny_model, extra="labels: [neg, pos]\n")
        .replace("epochs: 1", "epochs: 8")
        .replace("  train: data/train.csv\n", "  train: data/train.csv\n  test_file: data/test.csv\n"),
    )
    result = run_cli("run", str(spec), cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "run", result


def test_run_folder_holds_model_metrics_predictions_and_record(single_label_run):
    run_dir, result = single_label_run
    for name in (
        "model/config.json",
        "model/model.safetensors",
        "model/tokenizer.json",
        "model/README.md",
        "metrics.json",
        "spec.yaml",
        "run.json",
        "report.md",
        "confusion_matrix.png",
        "training_curves.png",
        "predictions/validation.jsonl",
        "predictions/test.jsonl",
    ):
        assert (run_dir / name).exists(), name
    metrics = read_json(run_dir / "metrics.json")
    assert set(metrics) == {"validation", "test", "headline"}
    assert metrics["headline"]["name"] == "f1_macro"
    assert metrics["validation"]["accuracy"] >= 0.9, metrics  # two clearly separable classes
    assert metrics["test"]["accuracy"] >= 0.9, metrics
    assert "roc_auc" in metrics["validation"]
    config = read_json(run_dir / "model" / "config.json")
    assert config["id2label"] == {"0": "neg", "1": "pos"}
    assert "trainable of" in result.stdout and "done: validation f1_macro" in result.stdout
    # the test figure beside the validation one, and which split chose what (#36: the headline chose everything)
    done = next(line for line in result.stdout.splitlines() if line.startswith("done: "))
    assert f"· test f1_macro = {metrics['test']['f1_macro']:.4f} (validation chose the checkpoint" in done, done
    assert "; test is held out)" in done
    report = run_cli("report", str(run_dir))
    assert report.returncode == 0 and " · test " in report.stdout.splitlines()[0], report.stdout[:300]


def test_validation_predictions_have_rows_labels_and_probabilities(single_label_run):
    run_dir, _ = single_label_run
    rows = [json.loads(line) for line in (run_dir / "predictions" / "validation.jsonl").read_text().splitlines()]
    assert len(rows) == 24  # 20% of 120
    first = rows[0]
    assert {"row", "text", "true_label", "label", "score", "probabilities"} <= set(first)
    assert abs(sum(first["probabilities"].values()) - 1) < 1e-4
    assert first["row"] >= 2  # a CSV line number (the header is line 1)


def test_predict_command_prints_labels_and_probabilities(single_label_run):
    run_dir, _ = single_label_run
    result = invoke("predict", str(run_dir), "what a great happy sunny day", "an awful sad gloomy day")
    lines = [json.loads(line) for line in result.stdout.strip().splitlines() if line.startswith("{")]
    assert [line["label"] for line in lines] == ["pos", "neg"]
    assert all(0.5 < line["score"] <= 1 for line in lines)


def test_predict_from_file_to_file(single_label_run, tmp_path):
    run_dir, _ = single_label_run
    write_csv(tmp_path / "in.csv", [{"text": t} for t in make_texts("pos", 30, random.Random(1))])
    out = tmp_path / "out.jsonl"
    result = invoke("predict", str(run_dir), "--input", str(tmp_path / "in.csv"), "--output", str(out))
    assert "texts/s" in result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 30 and sum(r["label"] == "pos" for r in rows) >= 27


def test_eval_command_on_a_new_labelled_file(single_label_run, tmp_path):
    run_dir, _ = single_label_run
    write_csv(tmp_path / "new.csv", labelled_rows(per_label=15, seed=9))
    result = invoke("eval", str(run_dir), "--data", str(tmp_path / "new.csv"))
    metrics = json.loads(result.stdout)
    assert metrics["rows"] == 30 and metrics["accuracy"] >= 0.9


def test_saved_model_loads_with_pipeline(single_label_run):
    from transformers import pipeline

    run_dir, _ = single_label_run
    classifier = pipeline("text-classification", model=str(run_dir / "model"))
    assert classifier("lovely wonderful excellent day")[0]["label"] == "pos"
    assert classifier("horrible dreary miserable day")[0]["label"] == "neg"


def test_lora_run_saves_adapter_and_merged_model(tiny_distilbert, tmp_path):
    from transformers import pipeline

    write_csv(tmp_path / "data" / "train.csv", labelled_rows(per_label=60))
    text = tiny_spec_text(tiny_distilbert, extra="lora:\n  r: 8\n  alpha: 16\n  merge: true\n").replace(
        "epochs: 1", "epochs: 2"
    )
    spec = write_spec(tmp_path, text)
    result = CliRunner().invoke(main, ["run", str(spec), "--output", str(tmp_path / "run")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "run"
    adapter = read_json(run_dir / "model" / "adapter_config.json")
    assert sorted(adapter["target_modules"]) == ["q_lin", "v_lin"]  # DistilBERT default
    assert adapter["base_model_name_or_path"] == str(tiny_distilbert)
    assert not (run_dir / "model" / "model.safetensors").exists()
    assert (run_dir / "merged" / "model.safetensors").exists()
    from safetensors.torch import load_file

    weights = load_file(run_dir / "model" / "adapter_model.safetensors")
    lora_b = [tensor for name, tensor in weights.items() if "lora_B" in name]
    assert lora_b and all(tensor.abs().sum() > 0 for tensor in lora_b)  # B starts at zero: training moved it
    assert any("classifier" in name for name in weights)  # the head is trained and saved with the adapter
    # The adapter (base + LoRA) and the merged model give the same probabilities.
    predicted = json.loads(invoke("predict", str(run_dir), "great lovely happy day").stdout.strip().splitlines()[0])
    merged = pipeline("text-classification", model=str(run_dir / "merged"), top_k=None)(["great lovely happy day"])[0]
    assert {item["label"]: round(item["score"], 4) for item in merged} == {
        k: round(v, 4) for k, v in predicted["probabilities"].items()
    }
    manifest = read_json(run_dir / "run.json")
    assert (
        manifest["model"]["kind"] == "lora"
        and manifest["model"]["trainable_params"] < manifest["model"]["total_params"]
    )


def test_lora_target_not_in_model_lists_valid_names(tiny_model, tiny_data):
    folder = tiny_data.parent.parent
    spec = write_spec(folder, tiny_spec_text(tiny_model, extra="lora:\n  target_modules: [q_lin]\n"))
    result = run_cli("run", str(spec), cwd=folder)
    assert result.returncode == 2
    assert "lora.target_modules q_lin not found in the model" in result.stderr
    assert "query" in result.stderr and "value" in result.stderr and "Traceback" not in result.stderr


def test_multi_label_classification(tiny_model, tmp_path):
    rng = random.Random(3)
    rows = []
    for _ in range(120):
        names = sorted(rng.sample(["pos", "neg", "neu"], rng.choice([1, 2])))
        words = sum((rng.sample(__import__("conftest").WORDS[n], 2) for n in names), [])
        rows.append({"text": " ".join(words), "tags": "|".join(names)})
    write_csv(tmp_path / "data" / "train.csv", rows)
    text = (
        tiny_spec_text(tiny_model, extra="task: multi_label_classification\n")
        .replace("  train: data/train.csv\n", "  train: data/train.csv\n  label_column: tags\n  label_delimiter: '|'\n")
        .replace("epochs: 1", "epochs: 6")
    )
    spec = write_spec(tmp_path, text)
    result = CliRunner().invoke(main, ["run", str(spec), "--output", str(tmp_path / "run")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = read_json(tmp_path / "run" / "metrics.json")
    assert metrics["headline"]["name"] == "f1_micro"
    assert {"f1_micro", "f1_macro", "subset_accuracy"} <= set(metrics["validation"])
    assert metrics["validation"]["f1_micro"] > 0.6, metrics
    config = read_json(tmp_path / "run" / "model" / "config.json")
    assert config["problem_type"] == "multi_label_classification"
    out = invoke("predict", str(tmp_path / "run"), "great lovely awful terrible")
    prediction = json.loads(out.stdout.strip().splitlines()[0])
    assert set(prediction["probabilities"]) == {"neg", "neu", "pos"} and isinstance(prediction["labels"], list)


def test_regression(tiny_model, tmp_path):
    rng = random.Random(4)
    rows = []
    for _ in range(120):
        n_pos = rng.randint(0, 3)
        words = rng.sample(__import__("conftest").WORDS["pos"], n_pos) + rng.sample(
            __import__("conftest").WORDS["neu"], 3 - n_pos
        )
        rows.append({"text": " ".join(words), "label": n_pos})
    write_csv(tmp_path / "data" / "train.csv", rows)
    text = tiny_spec_text(tiny_model, extra="task: regression\n").replace("epochs: 1", "epochs: 6")
    spec = write_spec(tmp_path, text)
    result = CliRunner().invoke(main, ["run", str(spec), "--output", str(tmp_path / "run")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = read_json(tmp_path / "run" / "metrics.json")
    assert metrics["headline"]["name"] == "mse"
    assert {"mse", "mae", "r2", "pearson", "spearman"} <= set(metrics["validation"])
    assert metrics["validation"]["pearson"] > 0.5, metrics
    out = invoke("predict", str(tmp_path / "run"), "great lovely happy")
    assert "value" in json.loads(out.stdout.strip().splitlines()[0])


def test_text_pair_classification(tiny_model, tmp_path):
    rng = random.Random(5)
    words = __import__("conftest").WORDS
    rows = []
    for _ in range(120):
        first, second = rng.choice(["pos", "neg"]), rng.choice(["pos", "neg"])
        rows.append(
            {
                "premise": " ".join(rng.sample(words[first], 3)),
                "hypothesis": " ".join(rng.sample(words[second], 3)),
                "label": "same" if first == second else "different",
            }
        )
    write_csv(tmp_path / "data" / "train.csv", rows)
    text = (
        tiny_spec_text(tiny_model, extra="task: text_pair_classification\n")
        .replace(
            "  train: data/train.csv\n",
            "  train: data/train.csv\n  text_column: premise\n  text_pair_column: hypothesis\n",
        )
        .replace("epochs: 1", "epochs: 2")
    )
    spec = write_spec(tmp_path, text)
    result = CliRunner().invoke(main, ["run", str(spec), "--output", str(tmp_path / "run")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    metrics = read_json(tmp_path / "run" / "metrics.json")
    assert set(read_json(tmp_path / "run" / "model" / "config.json")["label2id"]) == {"different", "same"}
    assert 0 <= metrics["validation"]["accuracy"] <= 1
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "predictions" / "validation.jsonl").read_text().splitlines()
    ]
    assert "text_pair" in rows[0]
    out = invoke("predict", str(tmp_path / "run"), "great lovely happy", "awful sad bleak")
    assert json.loads(out.stdout.strip().splitlines()[0])["label"] in {"same", "different"}


def test_same_seed_gives_identical_metrics(tiny_model, tiny_data):
    folder = tiny_data.parent.parent
    spec = write_spec(folder, tiny_spec_text(tiny_model).replace("epochs: 1", "epochs: 2"))
    for output in ("first", "second"):
        result = CliRunner().invoke(main, ["run", str(spec), "--output", str(folder / output)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    first, second = read_json(folder / "first" / "metrics.json"), read_json(folder / "second" / "metrics.json")
    assert first == second
    history = [read_json(folder / name / "run.json")["timing"]["global_step"] for name in ("first", "second")]
    assert history[0] == history[1] > 0


@pytest.mark.parametrize(
    "case, csv_text, extra, message",
    [
        (
            "missing column",
            "body,label\nhello there,pos\n",
            "",
            "column 'text' (data.text_column) not found; the file has: body, label",
        ),
        ("unknown label", None, "labels: [pos, neu]\n", "labels outside the spec's labels: 'neg' (rows"),
        ("one class", "text,label\n" + "".join(f"great day {i},pos\n" for i in range(10)), "", "single class ('pos')"),
        ("too few rows", "text,label\ngreat,pos\nawful,neg\n", "", "too few to hold out a validation split"),
        ("other encoding", "text,label\ncaf\xe9 great,pos\nawful,neg\n", "", "not valid utf-8"),
    ],
)
def test_bad_data_gives_one_line_cause_and_exit_2(tiny_model, tmp_path, case, csv_text, extra, message):
    data = tmp_path / "data" / "train.csv"
    if csv_text is None:
        write_csv(data, labelled_rows())
    else:
        data.parent.mkdir(parents=True)
        data.write_bytes(csv_text.encode("latin-1"))
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model, extra=extra))
    result = CliRunner().invoke(main, ["run", str(spec)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    error = [line for line in lines if line.startswith("error: ")]
    assert len(error) == 1 and message in error[0] and "train.csv" in error[0], result.output
    assert lines[lines.index(error[0]) + 1].startswith("hint: ")


def test_model_folder_without_weights(tiny_model, tiny_data, tmp_path):
    import shutil

    empty = tmp_path / "no-weights"
    shutil.copytree(tiny_model, empty)
    (empty / "model.safetensors").unlink()
    folder = tiny_data.parent.parent
    spec = write_spec(folder, tiny_spec_text(empty))
    result = CliRunner().invoke(main, ["run", str(spec)])
    assert result.exit_code == 2
    assert "has no weights" in result.output and "hint: " in result.output


def test_unreachable_hub_model_says_how_to_work_offline(tiny_data, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tiny_data.parent.parent
    spec = write_spec(folder, tiny_spec_text("no-such-org/no-such-model-xyz"))
    result = run_cli("run", str(spec), cwd=folder, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1, result.stderr[-2000:]
    assert "cannot load the tokenizer 'no-such-org/no-such-model-xyz' from the Hub" in result.stderr
    assert "HF_HUB_OFFLINE" in result.stderr and "local folder" in result.stderr
    assert "Traceback" not in result.stderr
