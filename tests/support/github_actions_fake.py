"""FakeGitHub plus the Actions REST endpoints that `baseline: auto` reads: a workflow's runs, a
run's artifacts, and an artifact's download (a 302 to a second loopback host, like GitHub's blob
storage, which must not receive the token)."""

from __future__ import annotations

import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from support.github_fake import REPO, TOKEN, FakeGitHub


def zip_folder(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder).as_posix())
    return buffer.getvalue()


class Blobs:
    """The storage host an artifact download redirects to; records the Authorization it got."""

    def __init__(self):
        self.data: dict[str, bytes] = {}
        self.authorizations: list[str] = []
        blobs = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                blobs.authorizations.append(self.headers.get("Authorization", ""))
                raw = blobs.data.get(urlsplit(self.path).path)
                self.send_response(200 if raw is not None else 404)
                self.send_header("Content-Length", str(len(raw or b"")))
                self.end_headers()
                self.wfile.write(raw or b"")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # Another origin than the API's: "localhost" vs "127.0.0.1".
        self.url = f"http://localhost:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class FakeActionsGitHub(FakeGitHub):
    """Issue comments, and workflow runs with artifacts."""

    def __init__(self, login=None):
        self.runs: list[dict] = []  # {"id", "workflow", "branch", "event", "head_sha", "artifacts": {name: bytes}}
        self.blobs = Blobs()
        super().__init__(login=login)

    def add_run(self, workflow: str, branch: str, artifacts: dict[str, bytes], event: str = "push") -> int:
        run_id = 5000 + len(self.runs)
        self.runs.insert(
            0,
            {
                "id": run_id,
                "workflow": workflow,
                "branch": branch,
                "event": event,
                "head_sha": f"{run_id:040d}",
                "artifacts": artifacts,
            },
        )
        return run_id

    def __exit__(self, *exc):
        self.blobs.close()
        super().__exit__(*exc)

    def _handler(self):
        fake = self
        base = super()._handler()

        class Handler(base):
            def _route(self, method):
                url = urlsplit(self.path)
                parts = url.path.strip("/").split("/")
                if method != "GET" or parts[:4] != ["repos", *REPO.split("/"), "actions"]:
                    return super()._route(method)
                fake.requests.append((method, self.path, self.headers.get("Authorization", "")))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._send(401, {"message": "Bad credentials"})
                if "GET" in fake.fail:
                    return self._send(fake.fail["GET"], {"message": "Resource not accessible by integration"})
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                rest = parts[4:]
                if len(rest) == 3 and rest[0] == "workflows" and rest[2] == "runs":
                    runs = [
                        {"id": r["id"], "head_sha": r["head_sha"], "head_branch": r["branch"], "event": r["event"]}
                        for r in fake.runs
                        if r["workflow"] == rest[1]
                        and r["branch"] == query.get("branch", r["branch"])
                        and r["event"] == query.get("event", r["event"])
                    ]
                    if not any(r["workflow"] == rest[1] for r in fake.runs):
                        return self._send(404, {"message": "Not Found"})
                    return self._send(200, {"total_count": len(runs), "workflow_runs": runs})
                if len(rest) == 3 and rest[0] == "runs" and rest[2] == "artifacts":
                    run = next((r for r in fake.runs if str(r["id"]) == rest[1]), None)
                    if run is None:
                        return self._send(404, {"message": "Not Found"})
                    listed = [
                        {
                            "id": run["id"] * 10 + i,
                            "name": name,
                            "expired": False,
                            "archive_download_url": f"{fake.url}/repos/{REPO}/actions/artifacts/"
                            + f"{run['id'] * 10 + i}/zip",
                        }
                        for i, name in enumerate(run["artifacts"])
                        if name == query.get("name", name)
                    ]
                    return self._send(200, {"total_count": len(listed), "artifacts": listed})
                if len(rest) == 3 and rest[0] == "artifacts" and rest[2] == "zip":
                    for run in fake.runs:
                        for i, data in enumerate(run["artifacts"].values()):
                            if str(run["id"] * 10 + i) == rest[1]:
                                path = f"/blob/{rest[1]}.zip"
                                fake.blobs.data[path] = data
                                self.send_response(302)
                                self.send_header("Location", f"{fake.blobs.url}{path}?sig=abc")
                                self.send_header("Content-Length", "0")
                                self.end_headers()
                                return None
                return self._send(404, {"message": "Not Found"})

        return Handler
