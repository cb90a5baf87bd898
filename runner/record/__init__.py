"""The record of a run: run.json (manifest.py), the model card (card.py), report.md with its
pictures (report.py), and the summary a pull request shows (summary.py)."""

from __future__ import annotations

from runner.record.card import write_model_card
from runner.record.manifest import write_manifest
from runner.record.report import write_report
from runner.record.result import RunResult
from runner.record.rundir import RunDir
from runner.spec.document import Spec


def write_run_record(run_dir: RunDir, spec: Spec, result: RunResult) -> None:
    """run.json (status "recording"), the model card, report.md and its pictures, then status
    "finished", written last: a run is finished only when its whole record is in place. It takes the whole
    spec: run.json and the card record the whole document; the report takes the sections it shows."""
    result.status = "recording"
    write_manifest(run_dir, spec, result)
    write_model_card(run_dir.model_dir, spec, result)
    write_report(run_dir, result, name=spec.name, task=spec.task, model=spec.model, lora=spec.lora,
                 report=spec.report, seed=spec.seed, metric_for_best_model=spec.train.metric_for_best_model)
    result.status = "finished"
    run_dir.finish()
