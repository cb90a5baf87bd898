"""A hostile or careless user, command by command: every call below must fail cleanly (exit 1 or 2,
an `error:` line and a `hint:` line, no traceback, no internal error) and never echo what is
inside the files it was given (a secret is planted in each bad file). A few cases also check
that nothing was lost: convert's input, a run's model after a refused resume.

The cases run the real CLI in a subprocess in one workspace with one finished run in `run/`.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
from conftest import ROOT, labelled_rows, run_cli, tiny_spec_text, write_csv

SECRET = "hf_PlantedSecret" + "Qx9" * 6

CASES = [
    # (id, command line, exit code)
    ("validate-missing", "validate missing.yaml", 2),
    ("validate-folder", "validate data", 2),
    ("validate-binary", "validate binary.yaml", 2),
    ("validate-empty", "validate empty.yaml", 2),
    ("validate-list", "validate list.yaml", 2),
    ("validate-nan", "validate spec.yaml --set train.epochs=.nan", 2),
    ("validate-set-no-equals", "validate spec.yaml --set noequals", 2),
    ("validate-set-empty-key", "validate spec.yaml --set =3", 2),
    ("validate-secret-yaml", "validate secret.yaml", 2),
    # a token typed where a --set or an option goes is quoted back by the error, redacted
    ("validate-set-token-no-equals", f"validate spec.yaml --set HF_TOKEN:{SECRET}", 2),
    ("validate-set-token-as-key", f"validate spec.yaml --set train.{SECRET}=1", 2),
    ("run-token-as-option", f"run spec.yaml --{SECRET}", 2),
    ("run-missing-spec", "run missing.yaml", 2),
    ("run-finished-no-overwrite", "run spec.yaml --output run", 2),
    ("run-resume-finished", "run spec.yaml --output run --resume", 2),
    ("run-output-is-file", "run spec.yaml --output data/train.csv", 2),
    ("run-overwrite-foreign-folder", "run spec.yaml --output foreign --overwrite", 2),
    ("run-package-dotted", "run spec.yaml --output o1 --set model.name=package:json.decoder", 2),
    ("run-device-mps", "run spec.yaml --output o2 --set train.device=mps", 1),
    ("run-device-cuda", "run spec.yaml --output o3 --set train.device=cuda", 1),
    ("run-secret-csv", "run spec.yaml --output o4 --set data.train=data/secret.csv", 2),
    ("run-secret-jsonl", "run spec.yaml --output o5 --set data.train=data/secret.jsonl", 2),
    ("run-resume-empty", "run spec.yaml --output empty --resume", 2),
    ("run-resume-truncated-optimizer", "run spec.yaml --output truncated-opt --resume", 2),
    ("run-tracker-missing", "run spec.yaml --output o6 --set train.report_to=[wandb]", 2),
    ("run-dry-bad-set", "run spec.yaml --dry-run --set train.epochs=abc", 2),
    # the output folder: inside a finished run, a name the system refuses, a repository holding only .git,
    # and a finished run with several processes (refused before torchrun starts, not in every worker)
    ("run-output-inside-a-run", "run spec.yaml --output run/sub", 2),
    ("run-output-inside-a-runs-model", "run spec.yaml --output run/model/sub", 2),
    ("run-output-name-too-long", "run spec.yaml --output " + "x" * 300, 2),
    ("run-output-only-dotfiles", "run spec.yaml --output repo", 2),
    ("run-nproc-into-a-finished-run", "run spec.yaml --output run --nproc 2", 2),
    ("report-damaged-headline", "report damaged-headline", 2),
    ("run-unknown-option", "run spec.yaml --bogus", 2),
    ("predict-missing-input", "predict run --input missing.txt", 2),
    ("predict-non-utf8-input", "predict run --input latin.txt", 2),
    ("predict-output-folder", "predict run hi --output data", 2),
    ("predict-negative-batch", "predict run hi --batch-size -1", 2),
    ("predict-zero-batch", "predict run hi --batch-size 0", 2),
    ("predict-truncated-weights", "predict truncated-weights hi", 1),
    ("predict-not-a-run", "predict nowhere hi", 2),
    ("predict-no-texts", "predict run", 2),
    ("predict-output-missing-folder", "predict run hi --output nodir/p.jsonl", 2),
    ("predict-secret-csv", "predict run --input data/secret.csv", 2),
    ("eval-missing-data", "eval run --data missing.csv", 2),
    ("eval-secret-jsonl", "eval run --data data/secret.jsonl", 2),
    ("eval-no-data-option", "eval run", 2),
    ("eval-not-a-run", "eval data --data data/train.csv", 2),
    ("report-not-a-run", "report nowhere", 2),
    ("report-folder-without-metrics", "report data", 2),
    ("report-compare-missing", "report run --compare missing", 2),
    ("report-bad-format", "report run --format xml", 2),
    ("report-secret-metrics", "report garbled", 2),
    ("push-not-a-run", "push nowhere", 2),
    ("reproduce-not-a-run", "reproduce nowhere", 2),
    ("reproduce-onto-itself", "reproduce run --output run", 2),
    ("convert-onto-its-input", "convert at/config.yml -o at/config.yml", 2),
    ("convert-onto-its-input-force", "convert at/config.yml -o ./at/../at/config.yml --force", 2),
    ("convert-missing", "convert missing.yml", 2),
    ("convert-native-spec", "convert spec.yaml", 2),
    ("convert-missing-folder", "convert at/config.yml -o nodir/x.yaml", 2),
    ("convert-existing-output", "convert at/config.yml -o spec.yaml", 2),
    ("init-onto-its-data", "init data/train.csv -o data/train.csv", 2),
    ("init-missing-folder", "init data/train.csv -o nodir/s.yaml", 2),
    ("init-missing-data", "init missing.csv", 2),
    ("init-secret-csv", "init data/secret.csv", 2),
    ("init-one-column", "init data/onecol.csv", 2),
    ("comment-not-a-run", "comment nowhere", 2),
    ("unknown-command", "nosuch", 2),
]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_model):
    root = tmp_path_factory.mktemp("hostile")
    write_csv(root / "data" / "train.csv", labelled_rows())
    (root / "spec.yaml").write_text(tiny_spec_text(tiny_model), encoding="utf-8")
    # keep_checkpoints: the optimizer state stays, so "truncated-opt" below has one to cut short
    result = run_cli("run", "spec.yaml", "--output", "run", "--set", "train.keep_checkpoints=true", cwd=root)
    assert result.returncode == 0, result.stderr
    (root / "binary.yaml").write_bytes(b"version: 1\n\xff\xfe\x00name: x\n")
    (root / "empty.yaml").write_text("", encoding="utf-8")
    (root / "list.yaml").write_text("- a\n- b\n", encoding="utf-8")
    (root / "secret.yaml").write_text(f"version: 1\nname: [{SECRET}\n", encoding="utf-8")
    (root / "data" / "secret.csv").write_text(f'text,label\n"{SECRET} unclosed,pos\nfine,neg\n', encoding="utf-8")
    (root / "data" / "secret.jsonl").write_text(f'{{"text": "a", "label": {SECRET}}}\n', encoding="utf-8")
    (root / "data" / "onecol.csv").write_text(f"text\n{SECRET}\n", encoding="utf-8")
    (root / "latin.txt").write_bytes(SECRET.encode() + b" caf\xe9\n")
    (root / "foreign").mkdir()
    (root / "foreign" / "model").mkdir()  # looks like a run's entry, but no run wrote it
    (root / "empty").mkdir()
    (root / "repo" / ".git").mkdir(parents=True)  # a repository (or a home folder): hidden files are files
    (root / "repo" / ".git" / "config").write_text("[core]\n", encoding="utf-8")
    (root / "damaged-headline").mkdir()
    (root / "damaged-headline" / "metrics.json").write_text(
        json.dumps({"validation": {"accuracy": 0.5}, "headline": {"split": ["validation"], "name": "accuracy"}}))
    (root / "garbled").mkdir()
    (root / "garbled" / "metrics.json").write_text(f"{{{SECRET}", encoding="utf-8")
    shutil.copytree(ROOT / "examples" / "autotrain", root / "at")
    # a run whose model weights were cut short
    shutil.copytree(root / "run", root / "truncated-weights")
    weights = root / "truncated-weights" / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:3000])
    # an unfinished run whose newest (only) checkpoint has a truncated optimizer state
    shutil.copytree(root / "run", root / "truncated-opt")
    manifest = json.loads((root / "truncated-opt" / "run.json").read_text(encoding="utf-8"))
    manifest["status"] = "interrupted"
    (root / "truncated-opt" / "run.json").write_text(json.dumps(manifest), encoding="utf-8")
    for optimizer in (root / "truncated-opt" / "checkpoints").glob("checkpoint-*/optimizer.pt"):
        optimizer.write_bytes(optimizer.read_bytes()[:1000])
    return root


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("command,code", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_hostile_call_fails_cleanly(workspace, command, code):
    watched = {name: tree_bytes(workspace / name) for name in ("run", "at", "truncated-opt", "repo")}
    result = run_cli(
        *shlex.split(command), cwd=workspace, env={"HF_TOKEN": "", "GITHUB_TOKEN": "", "GITHUB_EVENT_PATH": ""}
    )
    output = result.stdout + result.stderr
    assert result.returncode == code, output
    assert "Traceback" not in output and "internal error" not in output, output
    lines = result.stderr.splitlines()
    errors = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert errors, output
    assert all(i + 1 < len(lines) and lines[i + 1].startswith("hint:") for i in errors), output
    assert SECRET not in output, output
    for name, before in watched.items():  # nothing lost: the finished run, convert's input, a refused resume's model
        assert tree_bytes(workspace / name) == before, name


def test_a_dry_run_never_prints_a_token_pasted_into_a_value(workspace):
    result = run_cli("run", "spec.yaml", "--dry-run", "--set", f"model.name={SECRET}", cwd=workspace)
    assert result.returncode == 0 and "<redacted>" in result.stdout and SECRET not in result.stdout + result.stderr


def test_package_model_is_found_without_importing_anything(tmp_path, tiny_model):
    """`model.name: package:A.B` used to import A (running its top-level code) to find B."""
    package = tmp_path / "site" / "trap"
    package.mkdir(parents=True)
    marker = tmp_path / "imported"
    (package / "__init__.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n", encoding="utf-8")
    (package / "inner").mkdir()
    (package / "inner" / "__init__.py").write_text("", encoding="utf-8")
    write_csv(tmp_path / "data" / "train.csv", labelled_rows())
    (tmp_path / "spec.yaml").write_text(tiny_spec_text(tiny_model), encoding="utf-8")
    import os

    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])}
    result = run_cli("run", "spec.yaml", "--set", "model.name=package:trap.inner", cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert "top-level Python package" in result.stderr
    assert not marker.exists(), "the package's code ran"


def test_relative_output_dir_resolves_against_the_spec_folder(tmp_path, tiny_model):
    """The reference: relative paths resolve against the spec file's folder; --output against the working folder."""
    project = tmp_path / "project"
    write_csv(project / "data" / "train.csv", labelled_rows())
    (project / "spec.yaml").write_text(tiny_spec_text(tiny_model, output="runs/here"), encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run_cli("run", str(project / "spec.yaml"), "--dry-run", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert str(project / "runs" / "here") in result.stdout
    result = run_cli("run", str(project / "spec.yaml"), "--dry-run", "--output", "mine", cwd=elsewhere)
    assert " mine/" in result.stdout or "into mine/" in result.stdout, result.stdout


def test_convert_force_replaces_its_own_spec_but_never_its_input_or_a_users_file(workspace, tmp_path):
    target = tmp_path / "native.yaml"
    config = workspace / "at" / "config.yml"
    before = config.read_bytes()
    assert run_cli("convert", str(config), "-o", str(target), cwd=workspace).returncode == 0
    result = run_cli("convert", str(config), "-o", str(target), "--force", cwd=workspace)
    assert result.returncode == 0, result.stderr
    assert target.read_text(encoding="utf-8").startswith("# yaml-language-server")
    assert config.read_bytes() == before
    mine = tmp_path / "mine.yaml"
    mine.write_text("old\n", encoding="utf-8")
    result = run_cli("convert", str(config), "-o", str(mine), "--force", cwd=workspace)
    assert result.returncode == 2 and "runner did not write" in result.stderr
    assert mine.read_text(encoding="utf-8") == "old\n"
