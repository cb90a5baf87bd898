"""The Dockerfile: pinned base, README's install line, non-root user, HF cache on a volume."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README_INSTALL = "pip install torch==2.13.0 ."


def parse(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs; comments dropped, `\\` continuations joined."""
    instructions, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment line inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1].rstrip() + " "
            continue
        current += stripped
        keyword, _, args = current.partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        current = ""
    return instructions


def readme_install_line() -> str:
    readme = ROOT / "README.md"
    if not readme.is_file():
        return README_INSTALL
    lines = [line.strip().removeprefix("$ ") for line in readme.read_text().splitlines()]
    installs = [line for line in lines if line.startswith("pip install torch==")]
    assert installs, "README.md has no `pip install torch==... .` line"
    return installs[0]


INSTRUCTIONS = parse((ROOT / "Dockerfile").read_text())


def values(keyword: str) -> list[str]:
    return [args for kw, args in INSTRUCTIONS if kw == keyword]


def test_parser_joins_continuations_and_skips_comments():
    assert parse("# c\nFROM a:1\nRUN x \\\n  # note\n    && y\n") == [("FROM", "a:1"), ("RUN", "x && y")]


def test_base_image_is_cuda_pinned_to_a_version():
    [base] = values("FROM")
    image = base.split()[0]
    name, _, digest = image.partition("@")
    repository, _, tag = name.partition(":")
    assert repository == "nvidia/cuda"
    assert re.match(r"\d+\.\d+\.\d+-", tag), f"base image tag {tag!r} is not a version"
    assert "latest" not in tag
    if digest:
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)


def test_installs_with_the_readme_line():
    installs = [args for args in values("RUN") if re.search(r"\bpip install\b.* \.$", args)]
    assert installs == [readme_install_line()]


def test_torch_is_pinned_to_the_same_version_everywhere():
    pins = set(re.findall(r"torch==([\w.]+)", " ".join(values("RUN"))))
    assert pins == set(re.findall(r"torch==([\w.]+)", readme_install_line()))


def test_runs_as_a_non_root_user_with_runner_as_entrypoint():
    keywords = [kw for kw, _ in INSTRUCTIONS]
    users = values("USER")
    assert users and users[-1] not in ("root", "0") and not users[-1].startswith(("root:", "0:"))
    last_user = max(i for i, kw in enumerate(keywords) if kw == "USER")
    assert last_user < keywords.index("ENTRYPOINT")
    [entrypoint] = values("ENTRYPOINT")
    assert json.loads(entrypoint) == ["runner"]
    assert values("WORKDIR")[-1] == "/work"


def test_hugging_face_cache_is_on_a_volume():
    env = " ".join(values("ENV"))
    match = re.search(r"\bHF_HOME=(\S+)", env)
    assert match and match.group(1) == "/cache/huggingface"
    volumes = [v.strip('[]" ') for args in values("VOLUME") for v in args.split()]
    assert any(match.group(1).startswith(volume.rstrip("/") + "/") for volume in volumes)


def test_dockerignore_keeps_local_state_out():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".git", ".venv", "runs/", "**/__pycache__"} <= ignored
    assert "README.md" not in ignored and "runner" not in ignored  # needed by `pip install .`
