"""run.json: what went into a run (spec, data and model hashes, package versions, git state) and
what came out (the whole RunResult), written through the run folder."""

from __future__ import annotations

import ipaddress
import os
import platform
import re
import subprocess
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

from runner import __version__
from runner.errors import DataError
from runner.files import sha256_file
from runner.record.paths import published_arg, published_argv, published_path
from runner.record.render import examples_shown, without_examples
from runner.record.result import RunResult
from runner.record.rundir import RunDir, portable, spec_dir_of
from runner.redact import redact, redact_text
from runner.spec.document import Spec
from runner.spec.sections import DataSection

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
# The torch build the GitHub Action's install step chose (action.yml sets them for `runner run`; unset elsewhere).
TORCH_VARIANT_ENV, TORCH_INDEX_ENV = "RUNNER_TORCH_VARIANT", "RUNNER_TORCH_INDEX"
TORCH_VARIANT = re.compile(r"cpu|cu[0-9]+|rocm[0-9.]+|xpu|pypi")  # action.yml's torch-cuda values, auto resolved
URL_CHARS = re.compile(r"[!-~]+")  # printable ASCII, no space or control character


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
    hub_data = spec.data.hub
    spec_dir = spec.base_dir if spec.path else None
    results = result.to_dict() if examples_shown(spec.report) else without_examples(result.to_dict())
    manifest = {
        "format": MANIFEST_FORMAT,
        "name": spec.name,
        "status": result.status,
        "started_at": timing.get("started_at"),
        "finished_at": timing.get("finished_at"),
        "argv": redact(published_argv(result.argv)),
        "seed": spec.seed,
        "spec_file": redact(_spec_file(spec.path)),
        "spec_dir": redact(spec_dir_of(run_dir.path, spec_dir)) if spec_dir else None,
        "spec_sha256": spec.sha256,
        "spec": redact(portable(spec.values)),
        "data": {"files": redact(data_file_hashes(spec.data, spec.resolve, result, run_dir, spec_dir))},
        "model": redact(published_model(result.model)),
        "environment": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "packages": package_versions(),
            "torch_build": torch_build(),
            "device": result.device,
            "precision": result.precision,
        },
        "git": git_state(spec.base_dir) if spec.path else None,
        "timing": timing,
        "results": redact(published_results(results, run_dir.path, spec_dir)),
    }
    if hub_data:
        manifest["data"]["hub"] = {**spec.values["data"]["hub"], **(result.data_files.get("hub") or {})}
    if "hub" in previous:
        manifest["hub"] = previous["hub"]
    run_dir.write_manifest(manifest)


def _spec_file(path: Path | None) -> str | None:
    """The spec file (Spec.path) as the user named it (relative to the working folder), or its file name when
    that folder does not hold it; run.json's spec_dir says where it is from the run folder."""
    return published_arg(str(path)) if path else None


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


def data_file_hashes(data: DataSection, resolve: Callable[[str], Path], result: RunResult,
                     run_dir: RunDir | None = None, spec_dir: Path | None = None) -> dict:
    """{role: {path, relative_to (or outside), sha256, bytes}} for every local data file; a missing file
    gets sha256 None. Paths as rundir.published_path gives them (absolute without a run folder). The files are
    those the run read, else the spec's data section's (made absolute by `resolve`, Spec.resolve); `spec_dir` is
    the spec file's folder (None for a spec with no file)."""
    files = {role: path for role, path in result.data_files.items() if isinstance(path, (str, Path))}
    if not files:
        files = {role: resolve(getattr(data, key)) for role, key in DATA_KEYS.items() if getattr(data, key)}
    out = {}
    for role, name in files.items():
        path = Path(name).resolve()
        exists = path.is_file()
        where = (published_path(path, run_dir.path, spec_dir) if run_dir is not None
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


def torch_build(env: Mapping[str, str] = os.environ) -> dict | None:
    """{version, cuda, hip (ROCm builds only), cuda_available} as torch itself reports them, and, when the
    GitHub Action installed it, the variant (cpu, cu126, ..., pypi) and the index it came from (omitted for
    pip's configured index). A variant or index that is not one the action writes is left out, never
    recorded as given; None when torch does not import."""
    try:
        import torch
    except ImportError:
        return None
    build = {"version": str(torch.__version__), "cuda": _text(getattr(torch.version, "cuda", None))}
    hip = _text(getattr(torch.version, "hip", None))
    if hip:
        build["hip"] = hip
    try:
        build["cuda_available"] = bool(torch.cuda.is_available())
    except Exception:  # a broken driver: torch could not tell
        build["cuda_available"] = None
    variant = (env.get(TORCH_VARIANT_ENV) or "").strip()
    if len(variant) <= 32 and TORCH_VARIANT.fullmatch(variant):
        build["variant"] = variant
    index = published_index(env.get(TORCH_INDEX_ENV) or "")
    if index:
        build["index"] = index
    return build


def _text(value) -> str | None:
    return str(value) if value else None


def published_index(url: str) -> str | None:
    """A package index URL fit for run.json: https only, without its user and password (a token), query or
    fragment; None for anything else (another scheme, a host that is an IP address or has no dot, such as
    localhost, a bad port, spaces or control characters, a secret that redaction finds in what is left)."""
    url = url.strip()
    if not url or len(url) > 1024 or not URL_CHARS.fullmatch(url) or "\\" in url:
        return None
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme.lower() != "https" or not host or "." not in host.strip("."):
        return None
    try:
        ipaddress.ip_address(host)
        return None  # this machine's or its network's address
    except ValueError:
        pass
    published = f"https://{host}{'' if port is None else f':{port}'}{parts.path}"
    if "@" in published or redact_text(published) != published:
        return None
    return published


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
