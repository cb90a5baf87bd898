"""A loopback server playing the GitHub REST API (comments, pull requests), the environment the Actions
runner gives a step, and a stand-in for the `runner` CLI that the action calls: shared by the publish,
flows and act tests."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from runner.publish import action, github

TOKEN = "ghs_secretTOKENvalue0123456789"
REPO = "octo/classifier"
COMMENT_LIMIT = 65_536  # GitHub answers 422 to a longer comment body


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
                if method in ("POST", "PATCH") and len(str((payload or {}).get("body", ""))) > COMMENT_LIMIT:
                    return self._send(422, {"message": "Validation Failed", "errors": [
                        {"resource": "IssueComment", "code": "custom", "field": "body",
                         "message": f"body is too long (maximum is {COMMENT_LIMIT} characters)"}]})
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


@pytest.fixture
def no_proxy(monkeypatch):
    """Loopback servers are reached directly, whatever proxy the machine sets."""
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
