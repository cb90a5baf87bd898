"""`runner reproduce`: run a finished run again from its manifest, after checking that every data
file and local base-model file is the one it used, and say whether the metrics match."""

from __future__ import annotations

import json
import math
from pathlib import Path

import yaml

from runner.console import say, warn
from runner.errors import DataError, SpecError
from runner.files import sha256_file
from runner.record import guard
from runner.record.manifest import DATA_KEYS
from runner.record.paths import recorded_spec_file
from runner.record.rundir import RunDir, read_metrics
from runner.record.runrecord import results_of
from runner.spec.document import Spec
from runner.spec.tasks import metric_items


def reproduce_run(run_dir: str | Path, output_dir: str | Path | None = None, overwrite: bool = False) -> bool:
    """Re-run a run from its run.json into `output_dir` (default RUN_DIR-reproduce) and report
    whether every validation metric came out exactly the same. Refuses (DataError) when a data
    file or local base-model file differs from the one the run used."""
    from runner.spec.document import load_spec_text

    folder = RunDir(Path(run_dir).resolve())
    run_dir = folder.path
    manifest = folder.read_manifest(required=True)
    values = manifest.get("spec")
    if not isinstance(values, dict):
        raise DataError(
            f"{folder.manifest_file} records no spec", "the manifest is damaged; re-run with `runner run SPEC`"
        )
    default = run_dir.with_name(run_dir.name + "-reproduce")
    if output_dir and Path(output_dir).is_symlink():  # before it is resolved: what it points to is not replaced
        raise SpecError("--output is a symbolic link; runner never writes a run through one",
                        "give the path of a real folder with --output", str(output_dir))
    output_dir = guard.resolved(output_dir) if output_dir else default
    if output_dir == run_dir:
        raise DataError("the reproduction would overwrite the run it reproduces", "choose another --output folder")
    check_output(run_dir, output_dir, overwrite or _earlier_reproduction(output_dir, run_dir, default))
    original = folder.read_metrics()

    spec_path = recorded_spec_file(run_dir, manifest)  # relative data paths resolve against its folder
    # Hub inputs are pinned to the commits the run resolved; the reproduction never publishes.
    overrides = ["hub.push=false"]
    recorded = results_of(run_dir).precision or (manifest.get("environment") or {}).get("precision")
    if recorded in ("bf16", "fp16", "fp32"):  # what the run trained in, not what `auto` would pick here
        overrides.append(f"train.precision={recorded}")
    model = manifest.get("model") or {}
    if model.get("source") == "hub" and model.get("revision"):
        overrides.append(f"model.revision={json.dumps(model['revision'])}")
    hub_data = (manifest.get("data") or {}).get("hub") or {}
    if hub_data.get("revision"):
        overrides.append(f"data.hub.revision={json.dumps(hub_data['revision'])}")
    elif hub_data:
        warn(f"the Hub dataset {hub_data.get('id')} was not pinned to a revision; it may have changed since the run")
    spec = load_spec_text(yaml.safe_dump(values, sort_keys=False), spec_path, overrides, check_files=False,
                          flags={"output.dir": ("--output", str(output_dir))})  # its errors name --output
    verify_inputs(spec, manifest)

    from runner.flows.recipe import run_spec

    with folder.lock("a reproduction"), guard.no_new_empty_folder(output_dir):  # the run cannot change meanwhile
        run_spec(
            spec,
            overwrite=True,  # check_output allowed what the folder holds
            resume=False,
            force_resume=False,
            argv=["runner", "reproduce", str(run_dir), "--output", str(output_dir)]
            + (["--overwrite"] if overwrite else []),
        )
    reproduced = read_metrics(output_dir)
    matches, table = compare_metrics(original.get("validation") or {}, reproduced.get("validation") or {})
    say(table)
    say("metrics match" if matches else "metrics differ")
    return matches


def check_output(run_dir: Path, output_dir: Path, overwrite: bool) -> bool:
    """Before any work (the guarded writer's rules for a run folder): never inside the run or holding it,
    never inside another run, another run only with --overwrite, and never a folder holding other files (--overwrite
    replaces a run, nothing else). Returns whether the run must replace what the folder holds."""
    from runner.flows.preflight import HARMLESS

    hint = f"choose another --output folder, or pass --overwrite: runner reproduce {run_dir} --output {output_dir} " \
           "--overwrite"
    if guard.inside(output_dir, run_dir) or guard.inside(run_dir, output_dir):
        raise SpecError("--output is inside the run it reproduces (or holds it)", "choose another --output folder",
                        str(output_dir))
    holder = guard.enclosing_run(output_dir.parent)
    if holder is not None:
        raise SpecError(f"--output is inside the run folder {holder}", "choose a folder outside any run folder",
                        str(output_dir))
    if output_dir.exists() and not output_dir.is_dir():
        raise SpecError("--output is a file", "give a folder path", str(output_dir))
    found = sorted(p.name for p in output_dir.iterdir() if p.name not in HARMLESS) if output_dir.is_dir() else []
    if found and not guard.is_run_folder(output_dir):
        shown = ", ".join(found[:3]) + (f" and {len(found) - 3} more" if len(found) > 3 else "")
        raise SpecError(f"--output holds {shown}, which no run wrote; --overwrite replaces only an earlier run",
                        "choose a new or empty --output folder", str(output_dir))
    if found and not overwrite:
        raise SpecError("--output already holds another run", hint, str(output_dir))
    return bool(found)


def _earlier_reproduction(output_dir: Path, run_dir: Path, default: Path) -> bool:
    """The default folder holding this run's earlier reproduction, or any folder holding one that was cut short (a
    signal, a full disk: "run it again" must work): replaced without --overwrite."""
    try:
        argv = RunDir(output_dir).read_manifest().get("argv") or []
        if output_dir != default and RunDir(output_dir).status() == "finished":
            return False
    except DataError:
        return False
    if list(argv[1:2]) != ["reproduce"] or len(argv) < 3 or not isinstance(argv[2], str):
        return False
    # run.json names the run reproduced relative to a folder that held it, or by its name alone (the
    # default folder is RUN-reproduce beside RUN, so its name is the run's); older records: absolute
    recorded = Path(argv[2])
    return recorded == run_dir if recorded.is_absolute() else recorded.name == run_dir.name


def verify_inputs(spec: Spec, manifest: dict) -> None:
    """DataError naming the first data file (or local base-model file) whose sha256 is not the
    one in run.json, or that is missing."""
    recorded = (manifest.get("data") or {}).get("files") or {}
    for role, key in DATA_KEYS.items():
        if not getattr(spec.data, key):
            continue
        path = spec.resolve(getattr(spec.data, key))
        expected = (recorded.get(role) or {}).get("sha256")
        if not expected:
            raise DataError(
                f"run.json records no sha256 for the {role} file {path}",
                "without it the data cannot be checked; start a new run with `runner run`",
            )
        _check_hash(path, expected, f"{role} data file")
    model = manifest.get("model") or {}
    if model.get("source") in ("local", "package") and model.get("weight_files"):
        from runner.train.model import resolve_model_source

        folder, _ = resolve_model_source(spec.model, spec.resolve, spec.where)
        for name, expected in model["weight_files"].items():
            _check_hash(Path(folder) / name, expected, "base model file")


def _check_hash(path: Path, expected: str, what: str) -> None:
    if not path.is_file():
        raise DataError(
            f"{what} {path} is missing", f"restore the file the run used (sha256 {expected[:12]}...) to reproduce it"
        )
    actual = sha256_file(path)
    if actual != expected:
        raise DataError(
            f"{what} {path} changed since the run (sha256 {actual[:12]}..., run.json has {expected[:12]}...)",
            "restore the original file to reproduce the run, or start a new run with `runner run` if the change is "
            "intended",
        )


def compare_metrics(original: dict, reproduced: dict) -> tuple[bool, str]:
    """(every metric exactly equal, a table of both); a metric on one side only is a difference.

    Runtimes and throughputs are left out: they differ between any two runs."""
    first, second = dict(metric_items(original)), dict(metric_items(reproduced))
    names = list(dict.fromkeys(list(first) + list(second)))
    same = {
        name: first.get(name) == second.get(name) or (_is_nan(first.get(name)) and _is_nan(second.get(name)))
        for name in names
    }
    rows = [["metric", "original", "reproduced", ""]]
    rows += [
        [name, repr(first.get(name)), repr(second.get(name)), "same" if same[name] else "DIFFERENT"] for name in names
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    return bool(names) and all(same.values()), "validation metrics:\n" + "\n".join(lines)


def _is_nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)
