"""action.yml and the example workflows: valid for GitHub, clean for zizmor, wired to runner.publish.action.

The same files run by a real Actions runner (act): tests/act/test_act.py."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from runner.publish import action as action_step

ROOT = Path(__file__).resolve().parents[2]
ACTION = ROOT / "action.yml"
WORKFLOWS = sorted((ROOT / "examples" / "workflows").glob("*.yml"))
README_INSTALL = "pip install torch==2.13.0 ."
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def tool(name: str) -> str:
    path = shutil.which(name, path=str(Path(sys.executable).parent)) or shutil.which(name)
    if not path:
        pytest.skip(f"{name} is not installed (pip install '.[test]')")
    return path


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def readme_install_lines() -> list[str]:
    lines = [line.strip().removeprefix("$ ") for line in (ROOT / "README.md").read_text().splitlines()]
    installs = [line for line in lines if line.startswith("pip install torch==")]
    assert installs, "README.md has no `pip install torch==... .` line"
    return installs


def run_blocks(document: dict) -> list[str]:
    steps = list((document.get("runs") or {}).get("steps", []))
    for job in (document.get("jobs") or {}).values():
        steps += job.get("steps", [])
    return [step["run"] for step in steps if "run" in step]


def test_there_are_four_example_workflows():
    assert [p.name for p in WORKFLOWS] == ["gpu-self-hosted.yml", "monorepo-matrix.yml", "release.yml",
                                           "train-on-pr.yml"]


def test_action_matches_github_actions_schema():
    proc = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-actions", str(ACTION)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_example_workflows_match_github_workflows_schema():
    proc = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_zizmor_finds_nothing_medium_or_high():
    proc = subprocess.run(
        [tool("zizmor"), "--offline", "--format", "json", str(ACTION), *map(str, WORKFLOWS)],
        capture_output=True,
        text=True,
    )
    # 0: no findings; 10 + n: findings, worst severity n; anything else: zizmor itself failed.
    assert proc.returncode == 0 or 10 <= proc.returncode <= 14, proc.stderr
    findings = json.loads(proc.stdout)
    serious = [
        f"{f['ident']} ({f['determinations']['severity']}): {f['desc']}"
        for f in findings
        if f["determinations"]["severity"] in ("Medium", "High") and not f.get("ignored")
    ]
    assert serious == []


@pytest.mark.parametrize("path", [ACTION, *WORKFLOWS], ids=lambda p: p.name)
def test_run_blocks_take_inputs_through_env_only(path):
    for script in run_blocks(load(path)):
        assert "${{" not in script, f"expression inside a run: block of {path.name}:\n{script}"


@pytest.mark.parametrize("path", [ACTION, *WORKFLOWS], ids=lambda p: p.name)
def test_actions_are_pinned_to_a_commit_with_a_version_comment(path):
    for line in path.read_text().splitlines():
        match = re.match(r"\s*(?:- )?uses:\s*(\S+)(.*)", line)
        if not match or match.group(1).startswith("./"):
            continue
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", match.group(1)), line
        assert re.match(r"\s*# v\d", match.group(2)), f"no version comment: {line}"


# The step variables that are not an input as it is: whether hf-token is set (prepare checks compute: hf-jobs
# without holding the token), the token in train only with compute set, and the torch build the install chose.
SPECIAL_ENV = {
    "prepare": {"INPUT_HF_TOKEN_GIVEN": "${{ inputs.hf-token != '' }}"},
    "train": {
        "INPUT_HF_TOKEN": "${{ inputs.compute != '' && inputs.hf-token || '' }}",
        "RUNNER_TORCH_VARIANT": "${{ steps.plan.outputs.torch-variant }}",
        "RUNNER_TORCH_INDEX": "${{ steps.plan.outputs.torch-index }}",
    },
}


def test_action_passes_every_input_to_the_phase_that_needs_it():
    """Each phase is a step with only its inputs: no GitHub token in train or push; the Hugging Face token in
    push, and in train only when it starts Jobs (compute set)."""
    action = load(ACTION)
    steps = {step.get("id"): step for step in action["runs"]["steps"]}
    for phase, inputs in action_step.PHASE_INPUTS.items():
        step = steps[phase]
        assert step["run"] == f'"$RUNNER_PYTHON" -m runner.publish.action {phase}'
        assert step["env"]["RUNNER_PYTHON"] == "${{ steps.install.outputs.python }}"
        assert step["env"]["PYTHONSAFEPATH"] == "1"
        assert step["working-directory"] == "${{ inputs.working-directory }}"
        wanted = {action_step.ACTION_INPUTS[name]: f"${{{{ inputs.{name} }}}}" for name in inputs}
        wanted |= SPECIAL_ENV.get(phase, {})
        assert {k: v for k, v in step["env"].items() if k not in ("RUNNER_PYTHON", "PYTHONSAFEPATH")} == wanted
    assert "GITHUB_TOKEN" not in steps["train"]["env"] and "GITHUB_TOKEN" not in steps["push"]["env"]
    holding = [step.get("id") or step.get("name") for step in action["runs"]["steps"]
               if any("inputs.hf-token" in str(value) and "inputs.hf-token != ''" not in str(value)
                      for value in (step.get("env") or {}).values())]
    assert holding == ["train", "push"]
    everywhere = "\n".join(json.dumps(step) for step in action["runs"]["steps"])
    assert everywhere.count("inputs.hf-token") == 3
    used = {name for inputs in action_step.PHASE_INPUTS.values() for name in inputs} | set(action_step.INSTALL_INPUTS)
    assert set(action["inputs"]) == used == set(action_step.ACTION_INPUTS) | set(action_step.INSTALL_INPUTS)


def test_action_inputs_and_outputs():
    action = load(ACTION)
    inputs = action["inputs"]
    assert inputs["spec"]["required"] is True
    defaults = {name: spec.get("default") for name, spec in inputs.items()}
    assert defaults | {"github-token": None} == {
        "spec": None,
        "push": "false",
        "comment": "true",
        "set": "",
        "compute": "",
        "python-version": "3.11",
        "working-directory": ".",
        "base-metrics": "",
        "baseline": "auto",
        "baseline-artifact": "runner-baseline",
        "allow-untrusted-code": "false",
        "hf-token": "",
        "tag": "",
        "upload-model": "false",
        "artifact-name": "",
        "github-token": None,
        "extra-packages": "",
        "torch-cuda": "auto",
        "torch-index-url": "",
    }
    assert defaults["github-token"] == "${{ github.token }}"
    outputs = {name: spec["value"] for name, spec in action["outputs"].items()}
    assert set(outputs) == {"run-dir", "metrics", "model-url", "artifact-name"}
    for name, value in outputs.items():
        step = "push" if name == "model-url" else "train"
        assert value == f"${{{{ steps.{step}.outputs.{name} }}}}" and name in action_step.ACTION_OUTPUTS
    [upload] = [step for step in action["runs"]["steps"] if step.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["with"]["path"] == "${{ steps.train.outputs.artifact-path }}"
    assert "!cancelled()" in upload["if"] and "artifact-path != ''" in upload["if"]


def test_action_installs_like_the_readme_into_its_own_environment():
    steps = {step.get("name"): step for step in load(ACTION)["runs"]["steps"]}
    local, cpu = readme_install_lines()[:2]
    assert local == README_INSTALL
    assert cpu == f"pip install torch==2.13.0 --index-url {CPU_INDEX}"
    # The job's Python is only a base: PATH and the tool-cache Python stay as they were.
    assert steps["Set up Python"]["with"]["update-environment"] is False
    install = steps["Install runner"]
    assert install["env"]["PYTHON"] == "${{ steps.python.outputs.python-path }}"
    script = install["run"]
    assert 'venv="$RUNNER_TEMP/runner-venv"' in script and '"$PYTHON" -m venv --clear "$venv"' in script
    assert 'pip install --no-compile torch==2.13.0 --index-url "$TORCH_INDEX"' in script
    assert 'pip install --no-compile torch==2.13.0 "$ACTION_PATH" "${extra[@]}"' in script
    assert install["env"]["PIP_CACHE_DIR"] == "${{ steps.plan.outputs.cache-dir }}"
    # torch-cuda picks PyTorch's index on GPU and CPU runners alike (auto: cu126 with a GPU, like
    # the Docker image's default; cpu without); pip's downloads cached between jobs, keyed by it.
    plan = steps["Plan the install"]["run"]
    assert "nvidia-smi -L" in plan and 'index="https://download.pytorch.org/whl/$variant"' in plan
    assert 'if [ "$gpu" = true ]; then variant=cu126; else variant=cpu; fi' in plan
    assert "cache-key=runner-pip-$RUNNER_OS-$RUNNER_ARCH-$variant-$key" in plan
    assert re.search(r"^ARG TORCH_CUDA=cu126$", (ROOT / "Dockerfile").read_text(), re.M)
    assert "sys.version_info < (3, 11)" in plan
    cache = steps["Cache pip downloads"]
    assert cache["uses"].startswith("actions/cache@")
    assert cache["with"] == {
        "path": "${{ steps.plan.outputs.cache-dir }}",
        "key": "${{ steps.plan.outputs.cache-key }}",
        "restore-keys": "${{ steps.plan.outputs.cache-prefix }}",
    }


@pytest.mark.parametrize("name", ["train-on-pr.yml", "release.yml"])
def test_example_workflows_tell_users_to_replace_uses_dot(name):
    text = (ROOT / "examples" / "workflows" / name).read_text()
    assert "uses: ./" in text
    header = text.split("\nname:", 1)[0]
    assert "replace `uses: ./` with" in header.replace("\n# ", " ") and "OWNER/runner@<full commit sha>" in header


def test_train_on_pr_overrides_are_valid_for_the_example_spec(tmp_path):
    """The `set:` lines of train-on-pr.yml must be keys a spec has (train.seed is not: seed is)."""
    workflow = load(ROOT / "examples" / "workflows" / "train-on-pr.yml")
    [job] = workflow["jobs"].values()
    [step] = [step for step in job["steps"] if step.get("uses") == "./"]
    args = action_step.parse_overrides(step["with"]["set"])
    assert args
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "runner",
            "run",
            str(ROOT / "examples" / "emotions.yaml"),
            *args,
            "--dry-run",
            "--output",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    # The baseline is the action's (baseline: auto): a push run names its artifact runner-baseline-<spec> itself
    # (one per job: a matrix's jobs never collide), so the workflow sets no artifact-name.
    assert "base-metrics" not in step["with"] and "baseline" not in step["with"]
    assert "artifact-name" not in step["with"]
    assert "gh run" not in (ROOT / "examples" / "workflows" / "train-on-pr.yml").read_text()


def triggers(workflow: dict) -> dict:
    return workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true


def test_train_on_pr_is_safe_for_forks():
    workflow = load(ROOT / "examples" / "workflows" / "train-on-pr.yml")
    on = triggers(workflow)
    assert "pull_request_target" not in on
    assert {"specs/**", "**/*.yaml"} <= set(on["pull_request"]["paths"])
    assert workflow["permissions"] == {}
    [job] = workflow["jobs"].values()
    assert job["permissions"] == {"contents": "read", "pull-requests": "write", "actions": "read"}
    text = (ROOT / "examples" / "workflows" / "train-on-pr.yml").read_text()
    assert "secrets." not in text
    checkout = job["steps"][0]
    assert checkout["uses"].startswith("actions/checkout@") and checkout["with"]["persist-credentials"] is False


def test_release_pushes_with_the_git_tag():
    workflow = load(ROOT / "examples" / "workflows" / "release.yml")
    assert triggers(workflow) == {"push": {"tags": ["v*"]}}
    [job] = workflow["jobs"].values()
    [step] = [step for step in job["steps"] if step.get("uses") == "./"]
    assert "env" not in step and step["with"]["hf-token"] == "${{ secrets.HF_TOKEN }}"
    assert step["with"]["push"] == "true" and step["with"]["tag"] == "${{ github.ref_name }}"
    assert "upload-model" not in step["with"]  # the weights go to the Hub, not into the artifact


def test_gpu_workflow_runs_the_image_on_a_self_hosted_gpu():
    """The shape; tests/act/test_act_gpu_workflow.py runs it under act with a recording docker."""
    workflow = load(ROOT / "examples" / "workflows" / "gpu-self-hosted.yml")
    assert set(triggers(workflow)) == {"workflow_dispatch", "workflow_call"}
    [job] = workflow["jobs"].values()
    assert "fork" in job["if"] and "pull_request_target" in job["if"]
    assert job["runs-on"] == ["self-hosted", "gpu"]
    scripts = "\n".join(run_blocks(workflow)).replace("\\\n", " ")
    assert '"https://github.com/$RUNNER_REPOSITORY.git#$RUNNER_REF"' in scripts and " . " not in scripts
    assert re.search(r'docker run --rm --name "\$CONTAINER" --gpus all .*"\$IMAGE" run "\$SPEC"', scripts)
    [stop] = [step for step in job["steps"] if "cancelled()" in str(step.get("if")) and "!" not in step["if"]]
    assert 'docker stop --time 30 "$CONTAINER"' in stop["run"]
    inputs = triggers(workflow)["workflow_dispatch"]["inputs"]
    assert inputs["torch-cuda"]["default"] == "cu126" and "cu130" in inputs["torch-cuda"]["options"]
