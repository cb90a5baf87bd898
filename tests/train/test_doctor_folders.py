"""`runner doctor` checks that each folder it lists (HF_HOME, the hub cache, runner's cache) is a folder this
user can write, or can be created: a file, a folder it cannot write, a missing folder under a file or under a
folder it cannot write, each named with what is wrong and a hint; nothing created or changed on the way."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from runner.train.doctor import folder_lines, folder_problem


def snapshot(root: Path) -> dict:
    """Every entry under `root` with its type, mode and modification time: what must not change."""
    out = {}
    for folder, names, files in os.walk(root):
        for name in names + files:
            path = Path(folder) / name
            info = os.lstat(path)
            out[str(path)] = (info.st_mode, info.st_mtime_ns, info.st_size)
    return out


def folder_report(stdout: str) -> dict[str, list[str]]:
    """The doctor's folder lines by label, each with the hint lines under it."""
    report: dict[str, list[str]] = {}
    label = None
    for line in stdout.splitlines():
        if line[:14].strip():
            label = line[:14].strip()
            report[label] = [line[14:]]
        elif label and line.strip():
            report[label].append(line[14:])
    return report


def doctor(env: dict, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
    full.update(env, CUDA_VISIBLE_DEVICES="")
    return subprocess.run([*prefix, sys.executable, "-m", "runner", "doctor"], env=full, capture_output=True,
                          text=True, timeout=600)


def test_a_file_and_a_folder_under_a_file_are_named_with_a_hint(tmp_path):
    home, cache_file = tmp_path / "hf", tmp_path / "cache-is-a-file"
    home.mkdir()
    (tmp_path / "blocker").write_text("not a folder")
    cache_file.write_text("a file where runner's cache should be")
    hub = tmp_path / "blocker" / "hub"
    before = snapshot(tmp_path)
    done = doctor({"HF_HOME": str(home), "HF_HUB_CACHE": str(hub), "RUNNER_CACHE_DIR": str(cache_file)})
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    report = folder_report(done.stdout)
    assert report["HF_HOME"][0].startswith(f"{home} (exists;") and len(report["HF_HOME"]) == 1
    assert report["hub cache"][0].startswith(
        f"{hub} (problem: cannot be created: {tmp_path / 'blocker'} is a file, not a folder;")
    assert report["hub cache"][1] == (f"hint: move {tmp_path / 'blocker'} away, or set HF_HUB_CACHE to a folder this "
                                      "user can write")
    assert report["runner cache"][0].startswith(f"{cache_file} (problem: a file, not a folder;")
    assert " GB free)" in report["runner cache"][0]  # the free space is still shown
    assert report["runner cache"][1] == (f"hint: move {cache_file} away, or set RUNNER_CACHE_DIR to a folder this "
                                         "user can write")
    assert snapshot(tmp_path) == before  # nothing created, nothing touched


def as_another_user() -> tuple[str, ...]:
    """A command prefix that runs as a user without root's rights (root may write anywhere), or () when the
    test itself runs as such a user."""
    if os.getuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("running as root without setpriv: no way to check an unwritable folder as another user")
    prefix = (setpriv, "--reuid=65534", "--regid=65534", "--clear-groups")
    probe = subprocess.run([*prefix, sys.executable, "-c", "import os, runner; print(os.getuid())"], text=True,
                           capture_output=True, env={**os.environ}, timeout=120)
    if probe.returncode != 0 or probe.stdout.strip() != "65534":
        pytest.skip(f"cannot run python as uid 65534 here: {probe.stderr.strip()[-300:]}")
    return prefix


def test_an_unwritable_folder_and_a_folder_that_cannot_be_created(tmp_path):
    prefix = as_another_user()
    # a folder the other user can reach (pytest's tmp_path is root's own, mode 0700)
    base = Path(tempfile.mkdtemp(prefix="runner-doctor-", dir="/tmp" if prefix else None))
    try:
        base.chmod(0o755)
        locked = base / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        missing = locked / "cache"
        before = snapshot(base)
        done = doctor({"HF_HOME": str(locked), "HF_HUB_CACHE": str(locked / "hub"), "RUNNER_CACHE_DIR": str(missing),
                       "HOME": str(base)}, prefix)
        assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
        report = folder_report(done.stdout)
        uid = 65534 if prefix else os.getuid()
        assert report["HF_HOME"][0].startswith(f"{locked} (problem: a folder this user (uid {uid}) cannot write;")
        assert report["HF_HOME"][1] == (f"hint: give this user write access (chown or chmod u+w {locked}), or set "
                                        "HF_HOME to a folder this user can write")
        assert report["runner cache"][0].startswith(
            f"{missing} (problem: cannot be created: {locked} is a folder this user (uid {uid}) cannot write;")
        assert report["runner cache"][1] == (f"hint: create {missing} for this user (mkdir, then chown), or set "
                                             "RUNNER_CACHE_DIR to a folder this user can write")
        assert report["hub cache"][0].startswith(f"{locked / 'hub'} (problem: cannot be created:")
        assert snapshot(base) == before
    finally:
        (base / "locked").chmod(0o755)
        shutil.rmtree(base, ignore_errors=True)


def test_links_pipes_and_odd_names_without_a_subprocess(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    (tmp_path / "to-file").symlink_to(tmp_path / "file")
    (tmp_path / "to-folder").symlink_to(tmp_path)
    os.mkfifo(tmp_path / "pipe")
    before = snapshot(tmp_path)
    assert folder_problem(tmp_path / "dangling")[0] == (
        f"a symbolic link to {tmp_path / 'nowhere'}, which does not exist (or cannot be reached)")
    assert folder_problem(tmp_path / "to-file")[0] == f"a symbolic link to {tmp_path / 'file'}, which is not a folder"
    assert folder_problem(tmp_path / "to-folder") == ("", "")  # a link to a folder is a folder
    assert folder_problem(tmp_path / "pipe")[0] == "a named pipe, not a folder"
    assert folder_problem(tmp_path / "dangling" / "x")[0] == (
        f"cannot be created: {tmp_path / 'dangling'} is a symbolic link that does not lead to a folder")
    assert folder_problem(tmp_path / "file" / "a" / "b")[0] == f"cannot be created: {tmp_path / 'file'} is a file, " \
                                                              "not a folder"
    assert folder_problem(tmp_path / "new" / "deeper") == ("", "")  # created by the run when it needs it
    odd = folder_lines("runner cache", tmp_path / "a\nb", "RUNNER_CACHE_DIR")
    assert len(odd) == 1 and "\n" not in odd[0] and "\\n" in odd[0]  # a line break in a name stays on one line
    assert snapshot(tmp_path) == before
