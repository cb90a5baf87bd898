"""What a finished run keeps of its checkpoints: the best and the last, without the optimizer,
scheduler and RNG state, nor FSDP's second copy of the model (which only a resume needs, and a
finished run is not resumed). A MiniLM run kept 522 MB of checkpoints for a 91 MB model; the
optimizer state is two thirds of it. `train.keep_checkpoints: true` keeps everything. A run that
stops early is never pruned."""

from __future__ import annotations

import json
import re
from pathlib import Path

from runner.files import remove

# optimizer_0 / optimizer_0_rank1.bin: FSDP's optimizer state as a folder of shards, or a rank's own
RESUME_STATE = re.compile(r"(optimizer|scheduler|scaler)\.(pt|bin)|rng_state(_\d+)?\.pth|optimizer_\d+(_rank\d+\.bin)?")
# FSDP's own copy of the model (one file, a rank's file or a folder of shards), which the Trainer loads to
# resume and, during training, for the best model: pruned where the checkpoint holds the weights files too.
FSDP_MODEL = re.compile(r"pytorch_model_fsdp(_\d+)?(_rank\d+)?(\.bin)?")
FULL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json", "adapter_model.safetensors", "adapter_model.bin")


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file() and not f.is_symlink())


def checkpoint_folders(folder: Path) -> dict[int, Path]:
    if not folder.is_dir():
        return {}
    return {int(m.group(1)): p for p in folder.iterdir() if (m := re.fullmatch(r"checkpoint-(\d+)", p.name))
            and p.is_dir()}


def best_checkpoint(found: dict[int, Path]) -> Path | None:
    """The Trainer's best_model_checkpoint, as the newest trainer_state.json names it."""
    for step in sorted(found, reverse=True):
        try:
            state = json.loads((found[step] / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        best = state.get("best_model_checkpoint")
        return next((p for p in found.values() if best and p.name == Path(best).name), None)
    return None


def finish_checkpoints(folder: Path, keep_all: bool = False) -> dict:
    """Prune RUN/checkpoints after a finished run; returns what was kept and the disk used, for run.json."""
    folder = Path(folder)
    found = checkpoint_folders(folder)
    before = folder_bytes(folder) if folder.is_dir() else 0
    if keep_all or not found:
        return {"kept": sorted(p.name for p in found.values()), "pruned": False, "bytes": before,
                "bytes_before": before}
    last = found[max(found)]
    best = best_checkpoint(found) or last
    removed, state_files = [], 0
    for path in found.values():
        if path not in (best, last):
            remove(path, ignore_errors=True)
            removed.append(path.name)
            continue
        weights = any((path / name).is_file() for name in FULL_WEIGHTS)
        for item in path.iterdir():
            if RESUME_STATE.fullmatch(item.name) or (weights and FSDP_MODEL.fullmatch(item.name)):
                remove(item)
                state_files += 1
    after = folder_bytes(folder)
    kept = [f"{best.name} (best)"] + ([f"{last.name} (last)"] if last != best else [])
    return {"kept": kept, "removed": sorted(removed), "state_files_removed": state_files, "pruned": True,
            "bytes": after, "bytes_before": before}
