"""A pull request from a fork under a real Actions runner (act): specs that would run code or read
outside the repository (a data path, or a model folder whose tokenizer.json is a link out of the
workspace) are refused, each with an annotation at its line; the others still train."""

from __future__ import annotations

import json
import shutil

import pytest
from support.act_runner import Act, log
from support.github_fake import REPO, TOKEN, FakeGitHub

pytestmark = pytest.mark.act

FORK_EVENT = {
    "pull_request": {
        "number": 7,
        "head": {"ref": "feature", "repo": {"full_name": "mallory/classifier"}},
        "base": {"ref": "main", "repo": {"full_name": REPO}},
    }
}


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.fixture(scope="module")
def fork(act: Act, tmp_path_factory):
    spec = act.spec().replace(str(act.tiny_model), "../models/tiny")
    remote = spec.replace("  max_length: 32\n", "  max_length: 32\n  trust_remote_code: true\n")
    outside = spec.replace("train: data/train.csv", "train: /etc/passwd\n  test_file: ../../outside.csv")
    linked = spec.replace("../models/tiny", "../models/linked")
    specs = {"ok.yaml": spec, "remote.yaml": remote, "outside.yaml": outside, "linked.yaml": linked}
    with FakeGitHub(login=None) as github:
        github.fail["POST"] = 403  # a fork's token reads but may not write
        repo = act.repository("forked", "train-on-pr.yml", specs)
        shutil.copytree(act.tiny_model, repo / "models" / "tiny")  # a model inside the repository: allowed
        # The same model, its tokenizer.json a link to a working copy outside the workspace: it would
        # train (the file is a real tokenizer), and it is refused.
        shutil.copytree(act.tiny_model, repo / "models" / "linked")
        outside_model = act.root / "outside-model"
        outside_model.mkdir()
        shutil.copy(act.tiny_model / "tokenizer.json", outside_model / "tokenizer.json")
        (repo / "models" / "linked" / "tokenizer.json").unlink()
        (repo / "models" / "linked" / "tokenizer.json").symlink_to(outside_model / "tokenizer.json")
        (act.root / "outside.csv").write_text("text,label\nsecret row,pos\n")
        proc = act.run(
            repo,
            "pull_request",
            FORK_EVENT,
            "train-on-pr.yml",
            env={"GITHUB_API_URL": github.url},
            secrets={"GITHUB_TOKEN": TOKEN},
        )
        yield {"proc": proc, "specs": specs, "github": github}


def test_fork_specs_that_run_code_or_read_outside_are_refused_at_their_line(fork):
    proc, specs = fork["proc"], fork["specs"]
    text = log(proc)
    print(f"\nact wall time, fork pull request: {proc.wall_s:.1f} s")
    assert proc.returncode != 0, text[-6000:]  # refusing fails the job: the author sees why
    reason = "refused on a pull request from the fork mallory/classifier%0Ahint: "
    remote_line = line_of(specs["remote.yaml"], "trust_remote_code")
    assert (
        f"::error file=specs/remote.yaml,line={remote_line},col=22,title=runner%3A untrusted spec specs/remote.yaml::"
        f"model.trust_remote_code: true runs Python code from the model repository; {reason}"
    ) in text
    for key, needle in (("train", "/etc/passwd"), ("test_file", "outside.csv")):
        line = line_of(specs["outside.yaml"], needle)
        assert f"::error file=specs/outside.yaml,line={line},col=" in text
        assert f"data.{key} points outside the repository; {reason}" in text
    assert "root:x:0:0" not in text and "secret row" not in text
    line = line_of(specs["linked.yaml"], "../models/linked")
    col = specs["linked.yaml"].splitlines()[line - 1].index("../models/linked") + 1
    assert (
        f"::error file=specs/linked.yaml,line={line},col={col},title=runner%3A untrusted spec specs/linked.yaml::"
        f"model.name folder: 'tokenizer.json' is a symbolic link that points outside the repository; {reason}"
    ) in text
    annotations = [one for one in text.splitlines() if "::error file=specs/linked.yaml" in one]
    assert annotations and not any("outside-model" in one for one in annotations)  # where it points: never said


def test_the_trusted_spec_of_the_same_fork_still_trains(fork):
    text = log(fork["proc"])
    [shown] = {line.split("::set-output:: metrics=", 1)[1] for line in text.splitlines() if ":: metrics=" in line}
    shown = json.loads(shown)
    assert set(shown) == {"specs/ok.yaml"}  # the refused specs never ran
    assert "cannot comment on pull request #7 (HTTP 403" in text and TOKEN not in text
