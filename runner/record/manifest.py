"""run.json: what went into a run (spec, data and model hashes, package versions, git state) and
what came out (the whole RunResult), written through the run folder."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

from runner import __version__
from runner.errors import DataError
from runner.files import sha256_file
from runner.record.paths import published_arg, published_argv, published_path
from runner.record.redact import redact  # noqa: F401 - the card imports it from here
from runner.record.render import examples_shown, without_examples
from runner.record.result import RunResult
from runner.record.rundir import RunDir, portable, spec_dir_of
from runner.spec.document import Spec

MANIFEST_FORMAT = 2
PACKAGES = (
    "torch",
    "transformers",
    "datasets",
    "peft",
    "accelerate",
    "tokenizers",
    "huggingface_hub",
    "pandas",
    "scikit-learn",
    "numpy",
)
# Data file roles in result.data_files and run.json, and the spec key each comes from.
DATA_KEYS = {"train": "train", "validation": "validation_file", "test": "test_file"}
def write_manifest(run_dir: RunDir, spec: Spec, result: RunResult) -> None:
    """run.json: what went in (spec, data and model hashes, versions, git) and what came out (the
    whole RunResult, so that the record can be written again from it). Secrets are redacted, and no
    path of the machine that ran it is written (rundir.published_path: relative to the run folder, the
    spec's folder or the working folder, else the file name alone; argv starts with `runner`)."""
    try:
        previous = run_dir.read_manifest()
    except DataError:
        previous = {}
    timing = result.timing
    hub_data = spec.data.get("hub")
    spec_dir = spec.base_dir if spec.path else None
    results = result.to_dict() if examples_shown(spec) else without_examples(result.to_dict())
    manifest = {
        "format": MANIFEST_FORMAT,
        "name": spec.name,
        "status": result.status,
        "started_at": timing.get("started_at"),
        "finished_at": timing.get("finished_at"),
        "argv": redact(published_argv(result.argv)),
        "seed": spec.seed,
        "spec_file": redact(_spec_file(spec)),
        "spec_dir": redact(spec_dir_of(run_dir.path, spec_dir)) if spec_dir else None,
        "spec_sha256": spec.sha256,
        "spec": redact(portable(spec.values)),
        "data": {"files": redact(data_file_hashes(spec, result, run_dir))},
        "model": redact(published_model(result.model)),
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "packages": package_versions(),
            "device": result.device,
            "precision": result.precision,
        },
        "git": git_state(spec.base_dir) if spec.path else None,
        "timing": timing,
        "results": redact(published_results(results, run_dir.path, spec_dir)),
    }
    if hub_data:
        manifest["data"]["hub"] = {**hub_data, **(result.data_files.get("hub") or {})}
    if "hub" in previous:
        manifest["hub"] = previous["hub"]
    run_dir.write_manifest(manifest)


def _spec_file(spec: Spec) -> str | None:
    """The spec as the user named it (relative to the working folder), or its file name when that folder
    does not hold it; run.json's spec_dir says where it is from the run folder."""
    return published_arg(str(spec.path)) if spec.path else None


def published_results(results: dict, run_dir: Path, spec_dir: Path | None) -> dict:
    """RunResult as a dict with no machine path: argv, data files, data sources, the base model's folder."""
    results = dict(results)
    results["argv"] = published_argv(results.get("argv") or [])
    results["data_files"] = {
        role: published_path(path, run_dir, spec_dir) if isinstance(path, (str, Path)) else path
        for role, path in (results.get("data_files") or {}).items()
    }
    summary = results.get("data_summary")
    if isinstance(summary, dict) and isinstance(summary.get("sources"), dict):
        sources = {role: published_arg(source) if isinstance(source, str) else source
                   for role, source in summary["sources"].items()}
        results["data_summary"] = {**summary, "sources": sources}
    results["model"] = published_model(results.get("model") or {})
    return results


def published_model(model: dict) -> dict:
    """The base model's provenance with its local folder (a path, or a package's folder in site-packages)
    as a published path."""
    model = dict(model)
    for key in ("path", "name_or_path"):
        if isinstance(model.get(key), str):
            model[key] = published_arg(model[key])
    return model


def data_file_hashes(spec: Spec, result: RunResult, run_dir: RunDir | None = None) -> dict:
    """{role: {path, relative_to (or outside), sha256, bytes}} for every local data file; a missing file
    gets sha256 None. Paths as rundir.published_path gives them (absolute without a run folder)."""
    files = {role: path for role, path in result.data_files.items() if isinstance(path, (str, Path))}
    if not files:
        files = {role: spec.resolve(spec.data[key]) for role, key in DATA_KEYS.items() if spec.data.get(key)}
    out = {}
    for role, name in files.items():
        path = Path(name).resolve()
        exists = path.is_file()
        where = (published_path(path, run_dir.path, spec.base_dir if spec.path else None) if run_dir is not None
                 else {"path": str(path)})
        out[role] = {
            **where,
            "sha256": sha256_file(path) if exists else None,
            "bytes": path.stat().st_size if exists else None,
        }
    return out


def package_versions() -> dict:
    versions = {"runner": __version__}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(folder: Path) -> dict | None:
    """{commit, dirty} of the git repository holding `folder`; None outside a repository."""

    def git(*args):
        return subprocess.run(
            ["git", "--no-optional-locks", "-C", str(folder), *args], capture_output=True, text=True, timeout=20
        )

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None
        status = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}
