"""Reliability: resume after an interruption, safe outputs, and secrets and trust.

One workspace is shared by the module's training runs (each costs seconds): an uninterrupted
run, a run stopped with SIGTERM, a refused resume with a changed spec, and the resume that
finishes it. Every run sees recognisable fake HF_TOKEN and GITHUB_TOKEN values, and the tests
below scan all they wrote. The rest are in-process checks of the pieces.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import labelled_rows, tiny_spec_text, write_csv

from runner.cli import main
from runner.errors import SpecError
from runner.files import atomic_write_json, read_json

HF_TOKEN = "hf_FakeTokenForTests" + "Zq7" * 6
GITHUB_TOKEN = "ghp_FakeTokenForTests" + "Xw4" * 6
TOKENS = {"HF_TOKEN": HF_TOKEN, "GITHUB_TOKEN": GITHUB_TOKEN}
STEPS = 32  # 4 epochs of 64 training rows in batches of 8

RESUMABLE = """  save_strategy: steps
  save_steps: 8
  eval_strategy: 'no'
  load_best_model_at_end: false
"""


def resumable_spec(model: Path) -> str:
    text = tiny_spec_text(model, output="unused").replace("epochs: 1\n", "epochs: 4\n" + RESUMABLE)
    return f"# a token pasted in a comment must not travel: {HF_TOKEN}\n" + text


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not str(p.relative_to(root)).startswith(skip)
    }


def cli(*args: str, env: dict | None = None):
    result = CliRunner().invoke(main, list(args), env=env)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


class Spy:
    """Wraps a callable and records each call's arguments."""

    def __init__(self, target):
        self.target, self.calls = target, []

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.target(*args, **kwargs)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model):
    """Run the lifecycle once: uninterrupted, interrupted by SIGTERM, refused resume, resume."""
    import transformers

    import runner.files

    root = tmp_path_factory.mktemp("reliability")
    write_csv(root / "data" / "train.csv", labelled_rows())
    spec = root / "spec.yaml"
    spec.write_text(resumable_spec(tiny_model), encoding="utf-8")
    (root / "notes.txt").write_text("a file beside the run folders\n")
    full, part = root / "full", root / "part"
    before = snapshot(root)
    out: dict = {"root": root, "spec": spec, "full": full, "part": part, "before": before, "outputs": []}

    with pytest.MonkeyPatch.context() as patch:
        for name, value in TOKENS.items():
            patch.setenv(name, value)
        replace = Spy(os.replace)
        patch.setattr(runner.files.os, "replace", replace)
        loaders = {}
        for cls in (
            transformers.AutoTokenizer,
            transformers.AutoConfig,
            transformers.AutoModelForSequenceClassification,
        ):
            loaders[cls.__name__] = Spy(cls.from_pretrained)
            patch.setattr(cls, "from_pretrained", loaders[cls.__name__])
        finished = cli("run", str(spec), "--output", str(full))
    out.update(finished=finished, replaced=[Path(args[1]) for args, _ in replace.calls], loaders=loaders)
    out["outputs"] += [finished.stdout, finished.stderr]

    env = {**os.environ, **TOKENS}
    command = [sys.executable, "-m", "runner", "run", str(spec), "--output", str(part)]
    with open(root / "interrupted.out", "w") as stdout, open(root / "interrupted.err", "w") as stderr:
        process = subprocess.Popen(command, cwd=root, env=env, stdout=stdout, stderr=stderr)
        started = root / "part" / "checkpoints" / "checkpoint-8" / "trainer_state.json"
        deadline = time.monotonic() + 300
        while not started.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        out["interrupted_code"] = process.wait(timeout=300)
    out["interrupted_out"] = (root / "interrupted.out").read_text()
    out["interrupted_err"] = (root / "interrupted.err").read_text()
    out["interrupted_manifest"] = read_json(part / "run.json") if (part / "run.json").exists() else {}
    out["checkpoints_after_interrupt"] = snapshot(part / "checkpoints")

    with pytest.MonkeyPatch.context() as patch:
        for name, value in TOKENS.items():
            patch.setenv(name, value)
        out["changed"] = cli("run", str(spec), "--output", str(part), "--resume", "--set", "train.learning_rate=0.002")
    out["outputs"] += [out["changed"].stdout, out["changed"].stderr]
    out["checkpoints_after_refusal"] = snapshot(part / "checkpoints")

    out["resumed"] = subprocess.run(
        command + ["--resume"], cwd=root, env=env, capture_output=True, text=True, timeout=600
    )
    out["outputs"] += [out["resumed"].stdout, out["resumed"].stderr]

    with pytest.MonkeyPatch.context() as patch:
        for name, value in TOKENS.items():
            patch.setenv(name, value)
        for fmt in ("markdown", "json"):
            report = cli("report", str(full), "--format", fmt, "--compare", str(part))
            out["outputs"] += [report.stdout, report.stderr]
    return out


# ---------------------------------------------------------------------------------------------
# Interruption and resume


def test_sigterm_saves_a_checkpoint_and_an_interrupted_record(runs):
    assert runs["interrupted_code"] == 143, runs["interrupted_err"][-2000:]
    assert "SIGTERM: saving a checkpoint and stopping" in runs["interrupted_out"]
    manifest = runs["interrupted_manifest"]
    assert manifest["status"] == "interrupted"
    step = manifest["timing"]["global_step"]
    assert 8 <= step < STEPS
    # the command that continues it keeps the user's --output (and --set)
    resume = f"continue with: runner run {runs['spec']} --output {runs['part']} --resume"
    assert f"interrupted at step {step}; {resume}" in runs["interrupted_err"]
    checkpoint = runs["part"] / "checkpoints" / f"checkpoint-{step}"
    names = {
        name.split("/")[-1] for name in runs["checkpoints_after_interrupt"] if name.startswith(checkpoint.name + "/")
    }
    assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json"} <= names
    assert (
        json.loads(runs["checkpoints_after_interrupt"][f"{checkpoint.name}/trainer_state.json"])["global_step"] == step
    )
    assert "Traceback" not in runs["interrupted_err"]


def test_resume_refuses_a_changed_spec_and_touches_nothing(runs):
    changed = runs["changed"]
    assert changed.exit_code == 2
    assert f"error: {runs['spec']}: the spec changed since the checkpoint was saved" in changed.stderr
    assert "hint: resume with the same spec, or pass --force-resume" in changed.stderr
    assert runs["checkpoints_after_refusal"] == runs["checkpoints_after_interrupt"]


def test_resumed_run_finishes_like_an_uninterrupted_one(runs):
    import torch
    from safetensors.torch import load_file

    resumed = runs["resumed"]
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    step = runs["interrupted_manifest"]["timing"]["global_step"]
    assert f"resuming from {runs['part'] / 'checkpoints' / f'checkpoint-{step}'}" in resumed.stdout
    assert runs["finished"].exit_code == 0, runs["finished"].output[-2000:]
    full, part = read_json(runs["full"] / "run.json"), read_json(runs["part"] / "run.json")
    assert full["status"] == part["status"] == "finished"
    assert full["timing"]["global_step"] == part["timing"]["global_step"] == STEPS
    last = max((runs["part"] / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert read_json(last / "trainer_state.json")["global_step"] == STEPS
    # Model, optimizer, scheduler and RNG state all came back: the weights match the uninterrupted run.
    a, b = (
        load_file(runs["full"] / "model" / "model.safetensors"),
        load_file(runs["part"] / "model" / "model.safetensors"),
    )
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-5), key


def test_fingerprint_refuses_changed_data_or_spec_unless_forced(tmp_path, tiny_model):
    from runner.flows.preflight import check_fingerprint
    from runner.spec.document import load_spec_text

    data = write_csv(tmp_path / "data" / "train.csv", labelled_rows())
    spec = load_spec_text(tiny_spec_text(tiny_model), tmp_path / "spec.yaml")
    files = {"train": str(data)}
    atomic_write_json(
        tmp_path / "run" / "checkpoints" / "fingerprint.json",
        check_fingerprint(tmp_path / "run", spec, files, False, False),
    )
    check_fingerprint(tmp_path / "run", spec, files, resuming=True, force=False)  # unchanged: fine

    data.write_text(data.read_text() + "one more happy day,pos\n")
    with pytest.raises(SpecError, match="the train data file changed since the checkpoint was saved") as caught:
        check_fingerprint(tmp_path / "run", spec, files, resuming=True, force=False)
    assert caught.value.where == str(data) and "--force-resume" in caught.value.hint
    check_fingerprint(tmp_path / "run", spec, files, resuming=True, force=True)
    check_fingerprint(tmp_path / "run", spec, files, resuming=False, force=False)

    other = load_spec_text(tiny_spec_text(tiny_model).replace("seed: 7", "seed: 8"), tmp_path / "spec.yaml")
    with pytest.raises(SpecError, match="the spec changed"):
        check_fingerprint(tmp_path / "run", other, files, resuming=True, force=False)
    moved = load_spec_text(tiny_spec_text(tiny_model, output="elsewhere"), tmp_path / "spec.yaml")
    check_fingerprint(tmp_path / "run", moved, {"train": str(data)}, resuming=True, force=True)


def test_a_second_signal_exits_at_once(monkeypatch):
    from runner.train import trainer as train

    exits = []
    monkeypatch.setattr(train.os, "_exit", exits.append)
    previous = signal.getsignal(signal.SIGTERM)
    with train.GracefulStop() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.signal_number == signal.SIGTERM and stop.exit_code == 143 and exits == []
        os.kill(os.getpid(), signal.SIGINT)
        assert exits == [128 + signal.SIGINT]
    assert signal.getsignal(signal.SIGTERM) == previous

    with train.GracefulStop() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.exit_code == 130
        callback = stop.callback()

        class Control:
            should_save = should_training_stop = False

        control = callback.on_step_end(None, None, Control())
        assert control.should_save and control.should_training_stop


def test_latest_checkpoint_skips_a_half_written_one(tmp_path):
    from runner.train.trainer import latest_checkpoint

    assert latest_checkpoint(tmp_path) is None
    for step, state in ((10, '{"global_step": 10}'), (20, '{"global_step": 20}'), (30, '{"global_st'), (40, None)):
        folder = tmp_path / "checkpoints" / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        if state is not None:
            (folder / "trainer_state.json").write_text(state)
    assert latest_checkpoint(tmp_path).name == "checkpoint-20"


# ---------------------------------------------------------------------------------------------
# Safe outputs


def test_run_record_files_are_written_by_rename(runs):
    replaced = {str(path.relative_to(runs["full"])) for path in runs["replaced"] if runs["full"] in path.parents}
    for name in (
        "metrics.json",
        "run.json",
        "report.md",
        "spec.yaml",
        "model/README.md",
        "predictions/validation.jsonl",
        "checkpoints/fingerprint.json",
    ):
        assert name in replaced, f"{name} was not written atomically; atomic writes: {sorted(replaced)}"
    for folder in (runs["full"], runs["part"]):
        leftovers = [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
        assert not leftovers, leftovers


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    import runner.files

    target = tmp_path / "metrics.json"
    atomic_write_json(target, {"f1": 0.9})

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runner.files.os, "fsync", full_disk)
    with pytest.raises(OSError):
        atomic_write_json(target, {"f1": 0.1})
    assert read_json(target) == {"f1": 0.9}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_finished_run_is_not_replaced_without_overwrite(runs):
    before = snapshot(runs["full"])
    refused = cli("run", str(runs["spec"]), "--output", str(runs["full"]))
    assert refused.exit_code == 2
    assert f"error: --output: output folder '{runs['full']}' already holds a finished run" in refused.stderr
    assert "--overwrite" in refused.stderr
    assert snapshot(runs["full"]) == before


def test_nothing_outside_the_run_folders_changed(runs):
    after = snapshot(runs["root"], skip=("full", "part", "interrupted."))
    assert after == {name: data for name, data in runs["before"].items()}


def test_overwrite_removes_only_what_a_run_wrote(tmp_path):
    from runner.files import remove
    from runner.flows.preflight import prepare
    from runner.record.rundir import ENTRIES, RunDir

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "precious.bin").write_bytes(b"keep me")
    (tmp_path / "sibling.txt").write_text("keep me too")
    run = tmp_path / "run"
    (run / "checkpoints" / "checkpoint-8").mkdir(parents=True)
    (run / "checkpoints" / "fingerprint.json").write_text("{}")
    (run / "run.json").write_text('{"format": 2, "spec_sha256": "0", "status": "finished"}')  # runner's record
    (run / "metrics.json").write_text("{}")
    (run / "my-notes.md").write_text("the user's own file")
    (run / "model").symlink_to(outside, target_is_directory=True)
    (run / "predictions").symlink_to(outside / "precious.bin")

    folder = RunDir(run)
    with pytest.raises(SpecError, match="already holds a finished run"):
        prepare(folder, overwrite=False, resume=False)
    assert prepare(folder, overwrite=True, resume=False) is None
    assert (run / "run.json").exists()  # checking removes nothing; clearing comes after the inputs load
    before = sorted(p.name for p in run.iterdir())
    folder.set_aside(ENTRIES)  # the earlier run goes aside while the new one runs ...
    assert sorted(p.name for p in run.iterdir()) == [".previous", "my-notes.md"]
    assert folder.restore() and sorted(p.name for p in run.iterdir()) == before  # ... and comes back if it fails
    folder.set_aside(ENTRIES)
    remove(folder.aside_dir)  # or goes for good when it finishes

    assert sorted(p.name for p in run.iterdir()) == ["my-notes.md"]
    assert (outside / "precious.bin").read_bytes() == b"keep me"
    assert (tmp_path / "sibling.txt").read_text() == "keep me too"


def test_resume_keeps_checkpoints_and_refuses_a_finished_run(tmp_path):
    from runner.files import remove
    from runner.flows.preflight import prepare
    from runner.record.rundir import RESUME_ENTRIES, RunDir

    run = tmp_path / "run"
    checkpoint = run / "checkpoints" / "checkpoint-8"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text('{"global_step": 8}')
    (run / "run.json").write_text('{"status": "interrupted"}')
    (run / "metrics.json").write_text("{}")
    folder = RunDir(run)
    assert prepare(folder, overwrite=False, resume=True) == checkpoint
    folder.set_aside(RESUME_ENTRIES)
    remove(folder.aside_dir)
    assert (checkpoint / "trainer_state.json").exists() and (run / "run.json").exists()
    assert not (run / "metrics.json").exists()

    (run / "run.json").write_text('{"status": "finished"}')
    with pytest.raises(SpecError, match="holds a finished run: there is nothing to resume"):
        prepare(folder, overwrite=False, resume=True)
    (run / "run.json").write_text("{not json")  # a damaged record counts as unfinished, not as a crash
    assert prepare(folder, overwrite=False, resume=True) == checkpoint


# ---------------------------------------------------------------------------------------------
# Secrets and trust


def test_tokens_appear_in_no_output_file_log_or_comment(runs):
    texts = runs["outputs"] + [runs["interrupted_out"], runs["interrupted_err"]]
    assert any("done:" in text for text in texts)  # the scan looks at real output
    for text in texts:
        for token in TOKENS.values():
            assert token not in text
    written = [p for folder in (runs["full"], runs["part"]) for p in folder.rglob("*") if p.is_file()]
    assert len(written) > 20
    for path in written:
        data = path.read_bytes()
        for token in TOKENS.values():
            assert token.encode() not in data, f"{token[:6]}... found in {path}"
            assert token.encode("utf-16-le") not in data, f"{token[:6]}... found in {path}"


def test_trust_remote_code_stays_off_unless_the_spec_sets_it(runs, tmp_path, tiny_model, monkeypatch):
    calls = [kwargs for spy in runs["loaders"].values() for _, kwargs in spy.calls]
    assert len(calls) >= 3
    assert all(kwargs.get("trust_remote_code") is False for kwargs in calls), calls

    import transformers

    from runner.spec.document import load_spec_text
    from runner.train.model import load_tokenizer, resolve_model_source

    seen = []

    def from_pretrained(name, **kwargs):
        seen.append(kwargs["trust_remote_code"])
        raise ValueError("stop here")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", from_pretrained)
    text = tiny_spec_text(tiny_model).replace("max_length: 32", "max_length: 32\n  trust_remote_code: true")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("text,label\n")
    spec = load_spec_text(text, tmp_path / "spec.yaml")
    with pytest.raises(SpecError):
        load_tokenizer(spec.model, resolve_model_source(spec.model, spec.resolve, spec.where), spec.where)
    assert seen == [True]


@pytest.mark.parametrize(
    "document",
    [
        "version: 1\ndata: !!python/object/apply:os.system ['touch {marker}']\n",
        "version: 1\nname: !!python/name:os.system\n",
        "version: 1\ndata: !!python/object/new:subprocess.Popen [['touch', '{marker}']]\n",
    ],
)
def test_yaml_is_loaded_safely(document, tmp_path):
    from runner.spec.document import load_spec_text

    marker = tmp_path / "pwned"
    with pytest.raises(SpecError, match="could not determine a constructor"):
        load_spec_text(document.format(marker=marker), tmp_path / "spec.yaml")
    assert not marker.exists()


def test_a_set_override_is_parsed_safely(tmp_path, tiny_model):
    from runner.spec.document import load_spec_text

    marker = tmp_path / "pwned"
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_text("text,label\n")
    with pytest.raises(SpecError):
        load_spec_text(
            tiny_spec_text(tiny_model),
            tmp_path / "spec.yaml",
            [f"name=!!python/object/apply:os.system ['touch {marker}']"],
        )
    assert not marker.exists()


def test_data_paths_are_resolved_relative_to_the_spec_file(tmp_path, tiny_model, monkeypatch):
    from runner.data.prepare import prepare_data
    from runner.spec.document import load_spec

    project = tmp_path / "project"
    write_csv(project / "data" / "train.csv", labelled_rows())
    spec_path = project / "specs" / "spec.yaml"
    spec_path.parent.mkdir()
    spec_path.write_text(tiny_spec_text(tiny_model, train="../data/train.csv"))
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "data").mkdir(parents=True)
    write_csv(elsewhere / "data" / "train.csv", labelled_rows(labels=("pos", "neg", "neu")))
    monkeypatch.chdir(elsewhere)

    spec = load_spec(spec_path)
    prepared = prepare_data(spec.data, spec.task, spec.labels, spec.seed, spec.resolve)
    assert prepared.files["train"] == str((project / "data" / "train.csv").resolve())
    assert prepared.labels == ["neg", "pos"]

    spec_path.write_text(tiny_spec_text(tiny_model, train="data/train.csv"))  # exists from the cwd only
    with pytest.raises(SpecError) as caught:
        load_spec(spec_path)
    assert f"data file 'data/train.csv' not found (looked in {spec_path.parent / 'data'})" in "\n".join(
        caught.value.lines()
    )
