"""ruff (line limit 120, pyflakes, import order, bugbear, pyupgrade) over the package, tests, benchmarks and the docs
site's hook; no writer's placeholder in the README or the docs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (it is in the test extra)")
    result = subprocess.run(
        [ruff, "check", "runner", "tests", "bench", "docs"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]


def test_no_placeholder_left_in_the_readmes():
    """A writer's placeholder (CALIBRATION_FIGURES, EPOCH1_LINE) shipped in README.md and bench/README.md: an
    upper-case word with an underscore, outside code, is one (argument names like RUN_DIR aside). The docs
    site's pages (docs/) hold most of that text now: they are read too."""
    import re

    arguments = {"RUN_DIR"}
    root = Path(__file__).resolve().parents[2]
    pages = sorted(p.relative_to(root).as_posix() for p in (root / "docs").rglob("*.md"))
    assert len(pages) >= 10, "the docs pages are missing"
    for name in ("README.md", "bench/README.md", *pages):
        text = (root / name).read_text(encoding="utf-8")
        prose = re.sub(r"`[^`\n]*`", "", re.sub(r"```.*?```", "", text, flags=re.S))
        found = set(re.findall(r"(?<![\w/.$-])[A-Z][A-Z0-9]*_[A-Z0-9_]+(?![\w/.-])", prose)) - arguments
        assert not found, f"{name}: {sorted(found)}"
