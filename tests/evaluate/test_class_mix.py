"""Class-mix shift (#34): training with 3% positives, a test file with about 30%. The run warns with both
proportions, report.md explains what it means for calibration and tuned thresholds, run.json records the test;
a test file drawn like training says nothing."""

from __future__ import annotations

import json
import random
import re

from conftest import make_texts, run_cli, tiny_spec_text, write_csv, write_spec

from runner.data.datachecks import SHIFT_TV, class_mix


def rows(positives: int, negatives: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = [{"text": t, "label": "pos"} for t in make_texts("pos", positives, rng)]
    out += [{"text": t, "label": "neg"} for t in make_texts("neg", negatives, rng)]
    rng.shuffle(out)
    return out


def test_a_test_file_with_another_class_mix_is_warned_explained_and_recorded(tiny_model, tmp_path):
    write_csv(tmp_path / "data" / "train.csv", rows(12, 388, seed=1))  # 3% positive
    write_csv(tmp_path / "data" / "test.csv", rows(30, 70, seed=2))  # 30% positive
    text = tiny_spec_text(tiny_model).replace("  train: data/train.csv\n",
                                              "  train: data/train.csv\n  test_file: data/test.csv\n")
    spec = write_spec(tmp_path, text)
    result = run_cli("run", str(spec), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    [line] = [line for line in result.stderr.splitlines() if "class mix of test" in line]
    # training here is what is left after validation is held out (stratified): still about 3% positive
    assert re.search(r"pos 3\.\d% in training, 30\.0% in test", line) and "chi-square p < 0.001" in line, line
    assert "class mix of validation" not in result.stderr  # validation is drawn like training
    report = (tmp_path / "run" / "report.md").read_text(encoding="utf-8")
    assert "Class mix (share of rows)" in report and re.search(r"\| pos \| 3\.\d% \| 30\.0% \|", report)
    assert "Calibration and tuned thresholds are fitted on validation" in report
    checks = json.loads((tmp_path / "run" / "run.json").read_text())["results"]["data_checks"]
    test = checks["class_mix"]["test"]
    assert test["shift"] is True and test["proportions"]["pos"][1] == 0.3
    assert 0.025 < test["proportions"]["pos"][0] < 0.035 and 0.26 < test["total_variation"] < 0.28


def test_sampling_noise_is_not_a_shift():
    """A split of the same mix, small or large, is not flagged; a shift too small to matter on a big split is not
    either (both the chi-square test and the total-variation floor must say so)."""
    same = class_mix({"train": {"pos": 30, "neg": 970}, "test": {"pos": 2, "neg": 48}})
    assert same["test"]["shift"] is False
    tiny = class_mix({"train": {"pos": 30000, "neg": 970000}, "test": {"pos": 4000, "neg": 96000}})
    assert tiny["test"]["p_value"] < 0.001 and tiny["test"]["total_variation"] < SHIFT_TV
    assert tiny["test"]["shift"] is False
    assert class_mix({"train": {"pos": 0, "neg": 10}, "test": {}}) == {}
