"""A finished run keeps the best and the last checkpoint, without the state only a resume needs."""

from __future__ import annotations

import json

from conftest import run_cli, tiny_spec_text, write_spec

from runner.record.report import describe_checkpoints as describe
from runner.train.checkpoints import finish_checkpoints


def fake_checkpoints(folder, steps=(10, 20, 30), best=20):
    for step in steps:
        path = folder / f"checkpoint-{step}"
        path.mkdir(parents=True)
        (path / "model.safetensors").write_bytes(b"m" * 1000)
        (path / "optimizer.pt").write_bytes(b"o" * 2000)
        (path / "scheduler.pt").write_bytes(b"s" * 10)
        (path / "rng_state.pth").write_bytes(b"r" * 10)
        (path / "trainer_state.json").write_text(
            json.dumps({"best_model_checkpoint": str(folder / f"checkpoint-{best}"), "global_step": step}))
    return folder


def test_the_best_and_the_last_are_kept_without_resume_state(tmp_path):
    folder = fake_checkpoints(tmp_path / "checkpoints")
    before = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    record = finish_checkpoints(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["checkpoint-20", "checkpoint-30"]
    for name in ("checkpoint-20", "checkpoint-30"):
        assert sorted(p.name for p in (folder / name).iterdir()) == ["model.safetensors", "trainer_state.json"]
    assert record["kept"] == ["checkpoint-20 (best)", "checkpoint-30 (last)"]
    assert record["removed"] == ["checkpoint-10"] and record["state_files_removed"] == 6
    assert record["bytes_before"] == before
    assert record["bytes"] == sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) < before
    assert "checkpoints:" in describe(record) and "best" in describe(record)


def test_the_best_being_the_last_keeps_one(tmp_path):
    folder = fake_checkpoints(tmp_path / "checkpoints", steps=(10, 20), best=20)
    record = finish_checkpoints(folder)
    assert [p.name for p in folder.iterdir()] == ["checkpoint-20"] and record["kept"] == ["checkpoint-20 (best)"]


def test_keep_checkpoints_keeps_everything(tmp_path):
    folder = fake_checkpoints(tmp_path / "checkpoints")
    files = sorted(str(p) for p in folder.rglob("*"))
    record = finish_checkpoints(folder, keep_all=True)
    assert sorted(str(p) for p in folder.rglob("*")) == files
    assert not record["pruned"] and record["bytes"] == record["bytes_before"]


def test_no_checkpoints_folder_is_fine(tmp_path):
    assert finish_checkpoints(tmp_path / "absent")["kept"] == []


def test_a_finished_run_prunes_and_says_the_disk_used(tiny_model, tiny_data):
    folder = tiny_data.parent.parent
    extra = "  save_total_limit: null\n"
    text = tiny_spec_text(tiny_model).replace("  epochs: 1\n", "  epochs: 3\n").replace(
        "  early_stopping_patience: null\n", "  early_stopping_patience: null\n" + extra)
    spec = write_spec(folder, text)
    result = run_cli("run", str(spec), cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoints = folder / "run" / "checkpoints"
    kept = sorted(p.name for p in checkpoints.iterdir() if p.is_dir())  # fingerprint.json lives there too
    assert 1 <= len(kept) <= 2
    assert not [p for p in checkpoints.rglob("*") if p.name in ("optimizer.pt", "scheduler.pt", "rng_state.pth")]
    record = json.loads((folder / "run" / "run.json").read_text())["results"]["checkpoints"]
    assert record["pruned"] and record["bytes"] < record["bytes_before"]
    assert "checkpoints" in (folder / "run" / "report.md").read_text()


def test_keep_checkpoints_true_keeps_the_optimizer_state(tiny_model, tiny_data):
    folder = tiny_data.parent.parent
    text = tiny_spec_text(tiny_model).replace("  batch_size: 8\n", "  batch_size: 8\n  keep_checkpoints: true\n")
    spec = write_spec(folder, text)
    result = run_cli("run", str(spec), cwd=folder)
    assert result.returncode == 0, result.stderr[-3000:]
    assert list((folder / "run" / "checkpoints").rglob("optimizer.pt"))
    assert not json.loads((folder / "run" / "run.json").read_text())["results"]["checkpoints"]["pruned"]
