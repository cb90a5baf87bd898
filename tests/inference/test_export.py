"""`runner export` (ONNX, int8, parity in run.json and the card) and `runner predict --backend onnx`
(no torch, no transformers) on the tiny model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import labelled_rows, run_cli, tiny_spec_text, write_csv, write_spec

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e .[onnx])")
pytest.importorskip("onnxscript", reason="onnxscript is not installed (pip install -e .[onnx])")

TEXTS = ["what a great happy sunny day", "an awful sad gloomy day", "the table and the chair"]


@pytest.fixture(scope="module")
def exported_run(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    write_csv(folder / "data" / "train.csv", labelled_rows(per_label=40))
    spec = write_spec(
        folder, tiny_spec_text(tiny_model, extra="labels: [neg, pos]\n").replace("epochs: 1", "epochs: 6")
    )
    assert run_cli("run", str(spec), cwd=folder).returncode == 0
    result = run_cli("export", str(folder / "run"), "--int8", "--min-agreement", "0.9")
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "run", result


def test_export_writes_models_tokenizer_and_parity(exported_run):
    run_dir, result = exported_run
    for name in ("model.onnx", "model_int8.onnx", "tokenizer.json", "config.json"):
        assert (run_dir / "onnx" / name).is_file(), name
    export = json.loads((run_dir / "run.json").read_text())["export"]
    fp32 = export["parity"]["models"]["model.onnx"]
    assert export["parity"]["rows"] == 16 and fp32["agreement"] == 1.0 and fp32["max_probability_difference"] < 1e-4
    assert export["parity"]["models"]["model_int8.onnx"]["agreement"] >= 0.9
    assert "labels agree" in (run_dir / "model" / "README.md").read_text()
    assert "model_int8.onnx" in result.stdout and "agree with PyTorch" in result.stdout

    from runner.publish.hub import pushable_files

    assert {"onnx/model.onnx", "onnx/model_int8.onnx", "onnx/tokenizer.json"} <= {
        name for name, _ in pushable_files(run_dir)
    }


def test_predict_onnx_matches_pytorch_without_torch(exported_run):
    run_dir, _ = exported_run
    code = (
        "import sys; from runner.cli import main\n"
        f"main(['predict', {str(run_dir)!r}, '--backend', 'onnx', *{TEXTS!r}], standalone_mode=False)\n"
        "print('LOADED', [m for m in ('torch', 'transformers') if m in sys.modules])\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "LOADED []" in result.stdout and "texts/s" in result.stderr
    onnx_rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    torch_run = run_cli("predict", str(run_dir), *TEXTS)
    torch_rows = [json.loads(line) for line in torch_run.stdout.splitlines() if line.startswith("{")]
    assert [r["label"] for r in onnx_rows] == [r["label"] for r in torch_rows]


def test_export_refuses_below_the_bound(exported_run, tmp_path, monkeypatch):
    from runner.cli import main
    from runner.evaluate.strategies import TaskStrategy

    low = {"agreement": 0.5, "max_probability_difference": 0.3}
    monkeypatch.setattr(TaskStrategy, "agreement", lambda *a, **k: low)
    out = tmp_path / "onnx"
    result = CliRunner().invoke(main, ["export", str(exported_run[0]), "-o", str(out)])
    assert result.exit_code == 1 and "50.00% agree" in result.output and "hint:" in result.output
    assert not out.exists()


def test_missing_package_names_the_pip_line():
    from runner.errors import RunError
    from runner.inference.ort import require

    with pytest.raises(RunError) as caught:
        require("no_such_package_for_onnx")
    assert "pip install" in caught.value.hint
