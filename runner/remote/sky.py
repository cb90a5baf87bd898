"""`runner sky SPEC`: a SkyPilot task (YAML) that trains SPEC on `compute.nnodes` cloud machines.

Every node runs the runner image (`image_id: docker:...`, the image of `runner run --on hf-jobs`) in
the spec's folder (the task's `workdir`, which SkyPilot copies to each node), and its run step is
`runner run SPEC` with the node's rank and node 0's address from SkyPilot's environment
(SKYPILOT_NODE_RANK, SKYPILOT_NODE_IPS, SKYPILOT_NUM_NODES): the torchrun command of "Several
machines" (runner/train/distributed.py). The task is checked with `sky.Task` when skypilot is installed.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shlex
from collections.abc import Callable
from pathlib import Path

from runner.console import note, shown, warn
from runner.errors import SpecError
from runner.spec.document import Spec
from runner.spec.sections import ComputeSection, DataSection, ModelSection
from runner.spec.specrules import looks_like_local_path

RDZV_PORT = 29500
SET_ON_THE_NODES = ("compute.nnodes", "compute.node_rank", "compute.rdzv_endpoint")  # from SkyPilot's variables
# What a workdir copied to every node should not carry: keys and credentials, at any depth (glob patterns of names)
CREDENTIALS = (".ssh", ".aws", ".gnupg", ".netrc", ".git-credentials", ".kube", ".docker", ".azure", ".env", ".env.*",
               ".huggingface", ".cache", ".config", ".npmrc", ".pypirc", "id_rsa*", "id_dsa*", "id_ecdsa*",
               "id_ed25519*", "*.pem", "*.key", "*.p12", "*.pfx", "*.keystore", "credentials", "credentials.json",
               "service-account*.json", "*-sa-key.json", "secrets.*")
SCAN_LIMIT = 20000  # entries looked at in the workdir (a data folder can hold millions)
# NAME or NAME:COUNT, as SkyPilot writes one accelerator (a fraction shares a GPU)
ACCELERATOR = re.compile(r"[A-Za-z][A-Za-z0-9_-]*(?::(?:[1-9][0-9]*|0?\.[0-9]*[1-9][0-9]*))?")


def local_files(data: DataSection, model: ModelSection, resolve: Callable[[str], Path]) -> list[tuple[str, Path]]:
    """(spec key, resolved path) of every local file or folder the run reads. `resolve`: a spec path to a local
    one (Spec.resolve)."""
    found = [(f"data.{key}", resolve(getattr(data, key)))
             for key in ("train", "validation_file", "test_file") if getattr(data, key)]
    if looks_like_local_path(model.name) or resolve(model.name).is_dir():
        found.append(("model.name", resolve(model.name)))
    return found


def sky_image(image: str | None) -> str:
    """The runner image the nodes run: --image or RUNNER_JOBS_IMAGE (a SkyPilot node does not install runner)."""
    if image is None:
        from runner import __version__
        from runner.errors import SpecError

        raise SpecError("runner sky needs an image with runner installed, and none is given",
                        f"build and push the Dockerfile's image (docker build -t REGISTRY/runner:{__version__} . && "
                        f"docker push REGISTRY/runner:{__version__}), then pass --image REGISTRY/runner or set "
                        "RUNNER_JOBS_IMAGE")
    return image


def sky_task(spec: Spec, image: str, accelerators: str | None = None, overrides=(), port: int = RDZV_PORT) -> dict:
    """The task as a mapping, ready for yaml.safe_dump (and sky.Task.from_yaml_config). `overrides`
    (the --set values) are passed on to `runner run` on the nodes."""
    if spec.path is None:
        raise SpecError("a SkyPilot task needs a spec file", "give the path of a spec file")
    workdir = spec.path.parent.resolve()
    check_workdir(workdir, spec.path)
    for key, path in local_files(spec.data, spec.model, spec.resolve):
        section, name = key.split(".")
        if Path(str(spec[section][name])).expanduser().is_absolute():
            raise SpecError(f"{key} is an absolute path, which does not exist on the nodes",
                            "write it relative to the spec's folder (SkyPilot copies that folder to every node)",
                            spec.where(section, name))
        if workdir not in path.resolve().parents:
            raise SpecError(f"{key} ({path}) is outside the spec's folder, which is what SkyPilot copies to the nodes",
                            "move it into the spec's folder (or below), or name a Hub model or dataset",
                            spec.where(*key.split(".")))
    output = spec.output_dir
    if output.is_absolute() and workdir not in output.resolve().parents:
        raise SpecError(f"output.dir ({output}) is outside the spec's folder", "use a relative output.dir",
                        spec.where("output", "dir"))
    overrides = [item for item in overrides if item.split("=", 1)[0].strip() not in SET_ON_THE_NODES]
    overrides += processes_per_node(spec.compute, ("compute", "nproc") in spec.positions,
                                    spec.where("compute", "nproc"), accelerators)
    command = shlex.join(["runner", "run", spec.path.name, *[arg for item in overrides for arg in ("--set", item)]])
    run = "\n".join([
        "set -e",
        'MASTER_ADDR=$(echo "$SKYPILOT_NODE_IPS" | head -n1)',
        f'{command} --set compute.nnodes="$SKYPILOT_NUM_NODES" --set compute.node_rank="$SKYPILOT_NODE_RANK" \\',
        f'  --set compute.rdzv_endpoint="$MASTER_ADDR:{port}"',
        "",
    ])
    resources: dict = {"image_id": f"docker:{image}"}
    if accelerators:
        resources["accelerators"] = accelerators
    task = {
        "name": f"runner-{spec.name}".lower().replace("_", "-")[:60],
        "num_nodes": spec.compute.nnodes,
        "workdir": str(workdir),
        "resources": resources,
        "run": run,
    }
    if spec.hub.push:
        task["secrets"] = {"HF_TOKEN": None}  # given at launch: sky launch --secret HF_TOKEN
    return task


def check_workdir(workdir: Path, spec_path: Path) -> None:
    """SkyPilot copies the spec's folder (the task's workdir) to every node: never the home folder or one above
    it (.ssh, .aws and everything else would go), and a word about keys and credentials in it that neither
    .skyignore nor (without one) .gitignore leaves out."""
    home = Path.home().resolve()
    if workdir == home or workdir in home.parents:
        where = "your home folder" if workdir == home else "above your home folder"
        raise SpecError(f"the spec's folder {workdir} is {where}; "
                        "SkyPilot copies the spec's folder to every node, so all of it would go (.ssh and .aws too)",
                        "put the spec, its data and model in a project folder and run `runner sky` on the spec there",
                        str(spec_path))
    ignore = workdir / ".skyignore" if (workdir / ".skyignore").is_file() else workdir / ".gitignore"
    patterns = []
    if ignore.is_file():
        from runner.files import text_lines

        lines = text_lines(ignore.read_text(encoding="utf-8", errors="replace"))
        patterns = [line.strip().strip("/") for line in lines if line.strip() and not line.startswith(("#", "!"))]
    found = credentials_in(workdir, patterns)
    if found:
        more = f" and {len(found) - 8} more" if len(found) > 8 else ""
        listed = ", ".join(shown(name) for name in found[:8]) + more
        warn(f"the spec's folder {shown(workdir)} holds {listed}; SkyPilot copies the folder to every node. "
             "List them in a .skyignore there to keep them off the nodes")


def credentials_in(workdir: Path, ignored: list[str]) -> list[str]:
    """Paths (relative, /-separated) of keys and credentials in the workdir that no ignore pattern leaves out; a
    folder that is a credential (.aws) is named once, and an ignored folder is not entered."""
    def left_out(relative: str) -> bool:
        name = relative.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatch(relative, p) or ("/" not in p and fnmatch.fnmatch(name, p)) for p in ignored)

    def credential(name: str) -> bool:
        return any(fnmatch.fnmatch(name, pattern) for pattern in CREDENTIALS)

    found, seen = [], 0
    for folder, folders, files in os.walk(workdir):
        base = Path(folder).relative_to(workdir).as_posix()
        for name in sorted(folders) + sorted(files):
            seen += 1
            relative = name if base == "." else f"{base}/{name}"
            if not left_out(relative) and credential(name):
                found.append(relative)
        folders[:] = [name for name in sorted(folders) if not credential(name) and name != ".git"
                      and not left_out(name if base == "." else f"{base}/{name}")]
        if seen > SCAN_LIMIT:
            break
    return found


def check_accelerators(accelerators: str | None) -> None:
    """--accelerators is one NAME or NAME:COUNT (A100, A100:8, or a fraction such as T4:0.5 to share one)."""
    if accelerators is not None and not ACCELERATOR.fullmatch(accelerators):
        raise SpecError(f"--accelerators {accelerators!r} is not NAME or NAME:COUNT with a count above 0",
                        "write it as SkyPilot does, e.g. --accelerators A100:8 (8 GPUs per node) or A100", "runner sky")


def processes_per_node(compute: ComputeSection, nproc_written: bool, where: str, accelerators: str | None) -> list[str]:
    """One training process per GPU of a node: with --accelerators A100:8 and compute.nproc not written in the
    spec (`nproc_written`), `--set compute.nproc=8` for the nodes. An nproc written in the spec is kept: above the
    GPUs of a node it is an error (at `where`, compute.nproc's place), below them a warning naming the idle GPUs."""
    check_accelerators(accelerators)
    if not accelerators:
        return []
    count = accelerators.rsplit(":", 1)[1] if ":" in accelerators else "1"
    if not count.isdigit():
        count = "1"  # a fraction of one GPU: one process
    gpus, nproc = int(count), compute.nproc
    if not nproc_written:
        if gpus != nproc:
            note(f"each node trains with {gpus} processes, one per GPU of --accelerators {accelerators} "
                 "(compute.nproc on the nodes)")
            return [f"compute.nproc={gpus}"]
        return []
    if nproc > gpus:
        raise SpecError(f"compute.nproc is {nproc}, but --accelerators {accelerators} gives each node {gpus} GPU"
                        f"{'s' if gpus > 1 else ''}", f"set compute.nproc to {gpus} or ask for more GPUs per node",
                        where)
    if nproc < gpus:
        warn(f"compute.nproc is {nproc}: {gpus - nproc} of the {gpus} GPUs of --accelerators {accelerators} stay idle "
             f"on each node; leave compute.nproc out (or set it to {gpus}) to use them all")
    return []


def task_yaml(task: dict) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper, value: str):  # the run step as a literal block, as people write it
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    return ("# SkyPilot task written by `runner sky`: sky launch -c CLUSTER THIS_FILE"
            + (" --secret HF_TOKEN" if "secrets" in task else "") + "\n"
            + yaml.dump(task, Dumper=Dumper, sort_keys=False, width=120))


def check_with_skypilot(task: dict) -> str | None:
    """Build a sky.Task from the mapping when skypilot is installed: None, or why it is not checked."""
    try:
        import sky
    except ImportError:
        return ("skypilot is not installed here, so the task was not checked with sky.Task; it needs an environment of "
                "its own (pipx install skypilot: its pins conflict with huggingface_hub's)")
    try:
        sky.Task.from_yaml_config(task)
    except Exception as error:  # noqa: BLE001 - SkyPilot's own checks (ValueError, its schema errors)
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise SpecError(f"SkyPilot rejects the task: {message}", "check --accelerators (e.g. A100:8) and the spec",
                        "runner sky") from None
    return None
