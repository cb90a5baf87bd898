"""The documentation site (mkdocs.yml, docs/): `mkdocs build --strict` passes, the site shows the spec reference
generated from the schema, the README is a front page whose links resolve, and the docs extra is in the test extra."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((ROOT / "schemas" / "spec-v1.schema.json").read_text(encoding="utf-8"))


def mkdocs() -> str:
    found = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or shutil.which("mkdocs")
    assert found, "mkdocs is missing: pip install '.[test]' (or '.[docs]')"
    return found


def build(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [mkdocs(), "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        cwd=site.parent,  # not the repository: the included files are found from mkdocs.yml's folder
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "site"
    done = build(ROOT / "mkdocs.yml", out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out


def page(site: Path, name: str) -> str:
    return (site / name / "index.html").read_text(encoding="utf-8")


def test_the_reference_page_names_every_top_level_spec_key(site):
    reference = page(site, "reference")
    for key, prop in SCHEMA["properties"].items():
        assert f"<td><code>{key}</code></td>" in reference, f"the site's spec reference has no row for {key!r}"
        if "properties" in prop:  # an object section has its own table, each key of it a row
            assert f'<h2 id="{key}"' in reference, f"the site's spec reference has no section for {key!r}"
            for inner in prop["properties"]:
                assert f"<td><code>{key}.{inner}</code></td>" in reference, f"no row for {key}.{inner}"


def test_the_reference_page_is_the_generated_reference(site):
    """docs/ holds no copy: the page includes spec/reference.md, which tests/spec/test_document.py keeps current."""
    assert '--8<-- "spec/reference.md"' in (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    generated = (ROOT / "spec" / "reference.md").read_text(encoding="utf-8")
    title = re.search(r"^# (.+)$", generated, re.MULTILINE).group(1)
    assert f">{title}<" in page(site, "reference")


def test_pipes_in_table_cells_render_as_on_github(site):
    # commands.md writes `runner jobs logs\|status\|...` in a table cell, as GitHub needs it
    assert "<code>runner jobs logs|status|cancel|fetch JOB_ID</code>" in page(site, "commands")
    assert "\\|" not in page(site, "reference")


def test_the_strict_build_fails_on_a_broken_link(tmp_path):
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", copy / "docs", ignore=shutil.ignore_patterns("__pycache__"))
    for included in ("spec/reference.md", "bench/README.md", "mkdocs.yml"):
        (copy / included).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / included, copy / included)
    done = build(copy / "mkdocs.yml", tmp_path / "site")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]  # the copy builds as it is
    commands = copy / "docs" / "commands.md"
    commands.write_text(commands.read_text(encoding="utf-8") + "\nSee [nowhere](nowhere.md#x).\n", encoding="utf-8")
    done = build(copy / "mkdocs.yml", tmp_path / "site")
    assert done.returncode != 0 and "nowhere.md" in done.stdout + done.stderr


def test_the_readme_is_a_front_page_whose_links_resolve():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert any(t.startswith("docs/") for t in local)
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
    assert "POSIX" in readme and "https://download.pytorch.org/whl/cpu" in readme


def test_the_test_extra_installs_the_docs_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    assert {"mkdocs", "mkdocs-material"} <= {re.split(r"[<>=!~\[ ]", r)[0] for r in extras["docs"]}
    assert set(extras["docs"]) <= set(extras["test"])
    assert "Operating System :: POSIX" in project["classifiers"]


def test_the_getting_started_page_installs_like_the_readme():
    """Both say how to install; tests/publish/test_action.py and test_dockerfile.py check the README's lines."""

    def installs(path: Path) -> list[str]:  # the lines of its code blocks that install torch
        found, in_code = [], False
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("```"):
                in_code = not in_code
            elif in_code and "pip install torch==" in line:
                found.append(line.strip())
        return found

    assert installs(ROOT / "docs" / "getting-started.md") == installs(ROOT / "README.md")


def test_the_documented_commands_that_regenerate_the_reference_work_where_it_exists(tmp_path):
    """README and docs/ said `runner docs` regenerates spec/reference.md: in a checkout, where the file exists,
    it refused (exit 2, "the file already exists"). Every `runner docs` line of their code blocks, and every
    "`runner docs ...` regenerates", works."""
    from conftest import run_cli

    commands = set()
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        commands.update(m.group(1).strip() for m in re.finditer(r"^(runner docs[^#\n]*)", text, re.MULTILINE))
        commands.update(m.group(1) for m in re.finditer(r"`(runner docs[^`]*)` regenerates", text))
    commands.discard("runner docs --check")  # checked by tests/spec/test_document.py
    assert commands, "the docs no longer show how to regenerate the reference"
    reference = ROOT / "spec" / "reference.md"
    for command in sorted(commands):
        (tmp_path / "spec").mkdir(exist_ok=True)
        shutil.copy(reference, tmp_path / "spec" / "reference.md")  # a checkout: the reference is there
        result = run_cli(*command.split()[1:], cwd=tmp_path)
        assert result.returncode == 0, f"`{command}` as the docs show it: {result.stderr}"
        assert (tmp_path / "spec" / "reference.md").read_bytes() == reference.read_bytes()
