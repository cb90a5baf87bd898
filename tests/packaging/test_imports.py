"""Importing a module of runner does nothing but define it: no environment variable set or changed, no signal
handler installed, no exception hook replaced. Each module is imported alone in a fresh interpreter; what a
process needs (OMP_WAIT_POLICY, the progress switches, the stop handlers) is set by the entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import importlib, json, os, signal, sys
signals = [s for s in signal.valid_signals() if s not in (signal.SIGKILL, signal.SIGSTOP)]
def state():
    handlers = {}
    for number in signals:
        try:
            handlers[signal.Signals(number).name] = signal.getsignal(number)
        except ValueError:  # a real-time signal without a name
            handlers[str(number)] = signal.getsignal(number)
    return dict(os.environ), handlers, sys.excepthook
env, handlers, hook = state()
importlib.import_module(sys.argv[1])
env2, handlers2, hook2 = state()
print(json.dumps({
    "environ": sorted(k for k in set(env) | set(env2) if env.get(k) != env2.get(k)),
    "signals": sorted(k for k in handlers if handlers[k] is not handlers2.get(k)),
    "excepthook": hook is not hook2,
}))
"""


def runner_modules() -> list[str]:
    out = []
    for path in sorted((ROOT / "runner").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name != "runner.__main__":  # runs the program: what it sets is the entry point's to set
            out.append(name)
    return out


def side_effects(module: str) -> dict:
    result = subprocess.run([sys.executable, "-c", PROBE, module], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    if result.returncode != 0:
        return {"import failed": result.stderr.strip().splitlines()[-1:]}
    found = json.loads(result.stdout.strip().splitlines()[-1])
    return {key: value for key, value in found.items() if value}


def test_importing_any_module_changes_no_process_state():
    with ThreadPoolExecutor(max_workers=4) as pool:
        found = dict(zip(runner_modules(), pool.map(side_effects, runner_modules())))
    changed = {module: effects for module, effects in found.items() if effects}
    assert not changed, f"importing these modules changes the process (move it into the entry point): {changed}"


@pytest.mark.parametrize("code", ["import os; os.environ['X_RUNNER_PROBE'] = '1'",
                                  "import signal; signal.signal(signal.SIGUSR1, lambda *a: None)"])
def test_the_probe_sees_a_change(tmp_path, code):
    (tmp_path / "probe_target.py").write_text(code + "\n", encoding="utf-8")
    result = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r})\n" + PROBE,
                             "probe_target"], capture_output=True, text=True, timeout=60)
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["environ"] == ["X_RUNNER_PROBE"] or found["signals"] == ["SIGUSR1"], found
