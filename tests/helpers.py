"""Small helpers shared by tests of several packages."""

from __future__ import annotations

from pathlib import Path

# medtl.io.locks.LOCK_SUFFIX and HOLDER_SUFFIX (tests/io/test_locks.py checks they agree).
LOCK_FILE_SUFFIXES = (".lock", ".lock.json")


def visible(folder: Path) -> list[str]:
    """Names in ``folder`` (sorted) without the lock files medtl keeps beside its outputs.

    A lock file stays after its holder is done: removing it could let two later writers lock two
    different files of the same name (the filelock convention).
    """
    return sorted(p.name for p in Path(folder).iterdir() if not p.name.endswith(LOCK_FILE_SUFFIXES))
