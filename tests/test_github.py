"""runner.publish.github against a loopback server playing the GitHub REST API."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from runner.errors import RunError, SpecError
from runner.publish import action, github

TOKEN = "ghs_secretTOKENvalue0123456789"
REPO = "octo/classifier"


class FakeGitHub:
    """Issue comments on one repository; records every request."""

    def __init__(self, login="runner-bot"):
        self.login = login  # None: /user answers 403, like the Actions token
        self.comments: dict[int, list[dict]] = {}
        self.requests: list[tuple[str, str, str]] = []
        self.fail: dict[str, int] = {}  # method -> status to answer with
        self.next_id = 1000
        self.link_base = None  # where pagination links point; None: this server
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def add(self, number, body, login):
        comment = {
            "id": self.next_id,
            "body": body,
            "user": {"login": login},
            "html_url": f"https://github.com/{REPO}/pull/{number}#issuecomment-{self.next_id}",
        }
        self.next_id += 1
        self.comments.setdefault(number, []).append(comment)
        return comment

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, data, headers=()):
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in headers:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            def _route(self, method):
                fake.requests.append((method, self.path, self.headers.get("Authorization", "")))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._send(401, {"message": "Bad credentials"})
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length)) if length else None
                url = urlsplit(self.path)
                parts = url.path.strip("/").split("/")
                if method in fake.fail:
                    return self._send(fake.fail[method], {"message": "Resource not accessible by integration"})
                if url.path == "/user":
                    if fake.login is None:
                        return self._send(403, {"message": "Resource not accessible by integration"})
                    return self._send(200, {"login": fake.login})
                if parts[:3] == ["repos", *REPO.split("/")] and parts[3:4] == ["issues"]:
                    if len(parts) == 6 and parts[5] == "comments":
                        number = int(parts[4])
                        if method == "GET":
                            query = parse_qs(url.query)
                            per_page, page = int(query["per_page"][0]), int(query["page"][0])
                            everything = fake.comments.get(number, [])
                            headers = []
                            if page * per_page < len(everything):
                                nxt = f"{fake.link_base or fake.url}{url.path}?per_page={per_page}&page={page + 1}"
                                headers.append(("Link", f'<{nxt}>; rel="next", <{nxt}>; rel="last"'))
                            return self._send(200, everything[(page - 1) * per_page : page * per_page], headers)
                        if method == "POST":
                            login = fake.login or github.ACTIONS_BOT
                            return self._send(201, fake.add(number, payload["body"], login))
                    if len(parts) == 6 and parts[4] == "comments" and method == "PATCH":
                        for comments in fake.comments.values():
                            for comment in comments:
                                if comment["id"] == int(parts[5]):
                                    comment["body"] = payload["body"]
                                    return self._send(200, comment)
                return self._send(404, {"message": "Not Found"})

            def do_GET(self):
                self._route("GET")

            def do_POST(self):
                self._route("POST")

            def do_PATCH(self):
                self._route("PATCH")

        return Handler

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def calls(self, method):
        return [path for m, path, _ in self.requests if m == method]


@pytest.fixture
def fake():
    with FakeGitHub() as server:
        yield server


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def actions_env(tmp_path: Path, api_url: str, event: dict | None = None) -> dict:
    event_path = tmp_path / "event.json"
    event_path.write_text(json.dumps({"pull_request": {"number": 7}} if event is None else event))
    return {
        "GITHUB_API_URL": api_url,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_EVENT_PATH": str(event_path),
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md"),
        "GITHUB_OUTPUT": str(tmp_path / "output.txt"),
    }


def read_outputs(path: Path) -> dict:
    """GITHUB_OUTPUT as the Actions runner reads it: name=value, or name<<DELIM ... DELIM."""
    lines, out = path.read_text().split("\n"), {}
    i = 0
    while i < len(lines):
        line = lines[i]
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            name, delimiter = line.split("<<", 1)
            end = lines.index(delimiter, i + 1)
            out[name] = "\n".join(lines[i + 1 : end])
            i = end + 1
        elif line:
            name, value = line.split("=", 1)
            out[name] = value
            i += 1
        else:
            i += 1
    return out


def assert_no_token(tmp_path: Path, *texts: str):
    for text in texts:
        assert TOKEN not in text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert TOKEN not in path.read_text(errors="replace"), path


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


class FakeRunner:
    """Plays the `runner` CLI: `run` writes a realistic run folder, `report` prints a table."""

    def __init__(self, fail_run: set[str] = frozenset(), accuracy=0.84):
        self.calls: list[list[str]] = []
        self.fail_run = fail_run
        self.accuracy = accuracy

    def __call__(self, args: list[str], capture: bool) -> tuple[int, str, str]:
        self.calls.append(args)
        rc, out = self.play(args, capture)
        return rc, out, ""

    def play(self, args: list[str], capture: bool) -> tuple[int, str]:
        command = args[0]
        if command == "run":
            if args[1] in self.fail_run:
                return 2, ""
            run_dir = Path(args[args.index("--output") + 1])
            (run_dir / "model").mkdir(parents=True)
            (run_dir / "model" / "model.safetensors").write_bytes(b"\0" * 16)
            headline = {"split": "validation", "name": "accuracy", "value": self.accuracy}
            (run_dir / "metrics.json").write_text(
                json.dumps({"validation": {"accuracy": self.accuracy, "f1_macro": 0.8}, "headline": headline})
            )
            (run_dir / "run.json").write_text(
                json.dumps({"name": run_dir.name, "status": "finished", "spec": {"path": args[1], "values": {}}})
            )
            (run_dir / "report.md").write_text("| metric | value |\n|---|---|\n")
            return 0, ""
        if command == "push":
            run_dir = Path(args[1])
            manifest = json.loads((run_dir / "run.json").read_text())
            manifest["hub"] = {"url": "https://huggingface.co/octo/sst2"}
            (run_dir / "run.json").write_text(json.dumps(manifest))
            return 0, ""
        if command == "report":
            assert capture
            metrics = json.loads((Path(args[1]) / "metrics.json").read_text())
            row = f"| validation accuracy | {metrics['validation']['accuracy']:.2f} |"
            if "--compare" in args:
                base = Path(args[args.index("--compare") + 1])
                base = json.loads((base if base.is_file() else base / "metrics.json").read_text())
                row += f" {metrics['validation']['accuracy'] - base['validation']['accuracy']:+.2f} |"
            return 0, f"### runner: {Path(args[1]).name}\n\n| metric | value |\n|---|---|\n{row}\n"
        raise AssertionError(args)


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    (tmp_path / "repo" / "specs").mkdir(parents=True)
    for name in ("sst2.yaml", "imdb.yaml"):
        (tmp_path / "repo" / "specs" / name).write_text("model: tiny\n")
    monkeypatch.chdir(tmp_path / "repo")
    return tmp_path


def action_env(tmp_path, api_url, **inputs):
    env = actions_env(tmp_path, api_url)
    env.update(
        {
            "RUNNER_TEMP": str(tmp_path / "temp"),
            "GITHUB_RUN_ID": "99",
            "GITHUB_SHA": "abcdef0123",
            "GITHUB_JOB": "train",
            "GITHUB_SERVER_URL": "https://github.com",
            "HF_TOKEN": "hf_secret_x",
        }
    )
    env.update({action.ACTION_INPUTS[k.replace("_", "-")]: v for k, v in inputs.items()})
    return env


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
    assert outputs["artifact-name"] == "runner-train-specs-sst2"
    summary = (workspace / "summary.md").read_text()
    assert summary.startswith("### runner: specs-sst2\n") and "| validation accuracy | 0.84 |" in summary
    assert "spec `specs/sst2.yaml`" in summary
    assert "https://github.com/octo/classifier/actions/runs/99" in summary
    [comment] = fake.comments[7]
    assert comment["body"].startswith(github.comment_marker("specs/sst2.yaml"))
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
    assert runner.calls[1][-2:] == runner.calls[5][-2:] == ["--compare", str(baseline)]
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
