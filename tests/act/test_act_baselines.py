"""Baselines keyed by spec under a real Actions runner (act), with the real actions/cache.

One repository wired the way users do and the issue found broken: the example workflow copied
under another name (ml-train.yml), its specs in a subfolder (working-directory: ml). A push to
main uploads the baseline (one spec); the loopback GitHub serves that very archive as the
artifact of the push run; then a pull request adds a second spec, commits a `baseline/` folder
of its own with made-up numbers, and brings data whose label is markup. Both runs share one
pip cache through actions/cache (saved by the first, restored by the second).
"""

from __future__ import annotations

import json
import re
import subprocess

import pytest
from conftest import labelled_rows, write_csv
from support.act_runner import PR_EVENT, Act, commit, log
from support.github_actions_fake import FakeActionsGitHub
from support.github_fake import TOKEN

pytestmark = pytest.mark.act

WORKFLOW = "ml-train.yml"  # train-on-pr.yml, renamed as a user would (docs/action.md calls it train.yml)
EVIL = "neg <img src=x onerror=alert(1)> @octocat ![p](https://evil.example/p.png) <!-- runner:comment key=x -->"
PLANTED = 0.1234


def plant_baseline(folder) -> None:
    """What a pull request could commit to pass off as the baseline."""
    (folder / "specs-a").mkdir(parents=True)
    (folder / "runner-specs.json").write_text(json.dumps({"version": 1, "specs": {"ml/specs/a.yaml": "specs-a"}}))
    metrics = {"validation": {"accuracy": PLANTED, "f1_macro": PLANTED}}
    metrics["headline"] = {"split": "validation", "name": "f1_macro", "value": PLANTED}
    (folder / "specs-a" / "metrics.json").write_text(json.dumps(metrics))


@pytest.fixture(scope="module")
def flow(act: Act):
    with FakeActionsGitHub(login=None) as github:
        repo = act.repository(
            "keyed",
            "train-on-pr.yml",
            {"a.yaml": act.spec()},
            target=WORKFLOW,
            subdir="ml",
            **{"working-directory": "ml"},
        )
        run = {"env": {"GITHUB_API_URL": github.url}, "secrets": {"GITHUB_TOKEN": TOKEN}, "real_cache": True}
        base = act.run(repo, "push", {"ref": "refs/heads/main"}, WORKFLOW, **run)
        archives = act.artifact_archives(repo)
        baselines = {name: path.read_bytes() for name, path in archives.items() if name.startswith("runner-baseline-")}
        if baselines:
            github.add_run(WORKFLOW, "main", baselines)

        subprocess.run(["git", "checkout", "-qb", "feature"], cwd=repo, check=True)
        write_csv(
            repo / "ml" / "specs" / "data" / "evil.csv",
            [r | {"label": EVIL} if r["label"] == "neg" else r for r in labelled_rows()],
        )
        (repo / "ml" / "specs" / "b.yaml").write_text(act.spec().replace("data/train.csv", "data/evil.csv"))
        plant_baseline(repo / "ml" / "baseline")
        plant_baseline(repo / "baseline")
        commit(repo, "a second spec, and a baseline of our own")
        pr = act.run(repo, "pull_request", PR_EVENT, WORKFLOW, **run)
        yield {"base": base, "pr": pr, "github": github, "archives": archives}


def bodies(github) -> dict[str, str]:
    """{spec path from the repository root (the comment's key, without its `set` digest): body}."""
    return {re.match(r"<!-- runner:comment key=(\S+)", c["body"]).group(1): c["body"]
            for c in github.comments.get(7, [])}


def test_the_push_run_uploads_one_record_per_spec(flow):
    base = flow["base"]
    assert base.returncode == 0, log(base)[-6000:]
    print(f"\nact wall time, push run: {base.wall_s:.1f} s")
    assert [name for name in flow["archives"] if name.startswith("runner-baseline-ml-specs-a")]


def test_each_spec_compared_only_with_its_own_baseline(flow):
    pr, github = flow["pr"], flow["github"]
    text = log(pr)
    assert pr.returncode == 0, text[-6000:]
    print(f"\nact wall time, pull request run: {pr.wall_s:.1f} s")
    found = bodies(github)
    a = found["ml/specs/a.yaml"]
    b = found["ml/specs/b.yaml"]
    # Found through the renamed workflow's own file, with working-directory ml (the key is from the root).
    assert any("/actions/workflows/ml-train.yml/runs?" in path for path in github.calls("GET"))
    assert "Compared with the baseline of `ml/specs/a.yaml` from run 5000 on `main`" in a
    assert "Δ" in a  # the paired comparison, against a's own baseline
    # The new spec is not compared with a's baseline: no interval, no verdict, and the comment says so.
    assert (
        "No baseline for this spec: the baseline (run 5000 on `main`" in b and "has no record of `ml/specs/b.yaml`" in b
    )
    assert "Δ" not in b
    # The storage host got no token.
    assert flow["github"].blobs.authorizations == [""]


def test_a_baseline_committed_in_the_pull_request_is_ignored(flow):
    a = bodies(flow["github"]).get("ml/specs/a.yaml", "")
    assert a and f"{PLANTED}" not in a and "Compared with the baseline of `ml/specs/a.yaml` from run 5000" in a


def test_the_real_actions_cache_saves_then_restores_pips_cache(flow):
    first, second = log(flow["base"]), log(flow["pr"])
    saved = re.search(r"Cache saved with key: (runner-pip-Linux-X64-pypi-[0-9a-f]{16})", first)
    assert saved, first[-4000:]
    # (act's cache server hands keys back in lower case)
    assert f"cache restored from key: {saved.group(1)}".lower() in second.lower(), second[-4000:]
    assert "Cache not found" not in second


def test_markup_from_the_data_is_inert_in_the_comment(flow):
    b = bodies(flow["github"]).get("ml/specs/b.yaml", "")
    assert b, "no comment for specs/b.yaml"
    assert "<img" not in b and "![p](" not in b
    assert not re.search(r"(^|[\s(|])@octocat\b", b)  # no mention that pings
    assert b.count("<!-- runner:comment") == 1  # the marker is only ours
