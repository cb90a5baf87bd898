"""Whole flows with the real CLI on the tiny model: run then reproduce, run with `hub.push: true`
against the local Hub server, and the GitHub Action's step run locally."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, labelled_rows, run_cli, tiny_spec_text, write_csv, write_spec
from support.hub_server import TEST_TOKEN


def test_run_then_reproduce_gives_the_same_metrics(tiny_model, tiny_data):
    folder = tiny_data.parent.parent
    spec = write_spec(folder, tiny_spec_text(tiny_model))
    assert run_cli("run", str(spec), cwd=folder).returncode == 0
    result = run_cli("reproduce", str(folder / "run"), cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "metrics match" in result.stdout
    original = json.loads((folder / "run" / "metrics.json").read_text())
    repeated = json.loads((folder / "run-reproduce" / "metrics.json").read_text())
    assert original["validation"] == repeated["validation"]


def test_run_pushes_to_the_hub_when_the_spec_says_so(tiny_model, tiny_data, fake_hub):
    folder = tiny_data.parent.parent
    extra = "hub:\n  repo_id: tester/tiny-e2e\n  push: true\n  tag: v0.1.0\n"
    spec = write_spec(folder, tiny_spec_text(tiny_model, extra=extra))
    result = run_cli("run", str(spec), cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    files = fake_hub.files("tester/tiny-e2e")
    assert {"config.json", "model.safetensors", "README.md", "metrics.json", "run.json", "spec.yaml"} <= set(files)
    assert not any(name.startswith("checkpoints/") or "optimizer" in name for name in files)
    assert files["model.safetensors"] == (folder / "run" / "model" / "model.safetensors").read_bytes()
    assert "v0.1.0" in fake_hub.repo("tester/tiny-e2e").tags
    manifest = json.loads((folder / "run" / "run.json").read_text())
    assert manifest["hub"]["repo_id"] == "tester/tiny-e2e" and manifest["hub"]["commit"]
    written = [p for p in folder.rglob("*") if p.is_file()]
    for path in written:
        assert TEST_TOKEN.encode() not in path.read_bytes(), path
    assert TEST_TOKEN not in result.stdout + result.stderr


def test_action_step_runs_locally(tiny_model, tmp_path):
    """The Python step of action.yml (`python -m runner.publish.action`), with the files GitHub provides."""
    specs = tmp_path / "specs"
    write_csv(specs / "data" / "train.csv", labelled_rows())
    write_spec(specs, tiny_spec_text(tiny_model), name="tiny.yaml")
    output, summary, event = tmp_path / "output.txt", tmp_path / "summary.md", tmp_path / "event.json"
    event.write_text(json.dumps({"push": {}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
    env.update(
        {
            "INPUT_SPEC": "specs/*.yaml",
            "INPUT_COMMENT": "true",
            "INPUT_PUSH": "false",
            "INPUT_SET": "train.epochs=1",
            "GITHUB_OUTPUT": str(output),
            "GITHUB_STEP_SUMMARY": str(summary),
            "GITHUB_EVENT_PATH": str(event),
            "GITHUB_EVENT_NAME": "push",
            "GITHUB_REPOSITORY": "owner/repo",
            "GITHUB_API_URL": "http://127.0.0.1:9",
            "GITHUB_TOKEN": "ghs_FAKEgithubtoken0987654321",
            "RUNNER_TEMP": str(tmp_path / "temp"),
            "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
        }
    )
    result = subprocess.run(
        [sys.executable, "-m", "runner.publish.action"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    outputs = output.read_text()
    assert "run-dir" in outputs and "metrics" in outputs
    run_dir = Path(next(line.split("=", 1)[1] for line in outputs.splitlines() if line.startswith("run-dir=")))
    assert (run_dir / "metrics.json").exists() and (run_dir / "report.md").exists()
    text = summary.read_text()
    assert "f1_macro" in text and "| accuracy" in text
    for path in [output, summary, *run_dir.rglob("*")]:
        if path.is_file():
            assert b"ghs_FAKEgithubtoken0987654321" not in path.read_bytes(), path
    assert "ghs_FAKEgithubtoken0987654321" not in result.stdout + result.stderr


def test_readme_quickstart_commands_are_the_ci_commands():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert 'pip install torch==2.13.0 ".[test]"' in readme and 'pip install torch==2.13.0 ".[test]"' in ci
    assert "python -m pytest" in readme and "\npython -m pytest\n" in ci  # the README's test command, as is
    assert ci.strip().endswith(".ci/smoke.sh")  # then the clean-install smoke set
    assert "runner run examples/emotions.yaml" in readme and (ROOT / "examples" / "emotions.yaml").exists()
