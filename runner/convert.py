"""`runner convert`: an AutoTrain config, checked as `runner validate` checks it, written out as a
native spec."""

from __future__ import annotations

from pathlib import Path

import yaml

from runner.autotrain import is_autotrain_config, native_spec_text
from runner.errors import SpecError
from runner.spec import load_spec


def convert_file(path: str | Path, spec_path: str | Path | None = None) -> str:
    """The native spec text for the AutoTrain config at `path` (see autotrain.native_spec_text)."""
    path = Path(path)
    spec = load_spec(path)  # every check, with errors pointing at the AutoTrain config's lines
    document = yaml.safe_load(spec.text)
    if not is_autotrain_config(document):
        raise SpecError("this is already a native spec, not an AutoTrain config", "run it as it is: runner run " + str(path), str(path))
    return native_spec_text(document, path, Path(spec_path) if spec_path is not None else None)
