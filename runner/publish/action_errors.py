"""The action's errors read back: `error:`/`hint:` lines as annotations at the spec's (or the
workflow's `set:`) line, and as the failing spec's comment; secrets scrubbed from what leaves the log."""

import os
import re
from collections.abc import Mapping
from pathlib import Path

from runner.publish.github import HF_TOKEN_VARS, escape_data, escape_property

ERROR_LINES = 40  # at most this many error/hint lines in a comment


_ERROR = re.compile(r"^error: (?P<text>.*)$")
_LOCATED = re.compile(r"^(?P<file>[^\s:][^:]*):(?P<line>\d+)(?::(?P<col>\d+))? (?P<rest>.*)$")
_SPEC_PATH = re.compile(r"^(?P<path>[\w.\[\]-]+): ")


def error_lines(stderr: str) -> list[str]:
    """The `error:` and `hint:` lines the runner printed (its one-line errors), in order."""
    lines = [line.rstrip("\r") for line in re.split(r"\r?\n|\r", stderr)]
    return [line for line in lines if line.startswith(("error: ", "hint: "))][-ERROR_LINES:]


def _workflow_file(env: Mapping[str, str], needle: str) -> tuple[str, int] | None:
    """The workflow file (relative to the workspace) and line holding `needle`, the `set:` line."""
    workspace = Path(env.get("GITHUB_WORKSPACE") or ".")
    ref = env.get("GITHUB_WORKFLOW_REF", "")
    match = re.match(r"[^/]+/[^/]+/(.+?)@", ref)
    candidates = [workspace / match.group(1)] if match else []
    candidates += sorted((workspace / ".github" / "workflows").glob("*.y*ml"))
    for path in candidates:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            continue
        for number, line in enumerate(lines, 1):
            if line.strip().removeprefix("- ").strip() == needle or line.strip().endswith(f"set: {needle}"):
                return path.relative_to(workspace).as_posix(), number
    return None


def _repo_path(file: str, env: Mapping[str, str]) -> str:
    """A path the runner printed (relative to the step's folder) as GitHub wants it: from the repository root."""
    workspace = env.get("GITHUB_WORKSPACE")
    if not workspace:
        return file
    path = os.path.relpath(os.path.abspath(file), os.path.abspath(workspace))
    return file if path.startswith("..") else Path(path).as_posix()


def annotations(stderr: str, spec: str, overrides: list[str], env: Mapping[str, str]) -> list[str]:
    """`::error file=...,line=...,col=...::` commands for each runner error in `stderr`.

    An error at a spec line is annotated there; an error caused by a `set:` line (the key it
    sets, or `--set ...` itself) at that line of the workflow file, since the spec is not where
    the mistake is."""
    keys = {line.split("=", 1)[0].strip(): line for line in overrides}
    commands = []
    lines = error_lines(stderr)
    for i, line in enumerate(lines):
        match = _ERROR.match(line)
        if not match:
            continue
        text = match.group("text")
        hint = lines[i + 1][len("hint: ") :] if i + 1 < len(lines) and lines[i + 1].startswith("hint: ") else ""
        located = _LOCATED.match(text)
        rest = located.group("rest") if located else text
        path = (_SPEC_PATH.match(rest) or [None, ""])[1] if not rest.startswith("--set") else ""
        override = next(
            (
                line
                for k, line in keys.items()
                if rest.startswith((f"--set {k}", f"--set '{k}")) or path == k or path.startswith(k + ".")
            ),
            None,
        )
        properties = {"title": f"runner: {spec}"}
        message = rest
        if override is not None:
            where = _workflow_file(env, override)
            if where:
                properties.update(file=where[0], line=str(where[1]))
            properties["title"] = f"runner: set: {override}"
        elif located:
            properties.update(file=_repo_path(located.group("file"), env), line=located.group("line"))
            if located.group("col"):
                properties["col"] = located.group("col")
        else:
            properties["file"] = _repo_path(spec, env)
        commands.append(error_command(properties, message + (f"\nhint: {hint}" if hint else "")))
    return commands


def error_command(properties: Mapping[str, str], message: str) -> str:
    """`::error file=..,line=..,col=..,title=..::message`, the properties in GitHub's documented order."""
    order = ("file", "line", "col", "title")
    props = ",".join(f"{k}={escape_property(properties[k])}" for k in order if k in properties)
    return f"::error {props}::{escape_data(message)}"


def gate_annotation(line: str, spec: str, env: Mapping[str, str]) -> str:
    """`::error file=SPEC,line=N,col=C::` for a failed quality gate, at the `gate:` key the reason names
    (`gate.max_drop`, `gate.min`, ...), else at `gate:`; only the file when the spec cannot be read."""
    from runner.errors import SpecError
    from runner.spec.yamlsource import parse_yaml

    properties = {"file": _repo_path(spec, env)}
    try:
        _, positions = parse_yaml(Path(spec).read_text(encoding="utf-8"), spec)
    except (OSError, UnicodeDecodeError, SpecError):
        positions = {}
    named = re.search(r"\bgate\.(\w+)", line)
    place = (named and positions.get(("<key>", "gate", named.group(1)))) or positions.get(("<key>", "gate"))
    if place:
        properties |= {"line": str(place[0]), "col": str(place[1])}
    properties["title"] = f"runner: quality gate ({spec})"
    return error_command(properties, line)


def failure_body(spec: str, command: str, rc: int, stderr: str) -> str:
    """The comment for a spec whose `runner run` (or push) failed: the error lines themselves."""
    from runner.record.render import code

    lines = error_lines(stderr)
    head = f"### runner: {code(spec)} failed\n\n`runner {command}` failed with exit code {rc}"
    if not lines:
        return head + "; see the job log."
    return head + ":\n\n```text\n" + "\n".join(lines).replace("```", "'''") + "\n```"


def scrub(text: str, env: Mapping[str, str]) -> str:
    """Secrets out of text that leaves the log (the comment, the summary): the log masks them, these do not."""
    for name in (*HF_TOKEN_VARS, "GITHUB_TOKEN"):
        secret = env.get(name, "")
        if len(secret) >= 8:
            text = text.replace(secret, "***")
    return text
