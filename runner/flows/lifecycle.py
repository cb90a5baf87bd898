"""The run folder's lifecycle, one for every flow: the GPU check, `prepare` (nothing is removed), the
folder's lock, recovery of an earlier run that a killed run left set aside, and setting the earlier run
aside while the new one writes (it comes back when the new one fails or is interrupted).

    with run_folder(spec, overwrite, resume) as folder:
        inputs = ...                      # everything loaded and checked; the folder is untouched
        with folder.replacing():          # the earlier run is set aside here, restored on failure
            ...train, evaluate, save

A refused run leaves no folder behind that it made itself.
"""

from __future__ import annotations

import shlex
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from runner.console import is_main_process, note, say, shown
from runner.errors import Interrupted, RunError, RunnerError
from runner.record.guard import no_new_empty_folder
from runner.record.rundir import ENTRIES, RESUME_ENTRIES, RunDir


@dataclass
class RunFolder:
    run_dir: RunDir
    checkpoint: Path | None
    """The checkpoint a resumed run continues from (None: from scratch)."""
    earlier: list[str]
    """The entries an earlier run wrote, found before anything of this run was built."""
    main: bool
    force_resume: bool = False
    """Resume even when the spec or data changed since the checkpoint."""
    argv: tuple = ()
    """The command line the user ran (for the commands that continue or repeat the run)."""

    @property
    def rerun(self) -> str:
        """The command that repeats the run, as the user gave it."""
        return rerun_command(self.argv, resume=False)

    @property
    def resume_command(self) -> str:
        """The command that continues the run from its newest checkpoint."""
        return rerun_command(self.argv, resume=True)

    @property
    def restart(self) -> str:
        """The command that starts the run again over what this one left (with --overwrite)."""
        return rerun_command(self.argv, resume=False, overwrite=True)

    @property
    def resumable(self) -> bool:
        """Whether `--resume` can continue this command (`runner run`, not `runner reproduce`)."""
        return [str(a) for a in self.argv[1:2]] == ["run"] or not self.argv

    @property
    def path(self) -> Path:
        return self.run_dir.path

    @contextmanager
    def replacing(self):
        """Set the earlier run's entries aside for the body; put them back if the body fails."""
        if not self.main:
            yield
            return
        run_dir = self.run_dir
        kept = RESUME_ENTRIES if self.checkpoint is not None else ENTRIES
        try:
            moved = run_dir.set_aside([entry for entry in kept if entry in self.earlier])
        except OSError as exc:
            run_dir.restore()
            raise RunError(
                f"could not set the earlier run aside: {exc.strerror or exc}",
                "check the folder's permissions and free space",
                str(run_dir.path),
            ) from None
        try:
            yield
        except BaseException as failure:
            if moved and run_dir.restore():
                message = f"the earlier run in {run_dir.path} was restored"
                if isinstance(failure, Interrupted):
                    failure.hint = f"{message}; the interrupted run was discarded"
                elif isinstance(failure, RunnerError):
                    failure.hint = (
                        f"{message}, so this run's checkpoints are gone: fix the cause and run again (not --resume)"
                    )
                else:
                    note(message)
            raise


def output_place(spec) -> str:
    """Where the output folder was set, for its errors: `--output`, `spec.yaml:30:8 output.dir`, or `output.dir`
    for the default (runs/<name>)."""
    return spec.where("output", "dir") if ("output", "dir") in spec.positions else "output.dir"


def check_before_launch(spec, overwrite: bool, resume: bool) -> None:
    """The folder checks a run makes, made once before several processes start (runner run --nproc N):
    a refusal is one error here, not one in every worker."""
    from runner.flows.preflight import check_place, prepare

    run_dir, place = RunDir(spec.output_dir), output_place(spec)
    if resume:  # the rest of a resume is checked by rank 0, which also says which checkpoint it takes
        check_place(run_dir, place)
    else:
        prepare(run_dir, overwrite=overwrite, resume=False, where=place, make=False)  # check_place included


@contextmanager
def run_folder(spec, overwrite: bool = False, resume: bool = False, force_resume: bool = False, argv=()):
    """Check the folder and hold it for the body (see the module's docstring)."""
    from runner.flows.preflight import check_place, prepare
    from runner.train.doctor import check_gpu_usable

    check_gpu_usable(spec.train.device)  # a GPU that torch cannot use stops the run before anything is read
    run_dir, place = RunDir(spec.output_dir), output_place(spec)
    main = is_main_process()
    if not main:  # rank 0 checks and holds the folder; the others find their checkpoint
        yield RunFolder(run_dir, prepare(run_dir, overwrite, resume), [], main, force_resume, tuple(argv))
        return
    check_place(run_dir, place)  # a file, a name the system refuses, inside another run: before any folder is made
    with no_new_empty_folder(run_dir.path), _locked(run_dir, place):  # a refused run leaves no folder behind
        # An earlier run that a killed run left set aside comes back first: the checks judge it, not the leftovers.
        if run_dir.restore():
            say(f"restored the earlier run in {shown(run_dir.path)}, set aside by a run that did not finish")
        checkpoint = prepare(run_dir, overwrite=overwrite, resume=resume, where=place)
        yield RunFolder(run_dir, checkpoint, run_dir.written_entries(), main, force_resume, tuple(argv))


@contextmanager
def _locked(run_dir: RunDir, where: str):
    """The folder's lock, the folder made first: one that cannot be made is the user's to fix (exit 2)."""
    from runner.flows.preflight import make_folder

    make_folder(run_dir, where=where)
    with run_dir.lock():
        yield


def rerun_command(argv, resume: bool, overwrite: bool = False) -> str:
    """The command that continues this run (`resume`: with --resume instead of --overwrite) or repeats it,
    as the user gave it (their --output and --set included). `argv`: the command line given to run_spec."""
    args = [str(a) for a in argv[1:]] if argv else []
    if resume and args[:1] == ["run"]:  # only `runner run` resumes; reproduce and the rest run again
        args = [a for a in args if a not in ("--overwrite", "--resume", "--force-resume")] + ["--resume"]
    elif overwrite and "--overwrite" not in args:
        args = [a for a in args if a not in ("--resume", "--force-resume")] + ["--overwrite"]
    return shlex.join(["runner", *args])
