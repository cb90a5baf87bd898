"""Where runner keeps what it can rebuild (tokenized data, torch.compile's cache): one folder, safe to delete."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$RUNNER_CACHE_DIR, else $XDG_CACHE_HOME/runner, else ~/.cache/runner. Safe to delete."""
    if os.environ.get("RUNNER_CACHE_DIR"):
        return Path(os.environ["RUNNER_CACHE_DIR"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "runner"
