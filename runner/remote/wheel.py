"""A wheel of the runner that runs here, for a job on a stock image to install (`runner run --on hf-jobs` without
an image), and the constraints that pin this environment's versions of what it needs.

The wheel is written from the running package's own files (runner/ where `runner` was imported from: a source
tree, an editable install or a normal one), with no build step and no network. Its metadata (requirements,
extras, the `runner` command) comes from the source tree's pyproject.toml when the package sits in one, else from
the installed distribution's metadata: so a clone with `pip install -e .`, a clone on PYTHONPATH and a normal
install all give a wheel of exactly the code that runs here.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import zipfile
from importlib import metadata
from pathlib import Path

import runner
from runner import __version__
from runner.errors import RunError
from runner.files import atomic_write_bytes

DIST = "runner"
ENTRY_POINTS = "[console_scripts]\nrunner = runner.cli:entry\n"
# Never pinned: the runner itself, and torch with what belongs to its build (the flavor's torch index decides).
UNPINNED = re.compile(r"(runner|torch|triton|pytorch-triton.*|nvidia-.*)")


def package_folder() -> Path:
    return Path(runner.__file__).resolve().parent


def package_files(folder: Path) -> list[tuple[str, Path]]:
    """(name in the wheel, file) of the package: every file but caches, compiled and hidden files; a linked
    folder followed (runner/schemas links to the source tree's schemas/)."""
    import os

    files = []
    for root, folders, names in os.walk(folder, followlinks=True):
        folders[:] = sorted(name for name in folders if name != "__pycache__" and not name.startswith("."))
        for name in sorted(names):
            path = Path(root) / name
            if not name.startswith(".") and path.suffix not in (".pyc", ".pyo") and path.is_file():
                files.append(("/".join((folder.name, *path.relative_to(folder).parts)), path))
    return sorted(files)


def project_metadata(folder: Path) -> tuple[list[str], dict[str, list[str]], str | None]:
    """(requirements, {extra: requirements}, requires-python) of the running runner."""
    pyproject = folder.parent / "pyproject.toml"
    if pyproject.is_file():
        try:
            import tomllib
        except ImportError:  # Python 3.10
            tomllib = None
        if tomllib is not None:
            project = tomllib.loads(pyproject.read_text(encoding="utf-8")).get("project") or {}
            if project.get("name") == DIST:
                return (list(project.get("dependencies") or []), dict(project.get("optional-dependencies") or {}),
                        project.get("requires-python"))
    try:
        found = metadata.distribution(DIST)
    except metadata.PackageNotFoundError:
        raise RunError(f"cannot tell what runner needs: no pyproject.toml beside {folder} and no installed "
                       "runner distribution", "install runner with pip (pip install -e . in a clone)") from None
    requires, extras = [], {name: [] for name in found.metadata.get_all("Provides-Extra") or []}
    for line in found.requires or []:
        match = re.search(r";.*\bextra\s*==\s*['\"]([^'\"]+)['\"]", line)
        if match:
            extras.setdefault(match.group(1), []).append(re.sub(r"\s*;.*$", "", line))
        else:
            requires.append(line)
    return requires, extras, found.metadata.get("Requires-Python")


def metadata_text(requires: list[str], extras: dict[str, list[str]], python: str | None) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {DIST}", f"Version: {__version__}",
             "Summary: Declarative fine-tuning of Hugging Face text classifiers (built for a job by runner)"]
    if python:
        lines.append(f"Requires-Python: {python}")
    lines += [f"Requires-Dist: {requirement}" for requirement in requires]
    for extra, requirements in extras.items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f"Requires-Dist: {requirement} ; extra == \"{extra}\"" for requirement in requirements]
    return "\n".join(lines) + "\n"


def wheel_name() -> str:
    return f"{DIST}-{__version__}-py3-none-any.whl"


def build_wheel(destination: Path) -> Path:
    """The wheel of the running runner in `destination`; its path."""
    folder = package_folder()
    requires, extras, python = project_metadata(folder)
    info = f"{DIST}-{__version__}.dist-info"
    entries = [(name, path.read_bytes()) for name, path in package_files(folder)]
    entries += [(f"{info}/METADATA", metadata_text(requires, extras, python).encode()),
                (f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: runner\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
                (f"{info}/entry_points.txt", ENTRY_POINTS.encode())]
    record = [f"{name},sha256={_digest(data)},{len(data)}" for name, data in entries] + [f"{info}/RECORD,,"]
    entries.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, data in entries:
            item = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))  # the same code, the same wheel
            item.external_attr = 0o644 << 16
            wheel.writestr(item, data, zipfile.ZIP_DEFLATED)
    path = destination / wheel_name()
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def constraints(extras: list[str]) -> str:
    """`name==version` of this environment for every distribution runner (with `extras`) needs, directly or not:
    the job installs what runs here. torch and its build's own packages are left to the flavor's index; a version
    with a local part (+...) is left out (no public index has it)."""
    from packaging.requirements import InvalidRequirement, Requirement

    requires, extra_requires, _ = project_metadata(package_folder())
    todo = [*requires, *(r for extra in extras for r in extra_requires.get(extra, []))]
    pins: dict[str, str] = {}
    seen: set[str] = set()
    while todo:
        try:
            requirement = Requirement(todo.pop())
        except InvalidRequirement:
            continue
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        if name in seen:
            continue
        seen.add(name)
        try:
            found = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if not UNPINNED.fullmatch(name) and "+" not in found.version:
            pins[name] = found.version
        for line in found.requires or []:
            try:
                needed = Requirement(line)
            except InvalidRequirement:
                continue
            wanted = requirement.extras or {""}
            if needed.marker is None or any(needed.marker.evaluate({"extra": extra}) for extra in wanted):
                todo.append(line)
    header = f"# this environment's versions of what runner {__version__} needs (runner run --on hf-jobs)\n"
    return header + "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))
