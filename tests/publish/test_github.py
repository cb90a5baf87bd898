"""runner.publish.github against a loopback server playing the GitHub REST API."""

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from support.github_fake import (
    REPO,
    TOKEN,
    FakeGitHub,
    FakeRunner,
    action_env,
    actions_env,
    assert_no_token,
    read_outputs,
)

from runner.errors import RunError, SpecError
from runner.publish import action, github

pytestmark = pytest.mark.usefixtures("no_proxy")  # loopback servers, reached without a proxy

# --- comment_on_pull_request -----------------------------------------------------------------


def test_first_run_creates_the_comment_second_run_updates_it(tmp_path, fake, capsys):
    env = actions_env(tmp_path, fake.url)

    first = github.comment_on_pull_request("accuracy 0.81", "specs/sst2.yaml", env)
    second = github.comment_on_pull_request("accuracy 0.84", "specs/sst2.yaml", env)

    assert first["action"] == "created" and second["action"] == "updated"
    assert first["comment_id"] == second["comment_id"]
    assert first["url"].endswith(f"#issuecomment-{first['comment_id']}")
    [comment] = fake.comments[7]
    assert comment["body"] == "<!-- runner:comment key=specs/sst2.yaml -->\naccuracy 0.84"
    assert len(fake.calls("POST")) == 1 and len(fake.calls("PATCH")) == 1
    assert all(auth == f"Bearer {TOKEN}" for _, _, auth in fake.requests)
    assert_no_token(tmp_path, *capsys.readouterr())


def test_each_spec_key_gets_its_own_comment(tmp_path, fake):
    env = actions_env(tmp_path, fake.url)
    github.comment_on_pull_request("a", "specs/a.yaml", env)
    github.comment_on_pull_request("b", "specs/a.yaml.bak", env)
    assert github.comment_on_pull_request("a2", "specs/a.yaml", env)["action"] == "updated"
    assert [c["body"].splitlines()[-1] for c in fake.comments[7]] == ["a2", "b"]


def test_pages_through_other_comments_to_find_ours(tmp_path, fake):
    marker = github.comment_marker("specs/sst2.yaml")
    for i in range(100):
        if i % 3 == 0:
            fake.add(7, f"{marker}\nsomeone quoting us", "a-human")  # marker, wrong author
        else:
            fake.add(7, f"looks good {i}", "runner-bot")  # our author, no marker
    ours = fake.add(7, f"{marker}\nold metrics", "runner-bot")

    result = github.comment_on_pull_request("new metrics", "specs/sst2.yaml", actions_env(tmp_path, fake.url))

    assert result == {"action": "updated", "url": ours["html_url"], "comment_id": ours["id"]}
    pages = [parse_qs(urlsplit(path).query)["page"] for path in fake.calls("GET") if "comments" in path]
    assert pages == [["1"], ["2"]]
    assert fake.calls("PATCH") == [f"/repos/{REPO}/issues/comments/{ours['id']}"]
    assert not fake.calls("POST")
    assert fake.comments[7][0]["body"].endswith("someone quoting us")


def test_never_follows_a_pagination_link_to_another_host(tmp_path, fake):
    for i in range(101):
        fake.add(7, f"comment {i}", "a-human")
    fake.link_base = "http://evil.example"
    with pytest.raises(RunError, match="another host"):
        github.comment_on_pull_request("m", "s.yaml", actions_env(tmp_path, fake.url))
    assert len(fake.calls("GET")) == 2  # /user and page 1, nothing sent to evil.example


def test_actions_token_is_recognised_as_github_actions_bot(tmp_path, fake):
    fake.login = None  # GET /user -> 403
    ours = fake.add(7, f"{github.comment_marker('s.yaml')}\nold", github.ACTIONS_BOT)

    result = github.comment_on_pull_request("new", "s.yaml", actions_env(tmp_path, fake.url))

    assert result["action"] == "updated" and result["comment_id"] == ours["id"]


def test_fork_pull_request_falls_back_to_the_step_summary(tmp_path, fake, capsys):
    fake.fail["POST"] = 403
    env = actions_env(tmp_path, fake.url)

    result = github.comment_on_pull_request("| accuracy | 0.81 |", "specs/sst2.yaml", env)

    assert result == {"action": "summary-only", "url": None, "comment_id": None}
    assert "| accuracy | 0.81 |" in Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    out, err = capsys.readouterr()
    [line] = [line for line in (out + err).splitlines() if line]
    assert line.startswith("::notice::") and "403" in line and "job summary" in line
    assert_no_token(tmp_path, out, err)


def test_not_a_pull_request_writes_the_summary_without_calling_the_api(tmp_path, fake, capsys):
    env = actions_env(tmp_path, fake.url, event={"ref": "refs/heads/main"})
    result = github.comment_on_pull_request("metrics", "s.yaml", env)
    assert result["action"] == "summary-only"
    assert fake.requests == []
    assert "metrics" in Path(env["GITHUB_STEP_SUMMARY"]).read_text()
    assert "not a pull request" in capsys.readouterr().err


def test_issue_comment_event_uses_the_issue_number(tmp_path, fake):
    env = actions_env(tmp_path, fake.url, event={"issue": {"number": 12, "pull_request": {}}})
    assert github.comment_on_pull_request("m", "s.yaml", env)["action"] == "created"
    assert list(fake.comments) == [12]


def test_server_error_is_a_run_error_without_the_token(tmp_path, fake):
    fake.fail["POST"] = 502
    with pytest.raises(RunError) as excinfo:
        github.comment_on_pull_request("m", "s.yaml", actions_env(tmp_path, fake.url))
    text = "\n".join(excinfo.value.lines())
    assert "502" in text and excinfo.value.hint and TOKEN not in text


def test_unreachable_api_is_a_run_error_with_a_hint(tmp_path):
    with FakeGitHub() as gone:
        url = gone.url  # a port nobody listens on once the server is closed
    with pytest.raises(RunError, match="cannot reach the GitHub API") as excinfo:
        github.comment_on_pull_request("m", "s.yaml", actions_env(tmp_path, url))
    assert "GITHUB_API_URL" in excinfo.value.hint


# --- workflow commands and files ---------------------------------------------------------------


def test_set_outputs_single_and_multiline(tmp_path):
    env = {"GITHUB_OUTPUT": str(tmp_path / "out")}
    github.set_outputs({"run-dir": "runs/a", "notes": "line 1\nline 2", "metrics": {"a": 1}, "none": None}, env)
    text = (tmp_path / "out").read_text()
    assert "notes<<ghadelimiter_" in text
    assert read_outputs(tmp_path / "out") == {
        "run-dir": "runs/a",
        "notes": "line 1\nline 2",
        "metrics": '{"a": 1}',
        "none": "",
    }


def test_mask_and_step_summary(tmp_path, capsys):
    github.mask("hf_abc\nsecond")
    assert capsys.readouterr().out == "::add-mask::hf_abc\n::add-mask::second\n"
    assert github.write_step_summary("x", {}) is False
    github.write_step_summary("one", {"GITHUB_STEP_SUMMARY": str(tmp_path / "s")})
    github.write_step_summary("two", {"GITHUB_STEP_SUMMARY": str(tmp_path / "s")})
    assert (tmp_path / "s").read_text() == "one\n\ntwo\n\n"


# --- run_action with a fake `runner` -----------------------------------------------------------


def test_run_action_trains_reports_comments_and_sets_outputs(workspace, fake, capsys):
    env = action_env(workspace, fake.url, spec="specs/sst2.yaml", set="train.epochs=1\n\nseed=3\n")
    runner = FakeRunner()

    assert action.run_action(env, run_cli=runner) == 0

    run_dir = workspace / "temp" / "runner-runs" / "specs-sst2"
    assert runner.calls == [
        ["run", "specs/sst2.yaml", "--set", "train.epochs=1", "--set", "seed=3", "--output", str(run_dir)],
        ["report", str(run_dir), "--format", "markdown"],
    ]
    outputs = read_outputs(workspace / "output.txt")
    assert set(outputs) == set(action.ACTION_OUTPUTS)
    assert outputs["run-dir"] == str(run_dir)
    assert json.loads(outputs["metrics"]) == {
        "specs/sst2.yaml": {"split": "validation", "name": "accuracy", "value": 0.84}
    }
    assert outputs["model-url"] == ""
    # The folder of runs, with its index (runner-specs.json): the record a later run compares with.
    assert outputs["artifact-path"] == "\n".join(action.artifact_patterns(run_dir.parent, upload_model=False))
    assert json.loads((run_dir.parent / "runner-specs.json").read_text())["specs"] == {"specs/sst2.yaml": "specs-sst2"}
    assert f"!{run_dir.parent}/**/checkpoints/**" in outputs["artifact-path"].splitlines()
    assert f"!{run_dir.parent}/**/model/**" in outputs["artifact-path"].splitlines()
    assert outputs["artifact-name"].startswith("runner-train-specs-sst2-set-")  # set: a digest of its lines
    summary = (workspace / "summary.md").read_text()
    assert summary.startswith("### runner: specs-sst2\n") and "| validation accuracy | 0.84 |" in summary
    assert "spec `specs/sst2.yaml`" in summary
    assert "https://github.com/octo/classifier/actions/runs/99" in summary
    [comment] = fake.comments[7]
    # one comment per spec and `set` lines (a matrix over `set` values of one spec gives each its own)
    key = action.comment_key("specs/sst2.yaml", ["train.epochs=1", "seed=3"])
    assert key.startswith("specs/sst2.yaml set ") and key != action.comment_key("specs/sst2.yaml", ["seed=4"])
    assert comment["body"].startswith(github.comment_marker(key))
    assert "| validation accuracy | 0.84 |" in comment["body"]
    out, err = capsys.readouterr()
    assert "::add-mask::hf_secret_x" in out
    assert_no_token(workspace, out, err)

    # A second push to the pull request updates the same comment.
    runner2 = FakeRunner(accuracy=0.9)
    env["RUNNER_TEMP"] = str(workspace / "temp2")
    assert action.run_action(env, run_cli=runner2) == 0
    [comment] = fake.comments[7]
    assert "| validation accuracy | 0.90 |" in comment["body"]


def test_run_action_glob_push_tag_and_baseline(workspace, fake):
    baseline = workspace / "baseline.json"
    baseline.write_text(json.dumps({"validation": {"accuracy": 0.80}}))
    env = action_env(
        workspace,
        fake.url,
        spec="specs/*.yaml",
        push="true",
        tag="v1.2.0",
        base_metrics=str(baseline),
        upload_model="true",
        comment="false",
    )
    runner = FakeRunner()

    assert action.run_action(env, run_cli=runner) == 0

    root = workspace / "temp" / "runner-runs"
    # Trained and reported without a Hugging Face token; then pushed (its own step), reported again with the URL.
    assert [c[:2] for c in runner.calls] == [
        ["run", "specs/imdb.yaml"],
        ["report", str(root / "specs-imdb")],
        ["run", "specs/sst2.yaml"],
        ["report", str(root / "specs-sst2")],
        ["push", str(root / "specs-imdb")],
        ["report", str(root / "specs-imdb")],
        ["push", str(root / "specs-sst2")],
        ["report", str(root / "specs-sst2")],
    ]
    assert runner.calls[4] == ["push", str(root / "specs-imdb"), "--tag", "v1.2.0"]
    assert runner.calls[1][-4:] == runner.calls[5][-4:] == ["--compare", str(baseline), "--compare-name", str(baseline)]
    outputs = read_outputs(workspace / "output.txt")
    assert outputs["run-dir"] == str(root)
    assert outputs["artifact-path"].splitlines()[0] == str(root)  # upload-model: true
    assert (
        f"!{root}/**/model/**" not in outputs["artifact-path"]
        and f"!{root}/**/checkpoints/**" in outputs["artifact-path"]
    )
    assert outputs["model-url"] == "https://huggingface.co/octo/sst2\nhttps://huggingface.co/octo/sst2"
    assert set(json.loads(outputs["metrics"])) == {"specs/imdb.yaml", "specs/sst2.yaml"}
    assert "0.84 +0.04" in (workspace / "summary.md").read_text().replace(" |", "")
    assert fake.requests == []  # comment: false


def test_run_action_failed_spec_is_reported_and_the_others_still_run(workspace, fake):
    env = action_env(workspace, fake.url, spec="specs/*.yaml")
    runner = FakeRunner(fail_run={"specs/imdb.yaml"})

    assert action.run_action(env, run_cli=runner) == 2

    assert [c[0] for c in runner.calls] == ["run", "run", "report"]
    bodies = {c["body"].splitlines()[0]: c["body"] for c in fake.comments[7]}
    assert "`runner run` failed with exit code 2" in bodies[github.comment_marker("specs/imdb.yaml")]
    assert "0.84" in bodies[github.comment_marker("specs/sst2.yaml")]
    outputs = read_outputs(workspace / "output.txt")
    assert list(json.loads(outputs["metrics"])) == ["specs/sst2.yaml"]


def test_run_action_on_a_fork_keeps_the_summary_and_succeeds(workspace, fake, capsys):
    fake.fail["POST"] = 403
    env = action_env(workspace, fake.url, spec="specs/sst2.yaml")

    assert action.run_action(env, run_cli=FakeRunner()) == 0

    summary = (workspace / "summary.md").read_text()
    assert summary.count("### runner: specs-sst2") == 1
    out, err = capsys.readouterr()
    assert "::notice::" in err and "403" in err
    assert_no_token(workspace, out, err)


def test_main_prints_the_error_and_returns_its_exit_code(workspace, monkeypatch, capsys):
    for name, value in action_env(workspace, "http://127.0.0.1:9", spec="missing.yaml").items():
        monkeypatch.setenv(name, value)
    assert action.main() == 2
    err = capsys.readouterr().err
    assert "error: action: no spec file matches 'missing.yaml'" in err and "hint:" in err


def test_run_action_with_the_real_report_command(workspace, fake):
    """Only `runner run` is faked: `runner report` is the installed console script."""
    baseline = workspace / "base"
    (baseline / "specs-sst2").mkdir(parents=True)
    (baseline / "specs-sst2" / "metrics.json").write_text(
        json.dumps({"validation": {"accuracy": 0.80, "f1_macro": 0.8}})
    )
    fake_run = FakeRunner()

    def run_cli(args, capture):
        return fake_run(args, capture) if args[0] == "run" else action.run_runner_cli(args, capture)

    env = action_env(workspace, fake.url, spec="specs/*.yaml", base_metrics=str(baseline))
    assert action.run_action(env, run_cli=run_cli) == 0

    bodies = {c["body"].splitlines()[0]: c["body"] for c in fake.comments[7]}
    sst2 = bodies[github.comment_marker("specs/sst2.yaml")]
    assert "### runner: specs-sst2" in sst2 and "+0.0400" in sst2
    imdb = bodies[github.comment_marker("specs/imdb.yaml")]
    assert "### runner: specs-imdb" in imdb and "+0.0" not in imdb
    assert f"No baseline for this spec: nothing for it in `{baseline}`." in imdb  # never sst2's


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"spec": "nothing/*.yaml"}, "no spec file matches"),
        ({"spec": "specs/sst2.yaml", "set": "epochs"}, "is not key=value"),
        ({"spec": "specs/sst2.yaml", "push": "maybe"}, "must be true or false"),
    ],
)
def test_run_action_bad_inputs_are_spec_errors(workspace, inputs, message):
    runner = FakeRunner()
    with pytest.raises(SpecError, match=message) as excinfo:
        action.run_action(action_env(workspace, "http://127.0.0.1:9", **inputs), run_cli=runner)
    assert excinfo.value.hint
    assert runner.calls == []
