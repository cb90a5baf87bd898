"""A small stand-in for the Hugging Face Hub, for tests: the part of the HTTP API that the real
huggingface_hub client (and transformers, peft and datasets through it) uses to create repositories,
commit files, tag, list and download.

    hub = FakeHub(token=TEST_TOKEN).start()         # 127.0.0.1, random port; hub.url
    point_hf_at(monkeypatch, hub.url, tmp_path / "hf_home")   # env + already-imported constants
    hub.upload("me/data", {"train.csv": b"text,label\\n..."}, repo_type="dataset")   # seed a repo
    ... code under test ...
    hub.files("me/model")                            # {path: bytes} at main
    hub.jobs, hub.job_env                            # Hugging Face Jobs run here (tests/support/hub_jobs.py)
    hub.commits, hub.requests                        # what happened
    hub.fail_next("commit", times=1, status=500)     # status 0 drops the connection instead
    hub.drop_log_stream(after="text"), hub.end_job(job, "ERROR", "why")   # a job's log and end (hub_jobs.py)
    hub.stop()

Everything lives in memory. Files are always uploaded as regular (non-LFS) git blobs and served
directly from /resolve, with the ETag, X-Repo-Commit and Content-Length headers the client needs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote

GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
TEST_TOKEN = "hf_FAKEtoken1234567890SECRET"  # recognisable, so tests can prove it never leaks
REPO_ACTIONS = {"preupload", "commit", "tag", "branch", "refs", "tree", "paths-info", "revision", "commits"}


def git_blob_sha(content: bytes) -> str:
    """The git object id of a file, which the Hub uses as the ETag and `oid` of regular files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Commit:
    oid: str
    parent: str | None
    title: str
    description: str
    files: dict[str, bytes]
    date: str


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    pull_requests: dict[str, str] = field(default_factory=dict)  # "refs/pr/1" -> commit oid

    def resolve(self, revision: str) -> str | None:
        """The commit oid a branch, tag, pull-request ref or full commit id names, or None."""
        for refs in (self.branches, self.tags, self.pull_requests):
            if revision in refs:
                return refs[revision]
        return revision if revision in self.commits else None


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class FakeHub:
    """The server's state, plus helpers for tests to seed and inspect it. Thread-safe."""

    def __init__(self, token: str | None = TEST_TOKEN, user: str = "tester"):
        self.token = token  # None: accept any token, or none, for everything
        self.user = user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[dict] = []  # {"method", "path", "kind", "status", "authorized"}
        self.commits: list[dict] = []  # {"repo_id", "repo_type", "revision", "message", "oid", "paths", "pr"}
        self._failures: dict[str, list[int]] = {}
        self.jobs: list = []  # Hugging Face Jobs (tests/support/hub_jobs.py): FakeJob, in creation order
        self.job_env: dict[str, str] = {}  # added to every job's environment
        self.hold_jobs = False  # True: a job stays RUNNING after its command until job.release or a cancel
        self.log_drops: list[tuple[str, str | None]] = []  # (job id, last line sent) of each log stream broken
        self._log_drops: list[str | None] = []  # drop_log_stream's, in order: after a line holding it; None: now
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._counter = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeHub:
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-hub", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- for tests ---------------------------------------------------------------------------

    def fail_next(self, kind: str, times: int = 1, status: int = 500) -> None:
        """Answer the next `times` requests of `kind` with HTTP `status` (0: drop the connection).

        Kinds: whoami, create_repo, validate_yaml, preupload, commit, tag, branch, refs, info, tree,
        paths_info, resolve; of Jobs: run_job, inspect_job (a status call), job_logs, cancel_job. A large `times`
        fails them until stop_failing.
        """
        with self._lock:
            self._failures.setdefault(kind, []).extend([status] * times)

    def stop_failing(self, kind: str | None = None) -> None:
        """Forget the failures fail_next armed and not yet used: of `kind`, or all."""
        with self._lock:
            if kind is None:
                self._failures.clear()
            else:
                self._failures.pop(kind, None)

    def drop_log_stream(self, after: str | None = None, times: int = 1) -> None:
        """Break the next `times` job log streams (tests/support/hub_jobs.py): right after the first line that
        holds `after`, or, without `after`, the one open now (else the next) at once. hub.log_drops records each."""
        with self._lock:
            self._log_drops.extend([after] * times)

    def _take_log_drop(self, line: str | None) -> bool:
        """Whether the log stream that just sent `line` (None: that is waiting) breaks now."""
        with self._lock:
            if self._log_drops and (self._log_drops[0] is None or (line is not None and self._log_drops[0] in line)):
                self._log_drops.pop(0)
                return True
            return False

    def end_job(self, job, stage: str, message: str | None = None) -> None:
        """End a job now with `stage` (ERROR, CANCELED, COMPLETED) and `message`: tests/support/hub_jobs.py."""
        import importlib

        importlib.import_module(f"{__package__}.hub_jobs" if __package__ else "hub_jobs").end_job(job, stage, message)

    def create_repo(self, repo_id: str, repo_type: str = "model", private: bool = False) -> Repo:
        with self._lock:
            key = (repo_type, repo_id)
            if key not in self.repos:
                repo = Repo(repo_type, repo_id, private, _now())
                first = self._new_commit(repo, None, "initial commit", "", {".gitattributes": GITATTRIBUTES})
                repo.branches["main"] = first.oid
                self.repos[key] = repo
            return self.repos[key]

    def upload(
        self,
        repo_id: str,
        files: dict,
        repo_type: str = "model",
        revision: str = "main",
        message: str = "Upload files",
        private: bool = False,
    ) -> str:
        """Commit `files` ({path: bytes, str or local Path}) straight into a repo, creating it if needed."""
        with self._lock:
            repo = self.create_repo(repo_id, repo_type, private)
            parent = repo.branches.get(revision) or repo.branches["main"]
            contents = dict(repo.commits[parent].files)
            for path, value in files.items():
                if isinstance(value, Path):
                    value = value.read_bytes()
                contents[path] = value.encode("utf-8") if isinstance(value, str) else bytes(value)
            commit = self._new_commit(repo, parent, message, "", contents)
            repo.branches[revision] = commit.oid
            return commit.oid

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> dict[str, bytes]:
        """{path: content} of a repo at a revision."""
        with self._lock:
            repo = self.repos[(repo_type, repo_id)]
            return dict(repo.commits[repo.resolve(revision)].files)

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        return self.repos[(repo_type, repo_id)]

    # -- internals ---------------------------------------------------------------------------

    def _new_commit(self, repo: Repo, parent: str | None, title: str, description: str, files: dict) -> Commit:
        self._counter += 1
        digest = hashlib.sha1(f"{repo.repo_id}|{parent}|{title}|{self._counter}".encode())
        for path in sorted(files):
            digest.update(f"{path}:{git_blob_sha(files[path])}".encode())
        commit = Commit(digest.hexdigest(), parent, title, description, files, _now())
        repo.commits[commit.oid] = commit
        return commit

    def _take_failure(self, kind: str) -> int | None:
        with self._lock:
            pending = self._failures.get(kind)
            return pending.pop(0) if pending else None

    def _repo_url(self, repo: Repo) -> str:
        return f"{self.url}/{URL_PREFIXES[repo.repo_type]}{repo.repo_id}"


class _Response(Exception):
    """Raised by a route to answer at once: status, JSON body (or bytes), headers."""

    def __init__(self, status: int, body=None, headers: dict | None = None):
        super().__init__(status)
        self.status, self.body, self.headers = status, body, headers or {}


def _error(status: int, message: str, code: str | None = None, **headers) -> _Response:
    extra = {"X-Error-Message": message, **{key.replace("_", "-"): value for key, value in headers.items()}}
    if code:
        extra["X-Error-Code"] = code
    return _Response(status, {"error": message}, extra)


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # otherwise every answer waits ~40 ms for a delayed ACK

    def log_message(self, format, *args):  # keep test output clean
        pass

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("HEAD")

    def do_POST(self):
        self._handle("POST")

    def do_DELETE(self):
        self._handle("DELETE")

    # -- plumbing ----------------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        raw_path, _, query = self.path.partition("?")
        self.query = parse_qs(query)
        self.body = self._read_body()
        segments = raw_path.strip("/").split("/")
        kind, route = self._route(method, segments)
        record = {
            "method": method,
            "path": unquote(raw_path),
            "kind": kind,
            "status": None,
            "authorized": self._authorized(),
        }
        with self.hub._lock:
            self.hub.requests.append(record)
        failure = self.hub._take_failure(kind)
        try:
            if failure == 0:
                record["status"] = 0
                self.close_connection = True
                return
            if failure is not None:
                raise _error(failure, f"injected failure ({failure})")
            self._check_token()
            if route is None:
                raise _error(404, f"no such endpoint: {method} {raw_path}")
            raise route()
        except _Response as response:
            record["status"] = response.status
            if not getattr(response, "streamed", False):  # a job's log stream was written as it came
                self._send(method, response)

    def _route(self, method: str, segments: list[str]):
        if segments[:2] == ["api", "jobs"] and len(segments) > 2:
            import importlib

            jobs = importlib.import_module(f"{__package__}.hub_jobs" if __package__ else "hub_jobs")
            return jobs.route(self, method, segments, _Response, _error)
        if segments[:2] == ["api", "whoami-v2"]:
            return "whoami", self._whoami
        if segments[:3] == ["api", "repos", "create"] and method == "POST":
            return "create_repo", self._create_repo
        if segments[:2] == ["api", "validate-yaml"] and method == "POST":
            return "validate_yaml", self._validate_yaml
        if len(segments) >= 3 and segments[0] == "api" and segments[1] in REPO_TYPES:
            repo_type = REPO_TYPES[segments[1]]
            if len(segments) >= 4 and segments[3] not in REPO_ACTIONS:
                repo_id, rest = f"{segments[2]}/{segments[3]}", segments[4:]
            else:
                repo_id, rest = segments[2], segments[3:]
            return self._api_route(method, repo_type, unquote(repo_id), rest)
        if "resolve" in segments and method in ("GET", "HEAD"):
            at = segments.index("resolve")
            repo_type = REPO_TYPES.get(segments[0], "model")
            repo_segments = segments[1:at] if segments[0] in REPO_TYPES else segments[:at]
            if len(segments) > at + 2:
                revision = unquote(segments[at + 1])
                path = unquote("/".join(segments[at + 2 :]))
                return "resolve", lambda: self._resolve(repo_type, "/".join(repo_segments), revision, path)
        return "unknown", None

    def _api_route(self, method: str, repo_type: str, repo_id: str, rest: list[str]):
        action = rest[0] if rest else ""
        argument = unquote("/".join(rest[1:]))
        if not rest and method == "GET":
            return "info", lambda: self._info(repo_type, repo_id, "main")
        if action == "revision" and method == "GET":
            return "info", lambda: self._info(repo_type, repo_id, argument)
        if action == "preupload" and method == "POST":
            return "preupload", lambda: self._preupload(repo_type, repo_id, argument)
        if action == "commit" and method == "POST":
            return "commit", lambda: self._commit(repo_type, repo_id, argument)
        if action == "tag" and method == "POST":
            return "tag", lambda: self._create_tag(repo_type, repo_id, argument)
        if action == "tag" and method == "DELETE":
            return "tag", lambda: self._delete_tag(repo_type, repo_id, argument)
        if action == "branch" and method == "POST":
            return "branch", lambda: self._create_branch(repo_type, repo_id, argument)
        if action == "refs" and method == "GET":
            return "refs", lambda: self._refs(repo_type, repo_id)
        if action == "tree" and method == "GET":
            revision = unquote(rest[1]) if len(rest) > 1 else "main"
            path = unquote("/".join(rest[2:]))
            return "tree", lambda: self._tree(repo_type, repo_id, revision, path)
        if action == "paths-info" and method == "POST":
            return "paths_info", lambda: self._paths_info(repo_type, repo_id, argument)
        return "unknown", None

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json(self):
        try:
            return json.loads(self.body or b"{}")
        except ValueError:
            raise _error(400, "body is not JSON") from None

    def _send(self, method: str, response: _Response) -> None:
        body = response.body
        if body is None:
            payload = b""
        elif isinstance(body, bytes):
            payload = body
        else:
            payload = json.dumps(body).encode()
            response.headers.setdefault("Content-Type", "application/json")
        self.send_response(response.status)
        for key, value in response.headers.items():
            self.send_header(key, str(value))
        if "Content-Length" not in response.headers:
            self.send_header("Content-Length", str(len(payload)))
        self.send_header("X-Request-Id", f"fake-{len(self.hub.requests)}")
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(payload)

    # -- auth --------------------------------------------------------------------------------

    def _bearer(self) -> str | None:
        header = self.headers.get("Authorization") or ""
        return header[7:] if header.lower().startswith("bearer ") else None

    def _authorized(self) -> bool:
        token = self._bearer()
        return token is not None and (self.hub.token is None or token == self.hub.token)

    def _check_token(self) -> None:
        if self._bearer() is not None and not self._authorized():
            raise _error(401, "Invalid credentials in Authorization header")

    def _need_write(self) -> None:
        if self.hub.token is not None and not self._authorized():
            raise _error(401, "You must be authenticated to do this")

    def _repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and self.hub.token is not None and not self._authorized()):
            raise _error(404 if repo is None else 401, "Repository not found", "RepoNotFound")
        return repo

    def _commit_at(self, repo: Repo, revision: str) -> Commit:
        oid = repo.resolve(revision)
        if oid is None:
            raise _error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo.commits[oid]

    # -- routes ------------------------------------------------------------------------------

    def _whoami(self):
        if not self._authorized():
            raise _error(401, "Invalid credentials in Authorization header")
        return _Response(
            200,
            {
                "type": "user",
                "id": "0" * 24,
                "name": self.hub.user,
                "fullname": "Test User",
                "email": None,
                "emailVerified": True,
                "isPro": False,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}},
            },
        )

    def _create_repo(self):
        self._need_write()
        body = self._json()
        repo_type = body.get("type") or "model"
        repo_id = f"{body.get('organization') or self.hub.user}/{body['name']}"
        private = bool(body.get("private")) or body.get("visibility") == "private"
        with self.hub._lock:
            if (repo_type, repo_id) in self.hub.repos:
                repo = self.hub.repos[(repo_type, repo_id)]
                raise _Response(
                    409,
                    {"error": "You already created this repo", "url": self.hub._repo_url(repo)},
                    {"X-Error-Message": "You already created this repo"},
                )
            repo = self.hub.create_repo(repo_id, repo_type, private)
        return _Response(200, {"url": self.hub._repo_url(repo), "name": repo_id, "id": repo_id})

    def _validate_yaml(self):
        content = self._json().get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*(\n|$)", content, re.DOTALL)
        if match:
            import yaml

            try:
                metadata = yaml.safe_load(match.group(1))
            except yaml.YAMLError as error:
                raise _Response(400, {"errors": [{"message": f"Invalid YAML: {error}"}], "warnings": []}) from None
            if metadata is not None and not isinstance(metadata, dict):
                raise _Response(400, {"errors": [{"message": "metadata must be a mapping"}], "warnings": []})
        return _Response(200, {"errors": [], "warnings": []})

    def _preupload(self, repo_type: str, repo_id: str, revision: str):
        self._need_write()
        with self.hub._lock:
            repo = self._repo(repo_type, repo_id)
            oid = repo.resolve(revision)
            existing = repo.commits[oid].files if oid else {}
        files = [
            {
                "path": item["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": git_blob_sha(existing[item["path"]]) if item["path"] in existing else None,
            }
            for item in self._json().get("files", [])
        ]
        return _Response(200, {"files": files, "commitOid": oid})

    def _commit(self, repo_type: str, repo_id: str, revision: str):
        self._need_write()
        lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise _error(400, "the first line of a commit must be its header")
        header = lines[0]["value"]
        create_pr = self.query.get("create_pr", ["0"])[0] in ("1", "true")
        with self.hub._lock:
            repo = self._repo(repo_type, repo_id)
            parent = self._commit_at(repo, revision)
            if revision not in repo.branches and revision not in repo.pull_requests:
                raise _error(400, f"{revision} is not a branch")
            if header.get("parentCommit") and header["parentCommit"] != parent.oid:
                raise _error(412, "A commit has happened since. Please refresh and try again.")
            files = dict(parent.files)
            for line in lines[1:]:
                key, value = line.get("key"), line.get("value", {})
                if key == "file":
                    files[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    files.pop(value["path"], None)
                elif key == "deletedFolder":
                    prefix = value["path"].rstrip("/") + "/"
                    files = {path: data for path, data in files.items() if not path.startswith(prefix)}
                else:
                    raise _error(400, f"the test hub does not support {key!r} operations (LFS uploads)")
            commit = self.hub._new_commit(
                repo, parent.oid, header.get("summary", ""), header.get("description", ""), files
            )
            pr_url = None
            if create_pr:
                number = len(repo.pull_requests) + 1
                repo.pull_requests[f"refs/pr/{number}"] = commit.oid
                pr_url = f"{self.hub._repo_url(repo)}/discussions/{number}"
            elif revision in repo.branches:
                repo.branches[revision] = commit.oid
            else:
                repo.pull_requests[revision] = commit.oid
            self.hub.commits.append(
                {
                    "repo_id": repo_id,
                    "repo_type": repo_type,
                    "revision": revision,
                    "message": commit.title,
                    "description": commit.description,
                    "oid": commit.oid,
                    "paths": sorted(line["value"]["path"] for line in lines[1:]),
                    "pr": pr_url,
                }
            )
        return _Response(
            200,
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self.hub._repo_url(repo)}/commit/{commit.oid}",
                "pullRequestUrl": pr_url,
                "hookOutput": "",
            },
        )

    def _create_tag(self, repo_type: str, repo_id: str, revision: str):
        self._need_write()
        tag = self._json().get("tag")
        with self.hub._lock:
            repo = self._repo(repo_type, repo_id)
            commit = self._commit_at(repo, revision)
            if not tag or tag in repo.tags or tag in repo.branches:
                raise _error(409 if tag else 400, f"Tag {tag!r} already exists" if tag else "no tag given")
            repo.tags[tag] = commit.oid
        return _Response(200, {})

    def _delete_tag(self, repo_type: str, repo_id: str, tag: str):
        self._need_write()
        with self.hub._lock:
            repo = self._repo(repo_type, repo_id)
            if repo.tags.pop(tag, None) is None:
                raise _error(404, f"Tag {tag} not found", "RevisionNotFound")
        return _Response(200, {})

    def _create_branch(self, repo_type: str, repo_id: str, branch: str):
        self._need_write()
        with self.hub._lock:
            repo = self._repo(repo_type, repo_id)
            if branch in repo.branches:
                raise _error(409, f"Branch {branch} already exists")
            start = self._commit_at(repo, self._json().get("startingPoint") or "main")
            repo.branches[branch] = start.oid
        return _Response(200, {})

    def _refs(self, repo_type: str, repo_id: str):
        with self.hub._lock:
            repo = self._repo(repo_type, repo_id)

            def refs(names: dict, prefix: str) -> list[dict]:
                return [{"name": name, "ref": f"{prefix}{name}", "targetCommit": oid} for name, oid in names.items()]

            body = {
                "branches": refs(repo.branches, "refs/heads/"),
                "converts": [],
                "tags": refs(repo.tags, "refs/tags/"),
            }
            if self.query.get("include_prs"):
                body["pullRequests"] = refs(repo.pull_requests, "")
        return _Response(200, body)

    def _info(self, repo_type: str, repo_id: str, revision: str):
        with self.hub._lock:
            repo = self._repo(repo_type, repo_id)
            commit = self._commit_at(repo, revision)
            files = commit.files
        body = {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.created,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "cardData": {},
            "siblings": [
                {"rfilename": path, "size": len(data), "blobId": git_blob_sha(data)}
                for path, data in sorted(files.items())
            ],
        }
        if repo_type == "model":
            body.update(self._model_fields(files))
        return _Response(200, body)

    @staticmethod
    def _model_fields(files: dict) -> dict:
        try:
            config = json.loads(files["config.json"])
        except (KeyError, ValueError):
            config = {}
        fields = {"library_name": "peft" if "adapter_config.json" in files else "transformers"}
        if any(name.endswith("ForSequenceClassification") for name in config.get("architectures") or []):
            fields["pipeline_tag"] = "text-classification"
        if config:
            fields["config"] = {"architectures": config.get("architectures"), "model_type": config.get("model_type")}
        return fields

    def _entries(self, repo: Repo, commit: Commit, expand: bool) -> dict[str, dict]:
        """Every file and folder of a commit, as tree entries keyed by path."""
        last_commit = {"id": commit.oid, "title": commit.title, "date": commit.date}
        entries = {}
        for path, data in commit.files.items():
            entries[path] = {"type": "file", "oid": git_blob_sha(data), "size": len(data), "path": path}
            parts = path.split("/")
            for depth in range(1, len(parts)):
                folder = "/".join(parts[:depth])
                entries.setdefault(
                    folder,
                    {
                        "type": "directory",
                        "size": 0,
                        "path": folder,
                        "oid": hashlib.sha1(f"{commit.oid}:{folder}".encode()).hexdigest(),
                    },
                )
        if expand:
            for entry in entries.values():
                entry["lastCommit"] = last_commit
        return entries

    def _tree(self, repo_type: str, repo_id: str, revision: str, path: str):
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        expand = self.query.get("expand", ["false"])[0].lower() in ("1", "true")
        with self.hub._lock:
            repo = self._repo(repo_type, repo_id)
            commit = self._commit_at(repo, revision)
            entries = self._entries(repo, commit, expand)
        path = path.strip("/")
        if path and (path not in entries or entries[path]["type"] != "directory"):
            raise _error(404, f"{path} does not exist on {revision}", "EntryNotFound")
        prefix = f"{path}/" if path else ""
        listed = [
            entry
            for name, entry in sorted(entries.items())
            if name.startswith(prefix) and (recursive or "/" not in name[len(prefix) :])
        ]
        return _Response(200, listed)

    def _paths_info(self, repo_type: str, repo_id: str, revision: str):
        form = parse_qs(self.body.decode())
        expand = form.get("expand", ["False"])[0].lower() in ("1", "true")
        with self.hub._lock:
            repo = self._repo(repo_type, repo_id)
            commit = self._commit_at(repo, revision)
            entries = self._entries(repo, commit, expand)
        return _Response(
            200, [entries[path.strip("/")] for path in form.get("paths", []) if path.strip("/") in entries]
        )

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str):
        with self.hub._lock:
            repo = self._repo(repo_type, repo_id)
            commit = self._commit_at(repo, revision)
        if path not in commit.files:
            raise _error(404, "Entry not found", "EntryNotFound", X_Repo_Commit=commit.oid)
        data = commit.files[path]
        headers = {
            "ETag": f'"{git_blob_sha(data)}"',
            "X-Repo-Commit": commit.oid,
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        status, start, end = 200, 0, len(data)
        match = re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "") or "")
        if match and data:
            start = int(match.group(1) or 0)
            end = int(match.group(2)) + 1 if match.group(2) else len(data)
            if start >= len(data):
                raise _Response(416, b"", {**headers, "Content-Range": f"bytes */{len(data)}"})
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        headers["Content-Length"] = str(end - start)
        return _Response(status, data[start:end], headers)


def point_hf_at(monkeypatch, url: str, hf_home: str | Path) -> None:
    """Make huggingface_hub, transformers, peft and datasets talk to `url` and cache under `hf_home`.

    Sets the environment for code that reads it late (HF_ENDPOINT, HF_HOME, telemetry off, offline
    off) and patches the values that huggingface_hub and datasets computed from it at import time.
    Every change is undone by `monkeypatch` at the end of the test.
    """
    hf_home = str(hf_home)
    os.makedirs(hf_home, exist_ok=True)
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("HF_HOME", hf_home)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    for name in (
        "HF_HUB_OFFLINE",
        "TRANSFORMERS_OFFLINE",
        "HF_DATASETS_OFFLINE",
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "HF_TOKEN_PATH",
        "HF_DATASETS_CACHE",
        "HF_XET_CACHE",
    ):
        monkeypatch.delenv(name, raising=False)

    from huggingface_hub import constants, hf_api

    patches = {
        "ENDPOINT": url,
        "HUGGINGFACE_CO_URL_TEMPLATE": url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": frozenset(constants.HF_URL_HOSTS | {"127.0.0.1"}),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HOME": hf_home,
        "HF_HUB_CACHE": os.path.join(hf_home, "hub"),
        "HUGGINGFACE_HUB_CACHE": os.path.join(hf_home, "hub"),
        "HF_ASSETS_CACHE": os.path.join(hf_home, "assets"),
        "HF_TOKEN_PATH": os.path.join(hf_home, "token"),
        "HF_STORED_TOKENS_PATH": os.path.join(hf_home, "stored_tokens"),
        "HF_XET_CACHE": os.path.join(hf_home, "xet"),
    }
    for name, value in patches.items():
        monkeypatch.setattr(constants, name, value)
    # The module-level helpers (file_exists, model_info, ...) are bound to one HfApi made at import.
    monkeypatch.setattr(hf_api.api, "endpoint", url)
    if "transformers.utils.hub" in sys.modules:
        monkeypatch.setattr(sys.modules["transformers.utils.hub"], "_hf_api", None, raising=False)
    if "datasets.config" in sys.modules:
        config = sys.modules["datasets.config"]
        datasets_cache = Path(hf_home, "datasets")
        for name, value in {
            "HF_ENDPOINT": url,
            "HUB_DATASETS_URL": url + "/datasets/{repo_id}/resolve/{revision}/{path}",
            "HF_HUB_OFFLINE": False,
            "HF_DATASETS_OFFLINE": False,
            "HF_CACHE_HOME": hf_home,
            "HF_DATASETS_CACHE": datasets_cache,
            "HF_MODULES_CACHE": Path(hf_home, "modules"),
            "DOWNLOADED_DATASETS_PATH": datasets_cache / "downloads",
            "EXTRACTED_DATASETS_PATH": datasets_cache / "downloads" / "extracted",
        }.items():
            if hasattr(config, name):
                monkeypatch.setattr(config, name, value)
    forget_connections()


def forget_connections() -> None:
    """Drop pooled connections and cached filesystems that may point at another endpoint."""
    from huggingface_hub.utils import close_session

    close_session()
    try:
        from huggingface_hub import HfFileSystem

        HfFileSystem.clear_instance_cache()
    except Exception:  # noqa: BLE001 - an older huggingface_hub without fsspec instance caching
        pass


try:
    import pytest
except ImportError:  # pragma: no cover - the server itself needs only the standard library
    pytest = None

if pytest is not None:

    @pytest.fixture
    def fake_hub(monkeypatch, tmp_path):
        """A running FakeHub that huggingface_hub & co. talk to, with HF_HOME in tmp_path/hf_home and
        HF_TOKEN set to the hub's token (a plugin of tests/conftest.py: every test may ask for it)."""
        hub = FakeHub().start()
        try:
            point_hf_at(monkeypatch, hub.url, tmp_path / "hf_home")
            monkeypatch.setenv("HF_TOKEN", hub.token)
            yield hub
        finally:
            hub.stop()
            forget_connections()
