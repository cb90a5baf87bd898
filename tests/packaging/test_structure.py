"""The package's shape: no import cycle between runner's modules (lazy imports count), no module
over 450 lines, the run folder's record files named in one place, task names branched on in one."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "runner"
MAX_LINES = 450


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports_of(path: Path, known: set[str], own: str) -> set[str]:
    """Every runner module `path` imports, at the top or inside a function."""
    found = set()
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            names = [f"{base}.{alias.name}" for alias in node.names]
            # `from package import submodule` takes the submodule; any other name comes from the package
            names += [base] if any(name not in known for name in names) else []
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != own and name != "runner":
                found.add(name)
    return found


def test_no_import_cycles_inside_the_package():
    found = modules()
    graph = {name: imports_of(path, set(found), name) for name, path in found.items()}
    cycles = []

    def visit(node, stack, on_stack, done):
        on_stack.add(node)
        stack.append(node)
        for target in sorted(graph[node]):
            if target in on_stack:
                cycles.append(stack[stack.index(target) :] + [target])
            elif target not in done:
                visit(target, stack, on_stack, done)
        stack.pop()
        on_stack.discard(node)
        done.add(node)

    done: set[str] = set()
    for name in sorted(graph):
        if name not in done:
            visit(name, [], set(), done)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(cycle) for cycle in cycles)


def test_no_module_is_over_the_line_limit():
    long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_record_file_names_are_spelled_in_at_most_two_modules():
    spelled = {
        name
        for name, path in modules().items()
        if re.search(r"""["']run\.json["']""", path.read_text(encoding="utf-8"))
    }
    assert len(spelled) <= 2, spelled


RUN_FOLDER_FILES = ("run.json", "metrics.json", "spec.yaml", "report.md", "fingerprint.json", "label_issues.csv",
                    "best-spec.yaml")


def test_the_run_folders_file_names_are_spelled_only_by_its_owner():
    """Every name of a file in the run folder comes from runner/record/rundir.py (RunDir and its constants)."""
    names = "|".join(re.escape(name) for name in RUN_FOLDER_FILES)
    pattern = re.compile(rf"""["']({names})["']""")
    offenders = {name: [i + 1 for i, line in enumerate(path.read_text(encoding="utf-8").splitlines())
                        if pattern.search(line)]
                 for name, path in modules().items() if name != "runner.record.rundir"}
    offenders = {name: lines for name, lines in offenders.items() if lines}
    assert not offenders, f"run folder file names spelled outside runner/record/rundir.py: {offenders}"


def test_the_task_table_is_data_and_its_behaviour_a_strategy_per_target_type():
    """runner/spec/tasks.py holds the table (light: it imports nothing of runner, so neither numpy nor the
    evaluation); what a task does with a model's outputs is runner/evaluate/strategies.py's, one strategy per
    target type, and every task of the table has one."""
    from runner.evaluate.strategies import STRATEGIES, TaskStrategy, strategy_of
    from runner.spec.tasks import MANY_CLASSES, NUMBER, ONE_CLASS, TASKS, Task

    assert graph()["runner.spec.tasks"] == set(), "the task table imports nothing of runner"
    behaviour = {name for name, value in vars(Task).items() if callable(value) and not name.startswith("__")}
    assert behaviour <= {"num_labels", "can_tune_thresholds", "setting_problems"}, behaviour
    assert set(STRATEGIES) == {ONE_CLASS, MANY_CLASSES, NUMBER}
    for task in TASKS.values():
        strategy = strategy_of(task)
        assert isinstance(strategy, TaskStrategy) and strategy.target == task.target


def test_task_names_are_branched_on_only_in_the_task_table():
    pattern = re.compile(
        r"""task\s*(==|!=|in)\s*[("'{]|["'](single_label|multi_label|text_pair)_classification["']\s*[:)]|["']regression["']\s*(\)|:)"""
    )
    offenders = {}
    for name, path in modules().items():
        if name == "runner.spec.tasks":
            continue
        hits = [i + 1 for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()) if pattern.search(line)]
        if hits:
            offenders[name] = hits
    assert not offenders, f"task-specific branches outside runner/spec/tasks.py: {offenders}"


# ---------------------------------------------------------------------------------------------
# The folders show the stages; the arrows between them run one way.

AREAS = ("spec", "data", "train", "evaluate", "record", "flows", "inference", "publish", "remote")
SHELL = {"runner", "runner.__main__", "runner.cli", "runner.console", "runner.errors", "runner.files",
         "runner.stopping", "runner.redact", "runner.crashes"}
LEAVES = {"runner.redact"}  # below everything: they import nothing of runner
FLOWS = {"runner.flows.single", "runner.flows.crossval", "runner.flows.search"}


def area_of(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in AREAS) else ""


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(path, set(found), name) for name, path in found.items()}


def arrows(source_areas, target_areas) -> list[str]:
    return [
        f"{name} -> {target}"
        for name, targets in graph().items()
        if area_of(name) in source_areas
        for target in targets
        if area_of(target) in target_areas
    ]


def test_every_module_but_the_shell_lives_in_a_stage_folder():
    loose = [name for name in modules() if not area_of(name) and name not in SHELL and name != "runner.schemas"]
    assert not loose, f"modules outside the stage folders ({', '.join(AREAS)}): {loose}"


def test_the_spec_data_and_evaluation_never_import_training_or_what_runs_it():
    assert not arrows({"spec", "data", "evaluate"}, {"train", "flows", "inference", "publish", "remote"})


def test_the_record_never_imports_the_flows_or_what_publishes_it():
    assert not arrows({"record"}, {"flows", "publish", "remote", "inference", "train"})


def test_no_stage_climbs_back_to_one_above_it():
    """The floors, lowest first: the leaves (redaction), errors, spec, evaluate, data, record, publish, train, flows,
    inference, remote; what a floor imports lies below it (bench/import_graph.py counts what is left)."""
    assert not arrows({"spec"}, {"data", "record", "evaluate"}), "the spec is read by the stages, it reads none of them"
    assert not arrows({"evaluate"}, {"record", "data"}), "evaluation computes; the record reads runs and writes it"
    assert not arrows({"train"}, {"flows", "publish", "remote", "inference"}), "a flow passes its checks in"
    assert not arrows({"publish"}, {"remote", "flows", "train"}), "the action reaches Jobs through `runner run --on`"
    assert graph()["runner.errors"] <= LEAVES, "errors import only the leaves (redaction)"


def test_the_leaves_import_nothing_of_runner():
    found = {name: sorted(targets) for name, targets in graph().items() if name in LEAVES and targets}
    assert not found, f"a leaf imports runner: {found}"


def private_names_taken_across_folders(path: Path, own: str, known: set[str]) -> list[str]:
    """`line: from X import _name` for each private name `path` takes from a module of another folder (each
    module at the top of the package counts as a folder of its own)."""
    package = own if path.name == "__init__.py" else own.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.ImportFrom):
            continue
        base = node.module or ""
        if node.level:
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
        if base not in known or not base.startswith("runner"):
            continue
        for alias in node.names:
            if alias.name.startswith("_") and not alias.name.startswith("__") and folder_of(base) != folder_of(own):
                found.append(f"{node.lineno}: from {base} import {alias.name}")
    return found


def folder_of(name: str) -> str:
    parts = name.split(".")
    return ".".join(parts[:2])


def test_no_module_takes_another_folders_private_name():
    found = modules()
    offenders = {name: hits for name, path in found.items()
                 if (hits := private_names_taken_across_folders(path, name, set(found)))}
    assert not offenders, f"private names imported across folders (make them public where they live): {offenders}"


def test_flows_never_import_each_other():
    found = [f"{name} -> {target}" for name, targets in graph().items() if name in FLOWS for target in targets & FLOWS]
    assert not found, f"a flow imports another (they share runner.train.pipeline and runner.flows.lifecycle): {found}"


SUITES = {"act", "robustness", "packaging", "support"}  # beside the stages: a real runner, faults, the package


def test_tests_mirror_the_package():
    """tests/<stage>/test_*.py for each stage of runner/, plus the act, robustness and packaging suites and
    support/ (the tiny models and the fakes); no test module at the top, no two with one name."""
    tests = PACKAGE.parent / "tests"
    stages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert not list(tests.glob("test_*.py")), "a test module belongs in the folder of what it tests"
    folders = {path.name for path in tests.iterdir() if path.is_dir() and not path.name.startswith((".", "_"))}
    assert folders <= stages | SUITES, folders - stages - SUITES
    names = [path.name for path in tests.rglob("test_*.py")]
    assert len(names) == len(set(names)), "pytest imports test modules by their file name"


# ---------------------------------------------------------------------------------------------
# One door for writes: runner/files.py is the only module that creates, replaces or removes a file or folder

DOOR = PACKAGE / "files.py"
WRITE_MODES = re.compile(r"[wax+]")
PATH_WRITES = {"write_text", "write_bytes", "mkdir", "unlink", "rmdir", "rename", "touch", "symlink_to",
               "hardlink_to"}
MODULE_WRITES = {
    "shutil": {"rmtree", "move", "copy", "copy2", "copyfile", "copytree"},
    "os": {"replace", "rename", "renames", "remove", "unlink", "rmdir", "removedirs", "makedirs", "mkdir"},
    "tempfile": {"mkdtemp", "mkstemp", "NamedTemporaryFile", "TemporaryDirectory"},
}


def writes_in(source: str) -> list[str]:
    """`line: call` for every call in `source` that writes a file or folder other than through the door."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module in MODULE_WRITES:
            for alias in node.names:
                if alias.name in MODULE_WRITES[node.module]:
                    found.append(f"{node.lineno}: from {node.module} import {alias.name}")
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "open":
            mode = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "mode"),
                                                                   None)
            if mode is not None and not (isinstance(mode, ast.Constant) and not WRITE_MODES.search(str(mode.value))):
                found.append(f"{node.lineno}: open(..., {ast.unparse(mode)})")
        elif isinstance(func, ast.Attribute):
            owner = func.value.id if isinstance(func.value, ast.Name) else None
            if owner in MODULE_WRITES and func.attr in MODULE_WRITES[owner]:
                found.append(f"{node.lineno}: {owner}.{func.attr}")
            elif owner not in MODULE_WRITES and func.attr in PATH_WRITES:
                found.append(f"{node.lineno}: .{func.attr}()")
            elif func.attr == "replace" and len(node.args) == 1 and not node.keywords and owner != "dataclasses":
                found.append(f"{node.lineno}: .replace(target)")  # Path.replace; str.replace takes two
    return found


def test_every_write_goes_through_the_one_door():
    """No module but runner/files.py opens a file for writing, makes, renames or removes a file or folder."""
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path != DOOR:
            found = writes_in(path.read_text(encoding="utf-8"))
            if found:
                offenders[str(path.relative_to(PACKAGE.parent))] = found
    assert not offenders, offenders


def test_the_door_check_finds_a_write_added_in_a_stage_folder():
    """The check above can fail: each kind of write, added to a stage module's source, is found."""
    stage = (PACKAGE / "evaluate" / "metrics.py").read_text(encoding="utf-8")
    for added in ('open(p, "w")', 'open(p, mode="a", encoding="utf-8")', "Path(p).write_text('x')", "p.mkdir()",
                  "shutil.rmtree(p)", "os.replace(a, b)", "p.replace(q)", "os.remove(p)", "p.unlink()",
                  "tempfile.mkdtemp()", "shutil.move(a, b)", "os.rename(a, b)", "open(p, 'xb')"):
        assert writes_in(stage + f"\n\ndef added(p, q, a, b):\n    {added}\n"), added
    assert not writes_in(stage + "\n\ndef fine(p):\n    open(p)\n    open(p, 'rb')\n    'a'.replace('a', 'b')\n")


# ---------------------------------------------------------------------------------------------
# One voice: runner/console.py is the only module that prints to the terminal

PRINTER = PACKAGE / "console.py"
TERMINAL = ("sys.stdout", "sys.stderr", "sys.__stdout__", "sys.__stderr__")


def prints_in(source: str) -> list[str]:
    """`line: print(...)` for each print() that writes to the terminal: no file= or file=sys.stdout/stderr.
    A print() into a file object the code opened itself is writing a file, and is left alone."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
            target = next((k.value for k in node.keywords if k.arg == "file"), None)
            if target is None or ast.unparse(target) in TERMINAL:
                found.append(f"{node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_console_is_the_only_printer():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path != PRINTER and (found := prints_in(path.read_text(encoding="utf-8"))):
            offenders[str(path.relative_to(PACKAGE.parent))] = found
    assert not offenders, f"print() outside runner/console.py (call say, warn, note or progress): {offenders}"


def test_the_printer_check_tells_a_terminal_from_a_file():
    assert prints_in("print('x')") and prints_in("import sys\nprint('x', file=sys.stderr, flush=True)")
    assert not prints_in("def f(fh):\n    print('x', file=fh)\n") and not prints_in("s = \"print('x')\"")
