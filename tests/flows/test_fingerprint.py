"""The two hashes of a spec have two names: run.json's `spec_sha256` is the spec file's bytes; the checkpoint's
fingerprint (checkpoints/fingerprint.json) keeps `settings_sha256`, the parsed settings less output and hub, and
still reads a fingerprint written under the old name."""

from __future__ import annotations

import json

import pytest
from conftest import labelled_rows, write_csv, write_spec

from runner.errors import SpecError
from runner.files import sha256_file
from runner.flows.preflight import check_fingerprint, fingerprint
from runner.spec.document import load_spec

SPEC = """version: 1
name: prints
data:
  train: data/train.csv
model:
  name: some-org/some-model
train:
  epochs: {epochs}
output:
  dir: run
"""


def spec_and_files(tmp_path, epochs=1, comment=""):
    write_csv(tmp_path / "data" / "train.csv", labelled_rows(per_label=3))
    path = write_spec(tmp_path, comment + SPEC.format(epochs=epochs))
    return load_spec(path, check_files=False), {"train": str(tmp_path / "data" / "train.csv")}


def test_the_settings_hash_is_not_the_file_hash(tmp_path):
    spec, files = spec_and_files(tmp_path)
    printed = fingerprint(spec, files)
    assert set(printed) == {"settings_sha256", "data_sha256"}
    assert printed["settings_sha256"] != sha256_file(spec.path)
    commented, _ = spec_and_files(tmp_path, comment="# a comment changes the file, not the settings\n")
    assert fingerprint(commented, files)["settings_sha256"] == printed["settings_sha256"]


@pytest.mark.parametrize("key", ["settings_sha256", "spec_sha256"])  # spec_sha256: written before the rename
def test_a_checkpoint_fingerprint_is_read_under_either_name(tmp_path, key):
    spec, files = spec_and_files(tmp_path)
    saved = fingerprint(spec, files)
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "fingerprint.json").write_text(json.dumps({key: saved["settings_sha256"],
                                                         "data_sha256": saved["data_sha256"]}))
    assert check_fingerprint(tmp_path / "run", spec, files, resuming=True, force=False) == saved
    changed, _ = spec_and_files(tmp_path, epochs=2)
    with pytest.raises(SpecError, match="the spec changed since the checkpoint was saved"):
        check_fingerprint(tmp_path / "run", changed, files, resuming=True, force=False)
