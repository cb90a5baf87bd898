"""run.json's environment.torch_build: what torch reports, and the variant and index the GitHub Action chose
(RUNNER_TORCH_VARIANT, RUNNER_TORCH_INDEX), never a credential of the index nor a value the action does not write."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_cli, tiny_spec_text, write_spec

from runner.record.manifest import TORCH_INDEX_ENV, TORCH_VARIANT_ENV, published_index, torch_build

SECRET = "s3cr3tT0ken" + "Q7" * 10
REPORTED = {"version": str(torch.__version__), "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available()}
if torch.version.hip:
    REPORTED["hip"] = torch.version.hip


def trained(tmp_path, tiny_model, tiny_data, env) -> dict:
    spec = write_spec(tmp_path, tiny_spec_text(tiny_model))
    result = run_cli("run", str(spec), cwd=tmp_path, env={"OMP_NUM_THREADS": "1", **env})
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((tmp_path / "run" / "run.json").read_text(encoding="utf-8"))


def test_run_json_records_the_actions_torch_build_without_the_index_credentials(tmp_path, tiny_model, tiny_data):
    index = f"https://runner:{SECRET}@download.pytorch.org/whl/cpu?token={SECRET}#{SECRET}"
    manifest = trained(tmp_path, tiny_model, tiny_data, {TORCH_VARIANT_ENV: "cpu", TORCH_INDEX_ENV: index})
    assert manifest["environment"]["torch_build"] == {
        **REPORTED, "variant": "cpu", "index": "https://download.pytorch.org/whl/cpu"}
    assert manifest["environment"]["torch_build"]["version"] == manifest["environment"]["packages"]["torch"]
    files = [path for path in (tmp_path / "run").rglob("*") if path.is_file()]
    assert files and not [path for path in files if SECRET.encode() in path.read_bytes()]


def test_run_json_outside_the_action_records_only_what_torch_reports(tmp_path, tiny_model, tiny_data, monkeypatch):
    monkeypatch.delenv(TORCH_VARIANT_ENV, raising=False)  # run_cli passes this process's environment on
    monkeypatch.delenv(TORCH_INDEX_ENV, raising=False)
    manifest = trained(tmp_path, tiny_model, tiny_data, {})
    build = manifest["environment"]["torch_build"]
    assert build == REPORTED and not {"variant", "index"} & set(build)


@pytest.mark.parametrize(
    "variant, index, recorded",
    [
        ("cu126", "https://download.pytorch.org/whl/cu126", {"variant": "cu126",
                                                             "index": "https://download.pytorch.org/whl/cu126"}),
        ("pypi", "", {"variant": "pypi"}),  # pip's configured index: no index recorded
        (" rocm6.2\n", "HTTPS://Download.PyTorch.org/whl/rocm6.2", {"variant": "rocm6.2",
                                                                    "index": "https://download.pytorch.org/whl/rocm6.2"}),
        ("auto", "http://download.pytorch.org/whl/cpu", {}),  # unresolved variant, plain http
        ("CPU", "file:///etc/pip/index", {}),
        ("cu126; curl evil", "https://download.pytorch.org/whl/cu126\nhf_" + "A" * 30, {}),
        ("cu126\ncpu", "https://localhost:8443/simple", {}),
        ("rocm" + "6" * 40, "https://10.0.0.5/simple", {}),
        ("", "https://user:p%40ss@[::1]/simple", {}),
        ("xpu", "https://pypi.example.com/simple/ghp_" + "a" * 36 + "/", {"variant": "xpu"}),
        ("xpu", "https://pypi.example.com/simple/password=" + SECRET, {"variant": "xpu"}),
        ("xpu", "https://pypi.example.com/a@b/simple", {"variant": "xpu"}),
        ("xpu", "https://pypi.example.com:notaport/simple", {"variant": "xpu"}),
        ("xpu", "https://pypi.example.com/sim ple", {"variant": "xpu"}),
    ],
)
def test_torch_build_keeps_only_what_the_action_writes(variant, index, recorded):
    build = torch_build({TORCH_VARIANT_ENV: variant, TORCH_INDEX_ENV: index})
    assert build == {**REPORTED, **recorded}
    assert published_index(f"https://{SECRET}@pypi.example.com/simple") == "https://pypi.example.com/simple"
