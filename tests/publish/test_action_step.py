"""runner/publish/action.py without a runner: errors as annotations and comment lines, the artifact's
file list, outputs after an early failure, and the real `runner` CLI's errors read back."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from support.github_fake import FakeGitHub, actions_env, read_outputs

from runner.publish import action

SPEC_ERROR = """\
some training log line
error: specs/bad.yaml:11:3 train.learnig_rate: unknown key 'learnig_rate'
hint: did you mean 'learning_rate'?
error: specs/bad.yaml:23:3 train.seed: unknown key 'seed'
hint: allowed keys here: batch_size, epochs
"""

WORKFLOW = """\
jobs:
  train:
    steps:
      - uses: octo/runner@0123456789abcdef0123456789abcdef01234567 # v1
        with:
          spec: specs/*.yaml
          set: |
            seed=0
            train.seed=0
"""


def test_spec_errors_become_annotations_at_their_line_and_set_errors_at_the_workflow(tmp_path, monkeypatch):
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "train.yml").write_text(WORKFLOW)
    monkeypatch.chdir(tmp_path)
    env = {"GITHUB_WORKSPACE": str(tmp_path)}

    commands = action.annotations(SPEC_ERROR, "specs/bad.yaml", ["seed=0", "train.seed=0"], env)

    assert commands == [
        "::error file=specs/bad.yaml,line=11,col=3,title=runner%3A specs/bad.yaml::"
        "train.learnig_rate: unknown key 'learnig_rate'%0Ahint: did you mean 'learning_rate'?",
        # train.seed comes from the `set:` input: the spec's line 23 is not where the mistake is.
        "::error file=.github/workflows/train.yml,line=9,title=runner%3A set%3A train.seed=0::"
        "train.seed: unknown key 'seed'%0Ahint: allowed keys here: batch_size, epochs",
    ]


def test_set_error_of_a_value_and_a_spec_in_a_subfolder(tmp_path, monkeypatch):
    (tmp_path / "ml").mkdir()
    monkeypatch.chdir(tmp_path / "ml")  # working-directory: ml
    env = {
        "GITHUB_WORKSPACE": str(tmp_path),
        "GITHUB_WORKFLOW_REF": "octo/classifier/.github/workflows/x.yml@refs/heads/main",
    }
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "x.yml").write_text("with:\n  set: train.epochs=-1\n")
    stderr = (
        "error: --set train.epochs: -1 is out of range: must be > 0\nhint: Number of training epochs\n"
        "error: specs/a.yaml:4:1 data.train: file not found\n"
    )

    first, second = action.annotations(stderr, "specs/a.yaml", ["train.epochs=-1"], env)

    assert first.startswith(
        "::error file=.github/workflows/x.yml,line=2,title=runner%3A set%3A train.epochs=-1::--set train.epochs"
    )
    assert second.startswith("::error file=ml/specs/a.yaml,line=4,col=1,")


def test_failure_comment_shows_the_error_lines_without_secrets():
    stderr = SPEC_ERROR + "error: push: hf_SECRETtokenVALUE rejected\n"
    body = action.failure_body("specs/bad.yaml", "run", 2, stderr)
    assert body.startswith("### runner: `specs/bad.yaml` failed\n\n`runner run` failed with exit code 2:")
    assert (
        "```text\nerror: specs/bad.yaml:11:3 train.learnig_rate: unknown key 'learnig_rate'\nhint: did you mean" in body
    )
    assert "some training log line" not in body
    assert action.scrub(body, {"HF_TOKEN": "hf_SECRETtokenVALUE"}).count("***") == 1
    assert action.failure_body("s.yaml", "run", 1, "Killed\n").endswith("exit code 1; see the job log.")


@pytest.mark.parametrize("upload_model", [False, True])
def test_artifact_never_has_checkpoints_and_weights_only_when_asked(tmp_path, upload_model):
    """The patterns as upload-artifact applies them (@actions/glob, approximated with fnmatch)."""
    from fnmatch import fnmatch

    run = tmp_path / "run"
    files = [
        "metrics.json",
        "run.json",
        "report.md",
        "predictions/validation.jsonl",
        "model/model.safetensors",
        "model/tokenizer.json",
        "merged/model.safetensors",
        "checkpoints/checkpoint-8/model.safetensors",
        "checkpoints/checkpoint-8/optimizer.pt",
        "checkpoints/checkpoint-8/scheduler.pt",
        "checkpoints/checkpoint-8/rng_state.pth",
        "checkpoints/checkpoint-8/trainer_state.json",
        "onnx/model.onnx",
        "onnx/model_int8.onnx",
    ]
    [include, *excluded] = action.artifact_patterns(run, upload_model)
    assert include == str(run)
    kept = [
        f
        for f in files
        if not any(fnmatch(f"{run}/{f}", p[1:].replace("/**/", "/*")) or fnmatch(f"{run}/{f}", p[1:]) for p in excluded)
    ]
    if upload_model:
        assert kept == [
            "metrics.json",
            "run.json",
            "report.md",
            "predictions/validation.jsonl",
            "model/model.safetensors",
            "model/tokenizer.json",
            "merged/model.safetensors",
            "onnx/model.onnx",
            "onnx/model_int8.onnx",
        ]
    else:
        assert kept == ["metrics.json", "run.json", "report.md", "predictions/validation.jsonl"]


def test_early_failure_sets_no_run_dir_and_comments_the_error(tmp_path, monkeypatch):
    (tmp_path / "repo" / "specs").mkdir(parents=True)
    (tmp_path / "repo" / "specs" / "bad.yaml").write_text("x: 1\n")
    monkeypatch.chdir(tmp_path / "repo")

    def run_cli(args, capture):
        return 2, "", "error: specs/bad.yaml:1:1 x: unknown key 'x'\nhint: remove it\n"

    with FakeGitHub(login=None) as fake:
        env = actions_env(tmp_path, fake.url) | {
            "RUNNER_TEMP": str(tmp_path / "temp"),
            "HF_TOKEN": "hf_abcdefgh123",
            "INPUT_SPEC": "specs/bad.yaml",
            "GITHUB_WORKSPACE": str(tmp_path / "repo"),
        }
        assert action.run_action(env, run_cli=run_cli) == 2
        [comment] = fake.comments[7]

    outputs = read_outputs(tmp_path / "output.txt")
    assert outputs["run-dir"] == "" and outputs["artifact-path"] == "" and json.loads(outputs["metrics"]) == {}
    assert "error: specs/bad.yaml:1:1 x: unknown key 'x'\nhint: remove it" in comment["body"]


def test_real_cli_error_lines_are_read_back(tmp_path, monkeypatch, capfd):
    """run_runner_cli with the installed `runner`: stderr reaches the log and comes back for the annotations."""
    spec = tmp_path / "bad.yaml"
    spec.write_text("version: 1\nname: x\ndata:\n  train: missing.csv\nmodel:\n  name: m\ntrain:\n  epochs: 0\n")
    monkeypatch.setattr(sys, "executable", str(Path(sys.executable)))
    rc, out, err = action.run_runner_cli(["run", str(spec), "--dry-run"], False)
    assert rc == 2 and out == ""
    lines = action.error_lines(err)
    assert any(line.startswith(f"error: {spec}:") for line in lines) and any(
        line.startswith("hint: ") for line in lines
    )
    assert lines[0] in capfd.readouterr().err  # also in the log, as it came


def test_python_step_entry_point_is_runner_action(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "INPUT_SPEC": "nothing/*.yaml", "PYTHONPATH": str(Path(action.__file__).parents[2])}
    proc = subprocess.run(
        [sys.executable, "-m", "runner.publish.action"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert proc.returncode == 2
    assert "error: action: no spec file matches 'nothing/*.yaml'" in proc.stderr
    assert proc.stdout.startswith("::error title=runner::error: action: no spec file matches")


def test_an_error_the_action_prints_never_shows_a_token_it_quotes(capsys):
    """The action prints its errors itself (not through the CLI); the lines are redacted where they are made."""
    token = "hf_" + "Qx9" * 10
    assert action.main([f"phase-{token}"]) == 2
    out, err = capsys.readouterr()
    assert "unknown phase" in err and token not in out + err and "<redacted>" in err
