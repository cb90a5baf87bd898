"""Which flow a spec asks for: a hyperparameter search (runner.search), cross-validation
(runner.crossval) or the single run of the recipe. `runner run` and `runner reproduce` call `run`."""

from __future__ import annotations

from pathlib import Path

from runner.spec import Spec


def run(spec: Spec, overwrite: bool = False, resume: bool = False, force_resume: bool = False, argv=()) -> Path:
    if spec["search"]:
        from runner.search import run_search

        return run_search(spec, overwrite=overwrite, resume=resume, argv=argv)
    if spec["data"]["cross_validation"]:
        from runner.crossval import run_crossval

        return run_crossval(spec, overwrite=overwrite, resume=resume, argv=argv)
    from runner.recipe import run_spec

    return run_spec(spec, overwrite=overwrite, resume=resume, force_resume=force_resume, argv=argv)
