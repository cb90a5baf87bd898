"""What a flow is: the contract runner.flows.recipe relies on, declared.

A flow is a module. Every flow (single, crossval, search) says whether its run can be resumed and describes
itself for `runner run --dry-run` (`Flow`). A flow that trains the run's final model (single, crossval: the one
`flow_of` picks) also loads its inputs before the run folder is touched, evaluates the trained model, writes
what only it records and says the run's last line (`TrainingFlow`). A search runs above one of those: it picks
the values, then the training flow runs with them. A module satisfies a Protocol structurally (PEP 544), so a
type checker checks `flow_of`'s result; tests/flows/test_contract.py checks each module's names and parameters.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from runner.flows.lifecycle import RunFolder
from runner.record.result import RunResult
from runner.record.rundir import RunDir
from runner.spec.document import Spec
from runner.train.pipeline import Inputs


@runtime_checkable
class Flow(Protocol):
    RESUMABLE: bool  # whether `runner run --resume` may continue an interrupted run of this flow

    def describe(self, spec: Spec) -> str:
        """What the flow will do, for the dry run's plan."""
        ...


@runtime_checkable
class TrainingFlow(Flow, Protocol):
    def load(self, spec: Spec, folder: RunFolder) -> Inputs:
        """Every input loaded and checked (data, tokens, model, Trainer), before the run folder is touched."""
        ...

    def evaluate(self, spec: Spec, inputs: Inputs, result: RunResult) -> tuple[dict, dict]:
        """The trained model evaluated into `result`; the logits and the truth by split."""
        ...

    def write_extras(self, run_dir: RunDir, result: RunResult) -> None:
        """What only this flow records in the run folder, beside the record every flow writes."""
        ...

    def done_line(self, result: RunResult, run_dir: RunDir) -> str:
        """The run's last line."""
        ...
