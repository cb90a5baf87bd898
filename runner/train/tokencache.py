"""The tokenization cache's own record: each entry carries its key and the sha256 of every split file,
written last; an entry is used only when all of them check out. A damaged (truncated, emptied,
edited), foreign or incomplete entry is discarded and rebuilt with a warning, never trusted."""

from __future__ import annotations

import json
from pathlib import Path

from runner.files import atomic_write_text, sha256_file

CACHE_RECORD = "runner-cache.json"


def write_cache_record(folder: Path, key: str, splits: dict, version: int) -> None:
    """The entry's key and the sha256 of each split file, checked before the entry is used again."""
    files = {name: sha256_file(folder / f"{name}.arrow") for name in splits}
    atomic_write_text(folder / CACHE_RECORD, json.dumps({"format": version, "key": key, "files": files}))


def cache_problem(folder: Path, key: str, splits: dict, version: int) -> str | None:
    """Why a cache entry cannot be used (damaged, foreign, incomplete), or None when every file is the one written."""
    try:
        record = json.loads((folder / CACHE_RECORD).read_text(encoding="utf-8"))
        if not isinstance(record, dict) or record.get("key") != key or record.get("format") != version:
            return "foreign (written for other data or by another version)"
        for name in splits:
            path = folder / f"{name}.arrow"
            if not path.is_file():
                return f"incomplete ({path.name} is missing)"
            if sha256_file(path) != (record.get("files") or {}).get(name):
                return f"damaged ({path.name} is not the file that was written)"
    except FileNotFoundError:
        return "without its record (written by an older version, or cut short)"
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return f"unreadable ({type(exc).__name__})"
    return None
