"""`runner export --int8` measures several quantisations and keeps the best; when int8 falls
short of --min-agreement the fp32 export is still written (warning, exit 0), unless --require-int8 (exit 1)."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner
from conftest import labelled_rows, run_cli, tiny_spec_text, write_csv, write_spec

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install -e .[onnx])")
pytest.importorskip("onnxscript", reason="onnxscript is not installed (pip install -e .[onnx])")


@pytest.fixture(scope="module")
def trained_run(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("int8")
    write_csv(folder / "data" / "train.csv", labelled_rows(per_label=40))
    text = tiny_spec_text(tiny_model, extra="labels: [neg, pos]\n").replace("epochs: 1", "epochs: 6")
    spec = write_spec(folder, text)
    assert run_cli("run", str(spec), cwd=folder).returncode == 0
    return folder / "run"


def int8_falls_short(monkeypatch):
    """Every int8 candidate agrees with PyTorch on half the labels (measured figures otherwise); fp32 is measured."""
    import runner.inference.export

    real = runner.inference.export.parity_scorer

    def scorer(*args, **kwargs):
        score = real(*args, **kwargs)
        return lambda path: score(path) if path.name == "model.onnx" else {**score(path), "agreement": 0.5}

    monkeypatch.setattr(runner.inference.export, "parity_scorer", scorer)


def invoke(*args):
    from runner.cli import main

    result = CliRunner().invoke(main, list(args))
    return result, result.output + (result.stderr if result.stderr_bytes is not None else "")


def test_int8_is_the_best_measured_quantisation(trained_run, tmp_path):
    out = tmp_path / "onnx"
    result, text = invoke("export", str(trained_run), "--int8", "--min-agreement", "0", "-o", str(out))
    assert result.exit_code == 0, text
    record = json.loads((trained_run / "run.json").read_text())["export"]
    candidates = record["int8"]["candidates"]
    assert len(candidates) == 4 and record["int8"]["kept"]
    chosen = candidates[record["int8"]["method"]]
    assert chosen["agreement"] == max(c["agreement"] for c in candidates.values())
    assert record["parity"]["models"]["model_int8.onnx"]["agreement"] == chosen["agreement"]
    assert (out / "model_int8.onnx").stat().st_size == chosen["bytes"]
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == [".runner"]  # the other candidates are gone
    for name in candidates:
        assert name in text


def test_int8_below_the_bound_keeps_the_fp32_export(trained_run, tmp_path, monkeypatch):
    int8_falls_short(monkeypatch)
    out = tmp_path / "onnx"
    result, text = invoke("export", str(trained_run), "--int8", "-o", str(out))
    assert result.exit_code == 0, text
    assert (out / "model.onnx").is_file() and not (out / "model_int8.onnx").exists()
    assert "warning: int8 left out: 50.00%" in text and "--require-int8" in text
    record = json.loads((trained_run / "run.json").read_text())["export"]
    assert list(record["parity"]["models"]) == ["model.onnx"] and record["int8"]["kept"] is False
    assert record["int8"]["figures"]["agreement"] == 0.5


def test_require_int8_refuses_and_leaves_the_earlier_export_alone(trained_run, tmp_path, monkeypatch):
    out = tmp_path / "onnx"
    result, text = invoke("export", str(trained_run), "--int8", "--min-agreement", "0", "-o", str(out))
    assert result.exit_code == 0, text
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    int8_falls_short(monkeypatch)
    result, text = invoke("export", str(trained_run), "--require-int8", "-o", str(out))
    assert result.exit_code == 1 and "50.00% agree" in text and "hint:" in text
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_down_projections_are_the_feed_forward_outputs(trained_run, tmp_path):
    import onnx

    from runner.inference.quantize import down_projections

    out = tmp_path / "onnx"
    shutil.rmtree(out, ignore_errors=True)
    result, text = invoke("export", str(trained_run), "-o", str(out))
    assert result.exit_code == 0, text
    model = onnx.load(str(out / "model.onnx"))
    weights = {init.name: tuple(init.dims) for init in model.graph.initializer}
    names = down_projections(out / "model.onnx")
    config = json.loads((out / "config.json").read_text())
    assert len(names) == config["num_hidden_layers"]
    for node in model.graph.node:
        if node.name in names:
            assert [weights[i] for i in node.input if i in weights][0] == (config["intermediate_size"],
                                                                            config["hidden_size"])
