"""The action in matrices and monorepos, its phases in one process with a fake `runner` and the loopback GitHub:
names unique per spec within the repository, a baseline per matrix job, spec names inert, and the Hugging Face
token only where Jobs are started. The same flows under a real Actions runner: tests/act/test_act_matrix.py."""

import json
import os
import sys
from pathlib import Path

import pytest
from support.github_actions_fake import FakeActionsGitHub, zip_folder
from support.github_fake import FakeRunner, action_env, read_outputs

from runner.publish import action

pytestmark = pytest.mark.usefixtures("no_proxy")

EVIL = "q` @octocat <img src=x onerror=alert(1)> `"


def project(root: Path, name: str, specs=("model.yaml",)) -> Path:
    for spec in specs:
        (root / name / "specs").mkdir(parents=True, exist_ok=True)
        (root / name / "specs" / spec).write_text("model: tiny\n")
    return root / name


def job(tmp_path, github, folder: Path, temp: str, monkeypatch, **inputs) -> dict:
    """One matrix job: its own RUNNER_TEMP and outputs, run from its working-directory."""
    monkeypatch.chdir(folder)
    env = action_env(tmp_path, github.url, **inputs)
    env |= {"GITHUB_WORKSPACE": str(tmp_path / "repo"), "RUNNER_TEMP": str(tmp_path / temp),
            "GITHUB_OUTPUT": str(tmp_path / f"{temp}-output.txt"), "GITHUB_STEP_SUMMARY": str(tmp_path / f"{temp}.md")}
    return env


def test_a_monorepo_matrix_gives_each_project_its_comment_and_artifact(tmp_path, monkeypatch):
    """projA and projB both hold specs/model.yaml (working-directory: projA / projB): two comments, two artifacts."""
    names = []
    with FakeActionsGitHub() as github:
        for name in ("projA", "projB"):
            env = job(tmp_path, github, project(tmp_path / "repo", name), name, monkeypatch, spec="specs/model.yaml")
            assert action.run_action(env, run_cli=FakeRunner()) == 0
            names.append(read_outputs(tmp_path / f"{name}-output.txt")["artifact-name"])
        markers = [c["body"].splitlines()[0] for c in github.comments[7]]
    assert markers == ["<!-- runner:comment key=projA/specs/model.yaml -->",
                       "<!-- runner:comment key=projB/specs/model.yaml -->"]
    assert names == ["runner-train-projA-specs-model", "runner-train-projB-specs-model"]


def test_a_matrix_push_stores_a_baseline_per_job_and_the_pr_compares_each_spec_with_its_own(tmp_path, monkeypatch):
    """Push: a matrix of two jobs, one spec each, uploads runner-baseline-specs-a and -specs-b (one name each:
    GitHub refuses a second upload under one name). The pull request finds both in that push run."""
    repo = project(tmp_path, "repo", specs=("a.yaml", "b.yaml"))
    with FakeActionsGitHub() as github:
        artifacts = {}
        for spec, accuracy in (("a", 0.70), ("b", 0.60)):
            env = job(tmp_path, github, repo, f"push-{spec}", monkeypatch, spec=f"specs/{spec}.yaml", comment="false")
            env["GITHUB_EVENT_NAME"] = "push"
            assert action.run_action(env, run_cli=FakeRunner(accuracy=accuracy)) == 0
            name = read_outputs(tmp_path / f"push-{spec}-output.txt")["artifact-name"]
            artifacts[name] = zip_folder(tmp_path / f"push-{spec}" / "runner-runs")
        assert sorted(artifacts) == ["runner-baseline-specs-a", "runner-baseline-specs-b"]
        github.add_run("train.yml", "main", artifacts | {"runner-train-other": b"not a baseline"})

        env = job(tmp_path, github, repo, "pr", monkeypatch, spec="specs/*.yaml")
        (tmp_path / "event.json").write_text(json.dumps({"pull_request": {"number": 7, "base": {"ref": "main"}}}))
        env |= {"GITHUB_EVENT_NAME": "pull_request",
                "GITHUB_WORKFLOW_REF": "octo/classifier/.github/workflows/train.yml@refs/pull/7/merge"}
        runner = FakeRunner(accuracy=0.80)
        assert action.run_action(env, run_cli=runner) == 0
        bodies = {c["body"].splitlines()[0]: c["body"] for c in github.comments[7]}
    compared = {Path(c[1]).name: c[c.index("--compare") + 1] for c in runner.calls if "--compare" in c}
    base = {name: json.loads((Path(folder) / "metrics.json").read_text())["validation"]["accuracy"]
            for name, folder in compared.items()}
    assert base == {"specs-a": 0.70, "specs-b": 0.60}  # each its own record, from two artifacts
    for spec, delta in (("a", "+0.10"), ("b", "+0.20")):
        body = bodies[f"<!-- runner:comment key=specs/{spec}.yaml -->"]
        assert delta in body and f"Compared with the baseline of `specs/{spec}.yaml` from run 5000 on `main`" in body
        assert str(tmp_path) not in body  # no runner temporary path


def test_a_spec_file_name_is_inert_in_the_comment_and_summary(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "specs").mkdir(parents=True)
    name = f"{EVIL}.yaml"
    (repo / "specs" / name).write_text("model: tiny\n")
    with FakeActionsGitHub() as github:
        env = job(tmp_path, github, repo, "evil", monkeypatch, spec="specs/*.yaml")
        runner = FakeRunner(fail_run={f"specs/{name}"})  # the failure comment names the spec too
        assert action.run_action(env, run_cli=runner) == 2
        [comment] = github.comments[7]
    summary = (tmp_path / "evil.md").read_text()
    marker, shown = comment["body"].split("\n", 1)  # the hidden marker: an HTML comment that no ">" can close
    assert marker.startswith("<!-- runner:comment key=specs/q") and marker.count(">") == 1
    for body in (shown, summary):
        outside = body.replace(f"``specs/{EVIL}.yaml``", "")  # GitHub renders no HTML or mention in a code span
        assert "<img" not in outside and "@octocat" not in outside
        assert f"``specs/{EVIL}.yaml``" in body  # a code span whose fence no backtick inside can close


def test_the_gate_annotation_points_at_the_gate_line(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    (repo / "specs").mkdir(parents=True)
    spec = repo / "specs" / "g.yaml"
    spec.write_text("model: tiny\ngate:\n  metric: accuracy\n  min: 0.9\n")

    class GateFails(FakeRunner):
        def play(self, args, capture):
            rc, out = super().play(args, capture)
            if args[0] == "report":
                print("error: gate: accuracy 0.8400 is below gate.min 0.9", file=sys.stderr)
                return 1, out
            return rc, out

    class Captured(GateFails):
        def __call__(self, args, capture):
            self.calls.append(args)
            if args[0] == "report":
                _, out = super().play(args, capture)
                return 1, out, "error: gate: accuracy 0.8400 is below gate.min 0.9\n"
            return super().__call__(args, capture)

    with FakeActionsGitHub() as github:
        env = job(tmp_path, github, repo, "gate", monkeypatch, spec="specs/g.yaml", comment="false")
        import io
        from contextlib import redirect_stdout

        printed = io.StringIO()
        with redirect_stdout(printed):
            assert action.run_action(env, run_cli=Captured()) == 1
    [line] = [line for line in printed.getvalue().splitlines() if "quality gate" in line]
    assert line.startswith("::error file=specs/g.yaml,line=4,col=3,title=runner%3A quality gate (specs/g.yaml)::")


def test_compute_hf_jobs_needs_the_hf_token_input_and_only_train_holds_it(tmp_path, monkeypatch):
    """prepare learns only whether hf-token is set; the train step (given it by action.yml only with compute set)
    starts `runner run --on` with it; a local run never gets it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    dump = tmp_path / "dump.jsonl"
    (bin_dir / "runner").write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"open({str(dump)!r}, 'a').write(json.dumps({{'args': sys.argv[1:], "
        "'token': os.environ.get('HF_TOKEN')}) + '\\n')\nsys.exit(3)\n")
    (bin_dir / "runner").chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    repo = project(tmp_path, "repo")
    with FakeActionsGitHub() as github:
        env = job(tmp_path, github, repo, "jobs", monkeypatch, spec="specs/model.yaml", compute="hf-jobs:t4-small")
        del env["HF_TOKEN"]
        with pytest.raises(action.RunError, match="the hf-token input is not set"):
            action.prepare(env)
        action.prepare(env | {"INPUT_HF_TOKEN_GIVEN": "true"})
        action.train(env | {action.ACTION_INPUTS["hf-token"]: "hf_from_the_input"})
        local = job(tmp_path, github, repo, "local", monkeypatch, spec="specs/model.yaml")
        del local["HF_TOKEN"]
        action.prepare(local)
        action.train(local)  # action.yml gives no token to a local train step
    calls = [json.loads(line) for line in dump.read_text().splitlines()]
    assert [(c["args"][:1], "--on" in c["args"], c["token"]) for c in calls] == [
        (["run"], True, "hf_from_the_input"), (["run"], False, None)]
    assert "hf_from_the_input" not in os.environ.get("HF_TOKEN", "")
