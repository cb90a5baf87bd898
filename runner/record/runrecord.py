"""A run read back: one typed view of a run folder's record for every command that serves a run
(report, compare, predict, eval, export, push, reproduce, the action), and one error for "not a
finished run". Writing stays with runner.record.rundir.RunDir; this only reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import DataError, SpecError
from runner.record.result import RunResult
from runner.record.rundir import FINISHED, NOT_A_RUN_HINT, RunDir, hub_url


def results_of(path: str | Path) -> RunResult:
    """What a run produced, read back; empty when the folder holds no readable record."""
    record = RunRecord.read(path)
    return record.result if record else RunResult.from_dict({})


@dataclass(frozen=True)
class RunRecord:
    folder: RunDir
    status: str
    """finished, recording (the record was cut short), interrupted, or "" when run.json does not say."""
    result: RunResult
    spec_values: dict
    """The resolved spec the run trained with (spec.yaml, or run.json's copy)."""
    manifest: dict = field(repr=False)
    """run.json whole: environment, git, data files, hub and export sections."""

    @classmethod
    def load(cls, path: str | Path, finished: bool = True) -> RunRecord:
        """Read a run folder's record. Raises DataError when it is not a run folder, or (`finished`)
        when its run did not finish."""
        folder = RunDir(path)
        if not folder.path.is_dir():
            raise DataError(f"'{folder.path}' is not a run folder", NOT_A_RUN_HINT, str(folder.path))
        manifest = folder.read_manifest(required=True)
        status = manifest.get("status") if isinstance(manifest.get("status"), str) else ""
        if finished and status != FINISHED:
            raise DataError(
                f"'{folder.path}' is not a finished run (its status is {status or 'not recorded'})",
                "finish it with `runner run SPEC --resume`, or give a run folder whose run finished",
                str(folder.manifest_file),
            )
        results = manifest.get("results")
        result = RunResult.from_dict(results if isinstance(results, dict) else {})
        return cls(folder=folder, status=status, result=result, spec_values=folder.spec_values(), manifest=manifest)

    @property
    def path(self) -> Path:
        return self.folder.path

    @property
    def task(self) -> str:
        return self.spec_values.get("task") or self.result.task

    @property
    def labels(self) -> list[str]:
        return self.result.labels

    @property
    def headline(self) -> dict:
        return self.result.headline

    def section(self, name: str) -> dict:
        """A section of run.json beyond the result (hub, export, environment, git); {} when absent."""
        value = self.manifest.get(name)
        return value if isinstance(value, dict) else {}

    @property
    def hub_url(self) -> str | None:
        return hub_url(self.manifest)

    @classmethod
    def read(cls, path: str | Path) -> RunRecord | None:
        """The record of a folder that may not hold one (a baseline, a run cut short): None then, never an error."""
        try:
            return cls.load(path, finished=False)
        except (DataError, SpecError):
            return None

    def spec(self):
        """The run's resolved spec as a Spec (paths as the run resolved them; files not checked)."""
        return self.folder.load_spec()
