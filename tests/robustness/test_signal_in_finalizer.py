"""A SIGTERM that lands inside a finalizer (`__del__`, e.g. regex's Group.__del__ during an export's teardown) was
raised there, and Python printed it as "Exception ignored ... Traceback" and dropped it. It is held and sent again
once the finalizer has returned, like one that lands inside an import."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import os, signal, time
from runner import stopping
from runner.errors import Terminated

stopping.install()

class Finalized:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)  # the signal lands here, inside __del__
        print("finalizer done", flush=True)

try:
    item = Finalized()
    del item
    time.sleep(5)
    print("not stopped", flush=True)
except Terminated:
    print("stopped after the finalizer", flush=True)
"""


def test_a_signal_inside_a_finalizer_is_raised_after_it_not_dropped_with_a_traceback():
    result = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr, result.stderr
    assert result.stdout.splitlines() == ["finalizer done", "stopped after the finalizer"], result.stdout
