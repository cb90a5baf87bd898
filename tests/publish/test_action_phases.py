"""The action's phases without a runner: which secret each `runner` command sees, untrusted specs
refused (or allowed by the input), and baselines looked up by spec."""

import json
import sys
from pathlib import Path

import pytest
from support.github_actions_fake import FakeActionsGitHub, zip_folder
from support.github_fake import FakeRunner, action_env, read_outputs

from runner.publish import action

pytestmark = pytest.mark.usefixtures("no_proxy")  # loopback servers, reached without a proxy

ENV_DUMP = """#!{python}
import json, os, sys
with open(os.environ["ENV_DUMP"], "a") as f:
    f.write(json.dumps({{"args": sys.argv[1:], "env": sorted(k for k in os.environ if k.endswith("_TOKEN"))}}) + "\\n")
"""


def test_runner_commands_see_no_github_token_and_hf_token_only_when_pushing(tmp_path, monkeypatch):
    """run_runner_cli with a `runner` that writes down the token variables it was given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "runner").write_text(ENV_DUMP.format(python=sys.executable))
    (bin_dir / "runner").chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    for name in ("GITHUB_TOKEN", "GH_TOKEN", "ACTIONS_RUNTIME_TOKEN", "ACTIONS_ID_TOKEN_REQUEST_TOKEN", "HF_TOKEN"):
        monkeypatch.setenv(name, "secret-value-123")
    monkeypatch.setenv("ENV_DUMP", str(tmp_path / "dump.jsonl"))

    action.run_runner_cli(["run", "spec.yaml"], False)  # trusted: a private model may need HF_TOKEN
    action.run_runner_cli(["run", "spec.yaml"], False, hf_token=False)  # untrusted
    action.run_runner_cli(["push", "run"], False, hf_token=False)
    monkeypatch.delenv("HF_TOKEN")
    action.run_runner_cli(["push", "run"], False, extra_env={"HF_TOKEN": "from-the-input"})

    seen = [json.loads(line)["env"] for line in (tmp_path / "dump.jsonl").read_text().splitlines()]
    assert seen == [["HF_TOKEN"], [], ["HF_TOKEN"], ["HF_TOKEN"]]


def fork_event(workspace: Path) -> dict:
    event = workspace / "fork-event.json"
    event.write_text(
        json.dumps(
            {
                "pull_request": {
                    "number": 7,
                    "head": {"repo": {"full_name": "mallory/classifier"}},
                    "base": {"repo": {"full_name": "octo/classifier"}},
                }
            }
        )
    )
    return {"GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(event)}


def test_fork_spec_with_remote_code_is_refused_unless_allowed(workspace, fake, capsys):
    spec = workspace / "repo" / "specs" / "imdb.yaml"
    spec.write_text("model:\n  name: bert-base-uncased\n  trust_remote_code: true\n")
    env = action_env(workspace, fake.url, spec="specs/*.yaml") | fork_event(workspace)
    env["GITHUB_WORKSPACE"] = str(workspace / "repo")
    runner = FakeRunner()

    assert action.run_action(env, run_cli=runner) == 2

    assert [c[:2] for c in runner.calls] == [["run", "specs/sst2.yaml"], ["report", runner.calls[1][1]]]
    out = capsys.readouterr().out
    assert "::error file=specs/imdb.yaml,line=3,col=22,title=runner%3A untrusted spec specs/imdb.yaml::" in out
    bodies = {c["body"].splitlines()[0]: c["body"] for c in fake.comments[7]}
    refused = bodies["<!-- runner:comment key=specs/imdb.yaml -->"]
    assert "### runner: `specs/imdb.yaml` not run" in refused and "line 3: model.trust_remote_code" in refused
    # Not in the index of the runs: a refused spec leaves no baseline record.
    index = json.loads((workspace / "temp" / "runner-runs" / "runner-specs.json").read_text())
    assert index["specs"] == {"specs/sst2.yaml": "specs-sst2"}

    env[action.ACTION_INPUTS["allow-untrusted-code"]] = "true"
    env["RUNNER_TEMP"] = str(workspace / "temp2")  # the next job
    runner = FakeRunner()
    assert action.run_action(env, run_cli=runner) == 0
    assert [c[1] for c in runner.calls if c[0] == "run"] == ["specs/imdb.yaml", "specs/sst2.yaml"]


def test_push_gets_the_hf_token_input_and_the_phases_chain_through_the_state(workspace, fake):
    env = action_env(workspace, fake.url, spec="specs/sst2.yaml", push="true", comment="false")
    env.pop("HF_TOKEN")
    env[action.ACTION_INPUTS["hf-token"]] = "hf_from_the_input"
    runner = FakeRunner()
    action.prepare(env)
    action.train(env, runner)
    assert [c[0] for c in runner.calls] == ["run", "report"]
    action.push(env, runner)
    assert action.publish(env) == 0
    assert [c[0] for c in runner.calls] == ["run", "report", "push", "report"]
    assert read_outputs(workspace / "output.txt")["model-url"] == "https://huggingface.co/octo/sst2"


def test_a_phase_without_prepare_says_so(tmp_path, capsys):
    env = {"RUNNER_TEMP": str(tmp_path)}
    with pytest.raises(action.RunError, match="prepare step left no state"):
        action.train(env)
    assert action.main(["nonsense"]) == 2
    assert "unknown phase 'nonsense'" in capsys.readouterr().err


def test_baseline_auto_compares_each_spec_with_its_own_record(workspace):
    """The whole chain in one process: a base-branch run's folder of runs (one spec) served as the
    artifact of its push run; a pull request with two specs; a `baseline/` committed in it."""
    with FakeActionsGitHub() as github:
        base_env = action_env(workspace, github.url, spec="specs/sst2.yaml", comment="false")
        base_env |= {"GITHUB_EVENT_NAME": "push", "RUNNER_TEMP": str(workspace / "base-temp")}
        base_env["GITHUB_WORKSPACE"] = str(workspace / "repo")
        assert action.run_action(base_env, run_cli=FakeRunner(accuracy=0.80)) == 0
        github.add_run("train.yml", "main", {"runner-baseline": zip_folder(workspace / "base-temp" / "runner-runs")})

        planted = workspace / "repo" / "baseline" / "specs-sst2"
        planted.mkdir(parents=True)
        (planted / "metrics.json").write_text(json.dumps({"validation": {"accuracy": 0.10}}))
        env = action_env(workspace, github.url, spec="specs/*.yaml")
        event = {"pull_request": {"number": 7, "base": {"ref": "main"}}}
        (workspace / "event.json").write_text(json.dumps(event))
        env |= {"GITHUB_EVENT_NAME": "pull_request", "GITHUB_WORKSPACE": str(workspace / "repo")}
        env["GITHUB_WORKFLOW_REF"] = "octo/classifier/.github/workflows/train.yml@refs/pull/7/merge"
        runner = FakeRunner(accuracy=0.84)
        assert action.run_action(env, run_cli=runner) == 0
        bodies = {c["body"].splitlines()[0]: c["body"] for c in github.comments[7]}

    reports = {c[1].rsplit("/", 1)[1]: c[4:] for c in runner.calls if c[0] == "report"}
    fetched = (workspace / "temp" / "runner-baseline" / "0" / "specs-sst2").resolve()
    named = "specs/sst2.yaml from run 5000 on main, commit 0000000"  # never the runner's temporary folder
    assert reports == {"specs-imdb": [], "specs-sst2": ["--compare", str(fetched), "--compare-name", named]}
    sst2, imdb = (
        bodies["<!-- runner:comment key=specs/sst2.yaml -->"],
        bodies["<!-- runner:comment key=specs/imdb.yaml -->"],
    )
    assert "| validation accuracy | 0.84 | +0.04 |" in sst2  # against 0.80, not the planted 0.10
    assert "Compared with the baseline of `specs/sst2.yaml` from run 5000 on `main`" in sst2
    assert "No baseline for this spec" in imdb and "+0." not in imdb


def test_a_train_step_that_died_is_reported_as_such(workspace, fake):
    env = action_env(workspace, fake.url, spec="specs/sst2.yaml")
    action.prepare(env)  # then the train step is killed before it writes anything
    assert action.publish(env) == 1
    [comment] = fake.comments[7]
    assert "### runner: `specs/sst2.yaml` failed\n\nThe train step did not finish; see the job log." in comment["body"]
