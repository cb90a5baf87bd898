"""One decision rule, named everywhere. With tuned thresholds, the headline, the metrics, the
confusion matrix, the per-class table, the gate, the paired comparison and the predictions files all
use the tuned rule, and the argmax figures sit beside them as `<name>_argmax`."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import FILLER, WORDS, make_texts, run_cli, tiny_spec_text, write_csv, write_spec

from runner.cli import main
from runner.spec.tasks import THRESHOLD_METRICS, task_of

LABELS = ["pos", "neg"]


def shifted(n_pos: int, n_neg: int, n_mixed: int, seed: int) -> list[dict]:
    """Rows with the words of one class, and `n_mixed` rows with two positive words and one negative word
    that are negatives: the shift a tuned threshold exists for. A model trained on clean rows leans them
    positive (or, undertrained, puts every row near its prior), so on rows like these the macro-F1 threshold
    for `neg` sits below 0.5 and decides some rows otherwise than argmax."""
    rng = random.Random(seed)
    rows = [{"text": t, "label": "pos"} for t in make_texts("pos", n_pos, rng)]
    rows += [{"text": t, "label": "neg"} for t in make_texts("neg", n_neg, rng)]
    for _ in range(n_mixed):
        words = rng.sample(FILLER, 4) + rng.sample(WORDS["pos"], 2) + rng.sample(WORDS["neg"], 1)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "label": "neg"})
    rng.shuffle(rows)
    return rows


@pytest.fixture(scope="module")
def tuned_run(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("decision-rule")
    write_csv(folder / "data" / "train.csv", shifted(120, 80, 0, 0))  # clean rows, more positives
    write_csv(folder / "data" / "validation.csv", shifted(10, 10, 30, 1))  # the floor: 10 rows of every class
    write_csv(folder / "data" / "test.csv", shifted(3, 10, 30, 3))
    text = tiny_spec_text(
        tiny_model, extra="labels: [pos, neg]\npredict: {tune_thresholds: true}\ngate: {min: 0.01}\n"
    ).replace("epochs: 1", "epochs: 2\n  precision: fp32")  # the same numbers on every CPU (auto: bf16 on some)
    text = text.replace("  train: data/train.csv\n", "  train: data/train.csv\n  validation_file: data/validation.csv\n"
                        "  test_file: data/test.csv\n")
    spec = write_spec(folder, text)
    # Rarely the model already puts every mixed row above 0.5 and the tuned threshold stays at 0.5, where the
    # test would prove nothing: the first seed whose rule decides some row otherwise than argmax is used.
    for seed in (7, 11, 13, 17, 19):
        run_dir = folder / f"run-{seed}"
        # a process of its own: a model trained in-process after other tests inherits their torch state (threads)
        result = run_cli("run", str(spec), "--output", str(run_dir), "--set", f"seed={seed}", cwd=folder)
        assert result.returncode == 0, result.stderr[-3000:]
        threshold = read(run_dir, "run.json")["results"]["thresholds"]["neg"]
        if any((r["probabilities"]["neg"] >= threshold) != (r["probabilities"]["neg"] > r["probabilities"]["pos"])
               for split in ("validation", "test") for r in predictions(run_dir, split)):
            break
    return run_dir, result.stdout + result.stderr


def read(run_dir, name):
    return json.loads((run_dir / name).read_text(encoding="utf-8"))


def predictions(run_dir, split):
    return [json.loads(line) for line in (run_dir / "predictions" / f"{split}.jsonl").read_text().splitlines()]


def test_headline_metrics_confusion_gate_and_predictions_use_one_rule(tuned_run, tmp_path):
    from runner.evaluate.metrics import single_label_metrics
    from runner.record.comparison import paired_delta
    from runner.record.summary import summary_json

    run_dir, output = tuned_run
    metrics, results = read(run_dir, "metrics.json"), read(run_dir, "run.json")["results"]
    threshold = results["thresholds"]["neg"]
    headline = metrics["headline"]
    assert headline["rule"].startswith("tuned threshold (neg when its probability is at least")
    assert headline["value"] == metrics["validation"][headline["name"]]
    moved = 0
    for split in ("validation", "test"):
        rows = predictions(run_dir, split)
        truth = np.array([LABELS.index(r["true_label"]) for r in rows])
        given = np.array([LABELS.index(r["label"]) for r in rows])
        probs = np.array([[r["probabilities"][n] for n in LABELS] for r in rows])
        assert (given == (probs[:, 1] >= threshold)).all()  # the files hold the tuned rule's decisions
        moved += int((given != probs.argmax(axis=1)).sum())
        from_files = single_label_metrics(probs, truth, 2, given)
        for name in ("accuracy", "f1_macro", "recall_macro"):
            assert metrics[split][name] == pytest.approx(from_files[name], abs=1e-6), (split, name)
        argmax = single_label_metrics(probs, truth, 2, probs.argmax(axis=1))
        assert metrics[split]["f1_macro_argmax"] == pytest.approx(argmax["f1_macro"], abs=1e-6)
        matrix = np.zeros((2, 2), dtype=int)
        np.add.at(matrix, (truth, given), 1)
        assert results["confusion_matrix"][split] == matrix.tolist()
        assert results["per_class"][split]["neg"]["recall"] == pytest.approx(
            matrix[1, 1] / max(matrix[1].sum(), 1), abs=1e-6
        )
    assert moved > 0  # the test means something: the tuned rule decided some rows otherwise than argmax
    summary = summary_json(run_dir)
    assert summary["gate"]["value"] == headline["value"] and summary["gate"]["passed"]
    import shutil

    copy = shutil.copytree(run_dir, tmp_path / "copy")  # the run itself is no baseline: a copy of it is one
    same = paired_delta(copy, run_dir, "validation", headline["name"])
    assert same["new"] == pytest.approx(headline["value"], abs=1e-6)
    assert f"argmax gives {headline['argmax_value']:.4f}" in output


def test_reports_name_the_rule(tuned_run):
    from runner.record.summary import summary_markdown

    run_dir, _ = tuned_run
    report = (run_dir / "report.md").read_text(encoding="utf-8")
    assert "(decision: tuned threshold (neg" in report
    assert "The run's rule, tuned threshold" in report and "(argmax)" in report
    assert "temperature and tuned thresholds applied" not in report
    assert "The final predictions, as `runner predict` gives them: no calibration; decision: tuned threshold" in report
    card = (run_dir / "model" / "README.md").read_text(encoding="utf-8")
    assert "(decision: tuned threshold" in card
    comment = summary_markdown(run_dir)
    assert "(validation, tuned threshold)" in comment.splitlines()[0]


def test_error_analysis_heading_says_nothing_was_applied_when_nothing_was():
    import pandas as pd

    from runner.evaluate import erroranalysis

    frame = pd.DataFrame({"text": ["a b", "c d"], "label": [0, 1], "__row__": [2, 3]})
    task = task_of("single_label_classification")
    analysis = erroranalysis.analyse(task, {"test": frame}, {"test": np.array([[1.0, 0], [0, 1.0]])}, LABELS, 0.5)
    assert analysis["applied"] == "no calibration; decision: argmax"
    analysis = erroranalysis.analyse(
        task, {"test": frame}, {"test": np.array([[1.0, 0], [0, 1.0]])}, LABELS, 0.5, {"neg": 0.3}, 1.5
    )
    assert analysis["applied"].startswith("temperature 1.500; decision: tuned threshold (neg")


def test_eval_on_new_data_uses_the_rule_with_argmax_beside(tuned_run, tmp_path):
    run_dir, _ = tuned_run
    write_csv(tmp_path / "new.csv", shifted(3, 10, 30, 3))
    result = CliRunner().invoke(main, ["eval", str(run_dir), "--data", str(tmp_path / "new.csv")])
    assert result.exit_code == 0, result.output
    evaluated = json.loads(result.stdout)
    test = read(run_dir, "metrics.json")["test"]
    for name in ("accuracy", "f1_macro"):  # the same rows as the test file: the same figures (padding aside)
        assert evaluated[name] == pytest.approx(test[name], abs=0.05)
        assert evaluated[f"{name}_argmax"] == pytest.approx(test[f"{name}_argmax"], abs=0.05)
    assert set(THRESHOLD_METRICS) & set(evaluated)
