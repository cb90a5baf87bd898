"""The run folder, as one object: its layout, the lock a run holds on it, setting an earlier run
aside (and bringing it back when the new run fails), and the only code that reads or writes its
record files (run.json, metrics.json, spec.yaml). Every other module asks a RunDir.

A run's life in its folder: `prepare` (checks only), `lock`, `set_aside` (once every input has
loaded), the run writes its entries, `write_manifest(status="recording")`, the report and card,
then `finish`, which writes status "finished" last, atomically, and drops what was set aside.
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import json
import os
from contextlib import contextmanager
from pathlib import Path

from runner import files
from runner.errors import DataError, RunError, SpecError
from runner.files import atomic_write_json, atomic_write_text, read_json
from runner.spec.tasks import metric_items

# The names inside a run folder: spelled here only; every other module takes them from here or asks a RunDir.
MANIFEST, METRICS, SPEC, REPORT = "run.json", "metrics.json", "spec.yaml", "report.md"
MODEL, MERGED, ONNX, CHECKPOINTS, PREDICTIONS, LOGS = "model", "merged", "onnx", "checkpoints", "predictions", "logs"
FINGERPRINT = "fingerprint.json"  # in checkpoints/: what a resumed run must match
LABEL_ISSUES, BEST_SPEC = "label_issues.csv", "best-spec.yaml"  # cross-validation's and a search's
# What a run writes into its folder: --overwrite sets these aside, and nothing else.
ENTRIES = (
    MODEL,
    MERGED,
    CHECKPOINTS,
    LOGS,
    PREDICTIONS,
    METRICS,
    MANIFEST,
    SPEC,
    REPORT,
    "confusion_matrix.png",
    "training_curves.png",
    ".model.tmp",
    ".merged.tmp",
    LABEL_ISSUES,
    BEST_SPEC,
    "reliability.png",
)
# What a resumed run writes again (it keeps its checkpoints and run.json).
RESUME_ENTRIES = (MODEL, MERGED, METRICS, REPORT, ".model.tmp", ".merged.tmp")
# What `runner export` adds to a finished run: stale once the model is trained again, so it goes aside too.
EXPORT_ENTRIES = (ONNX, ".onnx.tmp")
ENTRIES, RESUME_ENTRIES = ENTRIES + EXPORT_ENTRIES, RESUME_ENTRIES + EXPORT_ENTRIES
ASIDE = ".previous"  # the earlier run while a new one runs; restored if the new one fails
PARTIAL = ".partial"  # in ASIDE while entries move (aside or back): the folder holds none of the new run's
# What runner writes inside the run's folders, by name (fnmatch; "NAME/": a folder runner writes whole). Anything
# else in them is the user's: `run --overwrite` refuses rather than set it aside with the run (preflight.prepare).
# model/, merged/: what save_pretrained writes for a model, adapter and tokenizer, and the card; onnx/: export's.
SAVED = ("config.json", "generation_config.json", "README.md", "*.safetensors", "*.safetensors.index.json",
         "pytorch_model*.bin", "adapter_config.json", "adapter_model.*", "tokenizer*.json", "special_tokens_map.json",
         "added_tokens.json", "vocab.*", "merges.txt", "*.model", "bpe.codes", "chat_template.*")
OWN_CONTENT = {MODEL: SAVED, MERGED: SAVED, ONNX: (*SAVED, "*.onnx", "*.onnx_data", ".runner"),
               PREDICTIONS: ("*.jsonl",), LOGS: ("events.out.tfevents.*", "*/"),
               CHECKPOINTS: (FINGERPRINT, "checkpoint-*/", "tmp-checkpoint-*/")}
SPLITS = ("validation", "test")
FINISHED, RECORDING, INTERRUPTED = "finished", "recording", "interrupted"
NOT_A_RUN_HINT = "give the run folder that `runner run` wrote (it holds model/, metrics.json and run.json)"


def portable(values: dict) -> dict:
    """The spec as a run records and publishes it (spec.yaml, run.json, the model card): output.dir
    is `.`, the run folder itself (where spec.yaml lives), never the path on the machine that ran it
    (a CI runner's temp folder). Resuming does not compare output (preflight.fingerprint)."""
    output = values.get("output") if isinstance(values, dict) else None
    if not isinstance(output, dict) or "dir" not in output:
        return values
    return {**values, "output": {**output, "dir": "."}}


def spec_dir_of(run_dir: str | Path, spec_base: str | Path) -> str:
    """The spec's folder relative to the run folder (spec.yaml's first line and run.json's spec_dir)."""
    return os.path.relpath(absolute_path(spec_base), absolute_path(run_dir))


def absolute_path(path: str | Path) -> Path:
    """The absolute path with links and `..` resolved (one that does not exist yet too)."""
    return Path(os.path.abspath(path)).resolve()


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # -----------------------------------------------------------------------------------------
    # Layout

    @property
    def model_dir(self) -> Path:
        return self.path / MODEL

    @property
    def merged_dir(self) -> Path:
        return self.path / MERGED

    @property
    def onnx_dir(self) -> Path:
        """`runner export`: model.onnx (and model_int8.onnx) with the tokenizer and config."""
        return self.path / ONNX

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def fingerprint_file(self) -> Path:
        return self.checkpoints / FINGERPRINT

    @property
    def predictions_dir(self) -> Path:
        return self.path / PREDICTIONS

    @property
    def manifest_file(self) -> Path:
        return self.path / MANIFEST

    @property
    def metrics_file(self) -> Path:
        return self.path / METRICS

    @property
    def spec_file(self) -> Path:
        return self.path / SPEC

    @property
    def report_file(self) -> Path:
        return self.path / REPORT

    @property
    def label_issues_file(self) -> Path:
        """Cross-validation: rows whose given label the out-of-fold predictions doubt, most suspect first."""
        return self.path / LABEL_ISSUES

    @property
    def best_spec_file(self) -> Path:
        """Search: the spec with the best trial's values, to commit."""
        return self.path / BEST_SPEC

    def predictions_file(self, split: str) -> Path:
        return self.predictions_dir / f"{split}.jsonl"

    @property
    def aside_dir(self) -> Path:
        return self.path / ASIDE

    def written_entries(self) -> list[str]:
        """The entries of ENTRIES present in the folder."""
        return [entry for entry in ENTRIES if (self.path / entry).exists() or (self.path / entry).is_symlink()]

    def has_record(self) -> bool:
        """Whether runner's record of a run is here: a run.json runner wrote (every one holds the manifest's format
        and the spec's SHA-256), or the fingerprint of a run writing its checkpoints. A file of that name is not."""
        manifest = _holds(self.manifest_file, format=int, spec_sha256=str)
        return manifest or _holds(self.fingerprint_file, data_sha256=dict)

    def foreign_files(self) -> list[str]:
        """What the run's folders hold that runner does not write there (OWN_CONTENT): `model/MYNOTES.txt`."""
        found = []
        for entry, own in OWN_CONTENT.items():
            folder = self.path / entry
            if folder.is_symlink() or not folder.is_dir():  # a link is set aside as a link: what it points to stays
                continue
            for item in sorted(folder.iterdir()):
                pattern = f"{item.name}/" if item.is_dir() and not item.is_symlink() else item.name
                if not any(fnmatch.fnmatchcase(pattern, name) for name in own):
                    found.append(f"{entry}/{pattern}")
        return found

    # -----------------------------------------------------------------------------------------
    # Reading

    def status(self) -> str | None:
        """The status in run.json ("finished", "recording", "interrupted"); None without a readable run.json."""
        try:
            manifest = read_json(self.manifest_file)
        except (OSError, ValueError):
            return None
        return manifest.get("status") if isinstance(manifest, dict) else None

    def read_manifest(self, required: bool = False) -> dict:
        """run.json as a dict; {} when it is missing (unless required)."""
        if not self.manifest_file.exists() and not required:
            return {}
        return read_json_object(self.manifest_file, "is it a run folder? run.json is written when a run ends")

    def read_metrics(self) -> dict:
        return read_metrics(self.metrics_file)

    def spec_values(self) -> dict:
        """The resolved spec: spec.yaml, or the copy inside run.json when spec.yaml is missing."""
        from runner.spec.yamlsource import parse_yaml

        if not self.path.is_dir():
            raise SpecError("run folder does not exist", NOT_A_RUN_HINT, str(self.path))
        try:
            if self.spec_file.is_file():  # a run folder may come from anywhere: the same guards as a spec
                values, _ = parse_yaml(self.spec_file.read_text(encoding="utf-8"), str(self.spec_file))
            elif self.manifest_file.is_file():
                values = read_json(self.manifest_file).get("spec")
            else:
                values = {}
        except (ValueError, UnicodeDecodeError, AttributeError, RecursionError) as error:
            raise SpecError(
                f"cannot read the run's spec: {type(error).__name__}",
                "the file is damaged; re-run the run that wrote it",
                str(self.spec_file),
            ) from None
        return values if isinstance(values, dict) else {}

    def load_spec(self):
        """The run's resolved spec as a Spec, for predict and eval (the model must be there too)."""
        from runner.spec.document import load_spec

        if self.spec_file.is_file() and not self.model_dir.is_dir() and self.manifest_file.is_file():
            raise DataError(  # a job's record comes back without model/ unless the job was started with --fetch-model
                f"'{self.path}' holds a run's record but not its model (no model/)",
                "a remote run brings the model back only with `runner run SPEC --on ... --fetch-model`; use a run "
                "folder that holds model/, or train again with --fetch-model",
                str(self.path),
            )
        if not self.spec_file.is_file() or not self.model_dir.is_dir():
            missing = " and ".join(name for name, there in (("spec.yaml", self.spec_file.is_file()),
                                                             ("model/", self.model_dir.is_dir())) if not there)
            raise DataError(
                f"'{self.path}' is not a finished run folder (no {missing})",
                "give a run folder written by `runner run` (it holds model/ and spec.yaml)",
                str(self.path),
            )
        return load_spec(self.spec_file, check_files=False)

    def headline(self) -> dict:
        """metrics.json's headline ({split, name, value}); {} when there is none."""
        try:
            headline = read_json(self.metrics_file).get("headline")
        except (OSError, ValueError, AttributeError):
            return {}
        return headline if isinstance(headline, dict) else {}

    def hub_url(self) -> str | None:
        """Where `runner push` put the run (its pull request, when it opened one)."""
        try:
            return hub_url(self.read_manifest())
        except DataError:
            return None

    # -----------------------------------------------------------------------------------------
    # Writing

    def write_manifest(self, manifest: dict) -> None:
        atomic_write_json(self.manifest_file, manifest)

    def update_manifest(self, **fields) -> None:
        """Set top-level fields of run.json, atomically (the rest stays as it was)."""
        manifest = self.read_manifest(required=True)
        manifest.update(fields)
        atomic_write_json(self.manifest_file, manifest)

    def write_metrics(self, metrics: dict) -> None:
        atomic_write_json(self.metrics_file, metrics)

    def write_spec(self, values: dict, base_dir: Path | None = None) -> None:
        """spec.yaml: the resolved spec, secrets redacted; its first line names the folder its relative paths are
        relative to."""
        import yaml

        from runner.redact import redact, redact_text

        # relative to the run folder, so the published spec.yaml holds no path of the machine that ran it
        base = redact_text(spec_dir_of(self.path, base_dir)) if base_dir else None
        header = f"# paths in this spec are relative to: {base}\n" if base else ""
        text = yaml.safe_dump(redact(portable(values)), sort_keys=False, allow_unicode=True)
        atomic_write_text(self.spec_file, header + text)

    def finish(self) -> None:
        """Mark the run finished (the last write of a run), then drop the earlier run set aside."""
        manifest = self.read_manifest(required=True)
        manifest["status"] = FINISHED
        if isinstance(manifest.get("results"), dict):
            manifest["results"]["status"] = FINISHED
        self.write_manifest(manifest)
        files.remove(self.aside_dir)

    # -----------------------------------------------------------------------------------------
    # A run's hold on its folder

    @contextmanager
    def lock(self, what: str = "a run"):
        """Hold an exclusive advisory lock on the folder (flock on the folder itself, so nothing is
        written to take it). A second process gets a RunError naming the holder."""
        files.make_folder(self.path)
        handle = os.open(self.path, os.O_RDONLY)
        try:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    raise
                holder = lock_holder(self.path)
                raise RunError(
                    f"the run folder is in use by another runner process{f' (pid {holder})' if holder else ''}",
                    f"wait for it to finish, or choose another folder with --output; {what} cannot share it",
                    str(self.path),
                ) from None
            yield self
        finally:
            os.close(handle)  # closing the descriptor releases the lock

    def set_aside(self, entries=ENTRIES) -> list[str]:
        """Move the earlier run's entries into .previous/ (a rename: nothing is copied or deleted).
        Returns the entries moved."""
        moved = [entry for entry in entries if (self.path / entry).exists() or (self.path / entry).is_symlink()]
        if not moved:
            return []
        files.make_folder(self.aside_dir, parents=False, exist_ok=False)
        partial = self.aside_dir / PARTIAL  # while it exists, the folder holds only the earlier run's entries
        files.atomic_write_bytes(partial, b"")
        for entry in moved:
            files.move(self.path / entry, self.aside_dir / entry)
        files.remove(partial)
        return moved

    def restore(self) -> bool:
        """Put the run set aside back in place of whatever a failed run left. True when one was restored."""
        if not self.aside_dir.is_dir():
            return False
        partial = self.aside_dir / PARTIAL
        kept = {entry.name for entry in self.aside_dir.iterdir()} - {PARTIAL}
        if (foreign := sorted(kept - set(ENTRIES))) or self.aside_dir.is_symlink():  # the user's, named .previous
            raise SpecError(f"{self.aside_dir} holds {', '.join(foreign[:3]) or 'a link'}: not a run runner set aside",
                            f"move {self.aside_dir} away, or choose another folder with --output", str(self.path))
        if not partial.exists():  # the new run's entries go first; a restore cut short here starts again
            replaced = ENTRIES if MANIFEST in kept else RESUME_ENTRIES
            for entry in set(replaced) | kept:
                files.remove(self.path / entry)
            files.atomic_write_bytes(partial, b"")  # from here on, the folder holds the earlier run's: only move back
        for name in kept:
            files.move(self.aside_dir / name, self.path / name)
        files.remove(partial)
        files.remove_empty_folder(self.aside_dir)
        return True


def lock_holder(folder: Path) -> int | None:
    """The pid holding a flock on `folder`, from /proc/locks (Linux); None when unknown."""
    try:
        inode = os.stat(folder).st_ino
        with open("/proc/locks", encoding="ascii") as stream:
            for line in stream:
                fields = line.split()
                if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
                    return int(fields[4])
    except (OSError, ValueError):
        return None
    return None


# ---------------------------------------------------------------------------------------------
# Record files, read with a clear error


def read_json_object(path: Path, missing_hint: str) -> dict:
    if path.parent.exists() and not path.parent.is_dir():
        raise DataError(f"{path.parent} is a file, not a run folder", "give the run folder that `runner run` wrote")
    if not path.parent.is_dir():
        raise DataError(f"folder {path.parent} does not exist", "give the run folder that `runner run` wrote")
    if not path.is_file():
        raise DataError(f"{path.parent} has no {path.name}", missing_hint)
    try:
        value = read_json(path)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})",
            "the file is damaged; re-run the run that wrote it",
        ) from None
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text", "the file is damaged; re-run the run that wrote it") from None
    except (OSError, RecursionError) as exc:
        raise DataError(
            f"cannot read {path}: {type(exc).__name__}", "check the file's permissions, or re-run the run that wrote it"
        ) from None
    if not isinstance(value, dict):
        kind = {type(None): "null", list: "a list", str: "a string", bool: "true or false"}.get(type(value), "a number")
        raise DataError(
            f"{path} holds {kind}, not a JSON object",
            "the file is damaged; re-run the run that wrote it",
        )
    return value


def _holds(path: Path, **keys) -> bool:
    """A JSON object (no link) in `path` whose `keys` hold values of the given types."""
    try:
        value = read_json(path) if path.is_file() and not path.is_symlink() else None
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(value, dict) and all(isinstance(value.get(key), kind) and not isinstance(value.get(key), bool)
                                           for key, kind in keys.items())


def metrics_path(path: str | Path) -> Path:
    """A metrics.json given itself or by its run folder."""
    path = Path(path)
    return path / METRICS if path.is_dir() or path.suffix != ".json" else path


def read_metrics(path: str | Path) -> dict:
    """A metrics.json, from a run folder or its own path, checked to hold split metrics."""
    given = Path(path)
    if not given.exists() and given.suffix != ".json":  # a metrics.json that is missing is said below
        raise DataError(f"{given} does not exist", "give the run folder that `runner run` wrote, or its metrics.json")
    if given.is_file() and given.suffix != ".json":
        raise DataError(f"{given} is a file, neither a run folder nor a metrics.json",
                        "give the run folder that `runner run` wrote, or its metrics.json")
    path = metrics_path(path)
    metrics = read_json_object(path, f"is {path.parent} a finished run folder? {METRICS} is written when a run ends")
    if not any(metric_items(metrics.get(split)) for split in SPLITS):
        raise DataError(
            f"{path} has no validation or test metrics", 'it should look like {"validation": {"accuracy": 0.9}, ...}'
        )
    headline = metrics.get("headline")
    if headline is not None and not (isinstance(headline, dict) and isinstance(headline.get("name"), str)
                                     and isinstance(headline.get("split", "validation"), str)):
        raise DataError(f"{path} has a damaged headline (its name and split must be text)",
                        "the file is damaged; re-run the run that wrote it")
    return metrics


def hub_url(manifest: dict) -> str | None:
    """Where `runner push` put a run (its pull request, when it opened one), from its manifest."""
    hub = manifest.get("hub")
    if not isinstance(hub, dict):
        return None
    if hub.get("pr_url") or hub.get("url"):
        return hub.get("pr_url") or hub["url"]
    return f"https://huggingface.co/{hub['repo_id']}" if hub.get("repo_id") else None
