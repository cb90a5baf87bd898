"""Baselines keyed by spec, fetched over the REST API (a loopback GitHub): found by the workflow's
own file, unpacked under RUNNER_TEMP, the token never sent to the storage host, and every miss
explained."""

import json
import zipfile
from pathlib import Path

import pytest
from support.github_actions_fake import FakeActionsGitHub, zip_folder
from support.github_fake import REPO, TOKEN

from runner.publish import baseline
from runner.publish.baseline import Baseline, fetch_baseline, read_index, spec_key, write_index

pytestmark = pytest.mark.usefixtures("no_proxy")  # loopback servers, reached without a proxy


def runs_folder(tmp_path: Path, specs: dict[str, float]) -> Path:
    root = tmp_path / "runs"
    entries = {}
    for key, accuracy in specs.items():
        slug = key.replace("/", "-").removesuffix(".yaml")
        (root / slug).mkdir(parents=True)
        (root / slug / "metrics.json").write_text(json.dumps({"validation": {"accuracy": accuracy}}))
        entries[key] = slug
    write_index(root, entries, {"GITHUB_SHA": "f" * 40})
    return root


def pr_env(tmp_path: Path, api: str, workflow: str = ".github/workflows/ml.yml") -> dict:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7, "base": {"ref": "main"}}}))
    return {
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_EVENT_PATH": str(event),
        "GITHUB_API_URL": api,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_WORKFLOW_REF": f"{REPO}/{workflow}@refs/pull/7/merge",
        "RUNNER_TEMP": str(tmp_path / "temp"),
    }


def test_spec_key_is_the_path_from_the_repository_root(tmp_path, monkeypatch):
    (tmp_path / "ml" / "specs").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "ml")
    assert spec_key("specs/a.yaml", str(tmp_path)) == "ml/specs/a.yaml"
    assert spec_key("./specs/../specs/a.yaml", str(tmp_path)) == "ml/specs/a.yaml"
    assert spec_key("specs/a.yaml", None) == "specs/a.yaml"


def test_found_by_the_workflows_own_file_and_keyed_by_spec(tmp_path):
    with FakeActionsGitHub() as github:
        github.add_run("ml.yml", "main", {"runner-baseline": zip_folder(runs_folder(tmp_path, {"specs/a.yaml": 0.8}))})
        github.add_run("other.yml", "main", {"runner-baseline": b"not this one"})
        found = fetch_baseline(pr_env(tmp_path, github.url))
        authorizations = github.blobs.authorizations

    assert found.note == "" and set(found.folders) == {"specs/a.yaml"}
    folder, line = found.lookup("specs/a.yaml")
    assert folder == (tmp_path / "temp" / "runner-baseline" / "0" / "specs-a").resolve()
    assert line.startswith("Compared with the baseline of `specs/a.yaml` from run 5000 on `main`")
    assert found.lookup("specs/b.yaml") == (
        None,
        "No baseline for this spec: the baseline (run 5000 on `main`, commit 0000000) has no record of `specs/b.yaml`.",
    )
    assert authorizations == [""]  # the storage host never sees the token


@pytest.mark.parametrize(
    ("setup", "workflow", "note"),
    [
        (lambda g, t: None, "ml.yml", "GitHub answered 404 to listing the runs of `.github/workflows/ml.yml`"),
        (lambda g, t: g.add_run("ml.yml", "dev", {}), "ml.yml", "ml.yml` has no successful push run on `main` yet"),
        (lambda g, t: g.add_run("ml.yml", "main", {"other": b""}), "ml.yml", "no artifact `runner-baseline` (or"),
        (lambda g, t: g.fail.update(GET=403), "ml.yml", "(the job needs `permissions: actions: read`)"),
        (lambda g, t: g.add_run("ml.yml", "main", {"runner-baseline": b"junk"}), "ml.yml", "not a readable zip"),
    ],
)
def test_every_miss_says_why(tmp_path, setup, workflow, note):
    with FakeActionsGitHub() as github:
        setup(github, tmp_path)
        found = fetch_baseline(pr_env(tmp_path, github.url, f".github/workflows/{workflow}"))
    assert note in found.note
    assert found.lookup("specs/a.yaml")[0] is None and found.lookup("specs/a.yaml")[1].startswith("No baseline: ")


def test_not_asked_outside_pull_requests_and_old_artifacts_explained(tmp_path):
    assert fetch_baseline({"GITHUB_EVENT_NAME": "push"}).lookup("specs/a.yaml") == (None, "")
    assert "GITHUB_WORKFLOW_REF" in fetch_baseline({"GITHUB_EVENT_NAME": "pull_request"}).note
    old = tmp_path / "old"
    old.mkdir()
    (old / "metrics.json").write_text("{}")
    with FakeActionsGitHub() as github:
        github.add_run("ml.yml", "main", {"runner-baseline": zip_folder(old)})
        found = fetch_baseline(pr_env(tmp_path, github.url))
    assert "has no runner-specs.json (made by an older runner?)" in found.note


def test_unpack_skips_entries_that_leave_the_folder(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../escape.txt", "x")
        z.writestr("/abs.txt", "x")
        z.writestr("ok/metrics.json", "{}")
    baseline._unpack(archive.read_bytes(), tmp_path / "out")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.*")) == [
        "a.zip",
        "out/ok/metrics.json",
    ]


def test_index_entries_must_be_plain_folder_names(tmp_path):
    root = runs_folder(tmp_path, {"specs/a.yaml": 0.8})
    index = json.loads((root / "runner-specs.json").read_text())
    index["specs"]["specs/evil.yaml"] = "../../etc"
    (root / "runner-specs.json").write_text(json.dumps(index))
    assert set(read_index(root)) == {"specs/a.yaml"}
    assert Baseline().lookup("x") == (None, "")
