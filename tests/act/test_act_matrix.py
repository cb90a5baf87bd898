"""The action in matrices and monorepos under a real Actions runner (act), with the pinned actions.

- monorepo-matrix.yml copied into a repository of two projects (projA, projB) that both hold
  specs/model.yaml: a push to main (a matrix of two jobs) uploads one baseline artifact per job; the
  loopback GitHub serves that push run's artifacts; a pull request (the same matrix) gives two comments,
  two artifacts, and compares each project's spec with its own record.
- train-on-pr.yml with `compute: hf-jobs:cpu-basic` and `hf-token: ${{ secrets.HF_TOKEN }}`, against the
  loopback Hub whose Jobs really run the job: every bash step (BASH_ENV) and node action (NODE_OPTIONS
  --require) writes its whole environment down, and the token is found only in the step that starts the job.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT
from support.act_runner import PR_EVENT, Act, commit, log
from support.github_actions_fake import FakeActionsGitHub
from support.github_fake import TOKEN
from support.hub_server import TEST_TOKEN, FakeHub

pytestmark = pytest.mark.act

WORKFLOW = "monorepo-matrix.yml"
SERIAL = ("--concurrent-jobs", "1")  # two cores: the matrix's jobs one after the other (each installs torch)


def comment_keys(github) -> dict[str, str]:
    return {re.match(r"<!-- runner:comment key=(\S+)", c["body"]).group(1): c["body"]
            for c in github.comments.get(7, [])}


@pytest.fixture(scope="module")
def monorepo(act: Act, tmp_path_factory):
    with FakeActionsGitHub(login=None) as github:
        repo = act.repository("mono", WORKFLOW, {"model.yaml": act.spec()}, subdir="projA")
        shutil.copytree(repo / "projA", repo / "projB")
        text = (repo / "projB" / "specs" / "model.yaml").read_text()
        (repo / "projB" / "specs" / "model.yaml").write_text(text.replace("seed: 7", "seed: 8"))
        commit(repo, "a second project with the same spec path")
        run = {"env": {"GITHUB_API_URL": github.url}, "secrets": {"GITHUB_TOKEN": TOKEN}, "extra": SERIAL}
        push = act.run(repo, "push", {"ref": "refs/heads/main"}, WORKFLOW, **run)
        pushed = dict(act.artifact_archives(repo))
        github.add_run(WORKFLOW, "main", {name: path.read_bytes() for name, path in pushed.items()})
        subprocess.run(["git", "checkout", "-qb", "feature"], cwd=repo, check=True)
        (repo / "projA" / "specs" / "model.yaml").write_text(act.spec().replace("  epochs: 1\n", "  epochs: 2\n"))
        commit(repo, "projA trains longer")
        pr = act.run(repo, "pull_request", PR_EVENT, WORKFLOW, **run)
        artifacts = dict(act.artifact_archives(repo))
        yield {"push": push, "pr": pr, "pushed": pushed, "artifacts": artifacts, "github": github}


def test_a_matrix_push_stores_one_baseline_per_job(monorepo):
    push = monorepo["push"]
    assert push.returncode == 0, log(push)[-6000:]
    print(f"\nact wall time, matrix push run: {push.wall_s:.1f} s")
    assert sorted(monorepo["pushed"]) == ["runner-baseline-projA-specs-model", "runner-baseline-projB-specs-model"]


def test_a_monorepo_matrix_pull_request_gives_each_project_its_comment_artifact_and_baseline(monorepo):
    pr, github = monorepo["pr"], monorepo["github"]
    assert pr.returncode == 0, log(pr)[-6000:]
    print(f"\nact wall time, matrix pull request run: {pr.wall_s:.1f} s")
    bodies = comment_keys(github)
    assert sorted(bodies) == ["projA/specs/model.yaml", "projB/specs/model.yaml"]  # two comments, none edited twice
    assert len(github.calls("POST")) == 2 and not github.calls("PATCH")
    for project, body in bodies.items():
        assert "### runner: tiny" in body
        assert f"Compared with the baseline of `{project}` from run 5000 on `main`" in body, body
        assert "/_temp/" not in body and "runner-baseline/" not in body and "/tmp/" not in body  # no runner path
    pr_artifacts = sorted(set(monorepo["artifacts"]) - set(monorepo["pushed"]))
    assert pr_artifacts == ["runner-train-projA-specs-model", "runner-train-projB-specs-model"]


SPY_BASH = """f="$SPY_DIR/bash-$$-$RANDOM.env"
{ printf 'SCRIPT=%s\\0' "$(head -c 600 "$0" 2>/dev/null | tr '\\0\\n' '  ')"; env -0; } > "$f" 2>/dev/null || true
"""
SPY_NODE = """const fs = require("fs"), path = require("path");
try {
  const lines = ["SCRIPT=" + process.argv.slice(1).join(" ")].concat(
    Object.entries(process.env).map(([k, v]) => k + "=" + v));
  fs.writeFileSync(path.join(process.env.SPY_DIR, `node-${process.pid}-${Date.now()}.env`), lines.join("\\0"));
} catch (e) {}
"""
HF_SECRET = TEST_TOKEN


@pytest.fixture(scope="module")
def hf_jobs(act: Act, tmp_path_factory):
    spies = tmp_path_factory.mktemp("spies")
    (spies / "spy.sh").write_text(SPY_BASH)
    (spies / "spy.js").write_text(SPY_NODE)
    (spies / "env").mkdir()
    hub = FakeHub().start()
    hub.job_env.update({"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
                        "RUNNER_CACHE_DIR": str(spies / "remote-cache")})
    try:
        with FakeActionsGitHub() as github:
            repo = act.repository("jobs", "train-on-pr.yml", {"tiny.yaml": act.spec()},
                                  **{"compute": "hf-jobs:cpu-basic", "hf-token": "${{ secrets.HF_TOKEN }}"})
            env = {"GITHUB_API_URL": github.url, "HF_ENDPOINT": hub.url, "RUNNER_JOBS_IMAGE": "registry.test/runner",
                   "SPY_DIR": str(spies / "env"), "BASH_ENV": str(spies / "spy.sh"),
                   "NODE_OPTIONS": f"--require {spies / 'spy.js'}"}
            proc = act.run(repo, "pull_request", PR_EVENT, "train-on-pr.yml", env=env,
                           secrets={"GITHUB_TOKEN": TOKEN, "HF_TOKEN": HF_SECRET})
            yield {"proc": proc, "dumps": sorted((spies / "env").iterdir()), "github": github, "hub": hub}
    finally:
        hub.stop()



def step_of(script: str) -> str:
    for phase in ("prepare", "train", "push", "publish"):
        if f"runner.publish.action {phase}" in script:
            return phase
    for name, needle in (("setup-python", "setup-python"), ("upload-artifact", "upload-artifact"),
                         ("install", "runner-venv"), ("plan", "version_info < (3, 11)"), ("cache", "cache")):
        if needle in script:
            return name
    return "other: " + script[:80]


def test_compute_hf_jobs_token_is_only_in_the_step_that_starts_the_job(hf_jobs):
    proc = hf_jobs["proc"]
    text = log(proc)
    assert proc.returncode == 0, text[-6000:]
    print(f"\nact wall time, hf-jobs run: {proc.wall_s:.1f} s")
    assert len(hf_jobs["hub"].jobs) == 1 and hf_jobs["hub"].jobs[0].stage == "COMPLETED"
    holding, seen, by_act = set(), set(), set()
    for dump in hf_jobs["dumps"]:
        fields = Path(dump).read_bytes().decode("utf-8", "replace").split("\0")
        step = step_of(fields[0])
        seen.add(step)
        for field in fields[1:]:
            name, _, value = field.partition("=")
            if HF_SECRET not in value:
                continue
            # act also hands every input to every step of a composite action as INPUT_<NAME> (nektos/act#2874);
            # GitHub's runner does not (actions/runner#665): that variable is act's, not the action's wiring
            (by_act if name == "INPUT_HF-TOKEN" else holding).add(step)
    # the spies saw every step of the action, so an absent token is not an absent spy
    assert {"setup-python", "plan", "install", "prepare", "train", "publish", "upload-artifact"} <= seen, seen
    # the step that starts the job, and the push step (its phase pushes when `push` is set; here it returns)
    assert holding == {"train", "push"}, (holding, seen)
    assert not {"setup-python", "upload-artifact", "cache"} & by_act  # act's INPUT_ too reaches only run steps
    [comment] = hf_jobs["github"].comments[7]
    assert "### runner: tiny" in comment["body"] and HF_SECRET not in comment["body"]
