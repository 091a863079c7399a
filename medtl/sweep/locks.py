"""One writer per folder: an exclusive lock file with the holder's host and pid beside it.

The lock is an OS-level lock (``filelock``, flock on POSIX), so it is released when its process
dies, however it dies: a SLURM job killed at its time limit leaves no stale lock behind. The
holder file only names who holds it, for the one-line refusal a second writer gets.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from medtl.errors import MedtlError

LOCK_FILE = ".lock"


class LockedError(MedtlError):
    """Another process holds the lock of a folder."""


def holder(folder: Path) -> dict | None:
    """Who holds (or last held) the lock of ``folder``: host, pid, since."""
    try:
        return json.loads((folder / f"{LOCK_FILE}.holder").read_text())
    except (OSError, ValueError):
        return None


def describe_holder(folder: Path) -> str:
    info = holder(folder)
    if not info:
        return "another process"
    return f"pid {info.get('pid')} on {info.get('host')} (since {info.get('since')})"


@contextmanager
def exclusive(folder: Path, what: str = "folder", *, wait: float = 0) -> Iterator[None]:
    """Hold the lock of ``folder`` (created if needed); LockedError at once (or after ``wait`` s)."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(folder / LOCK_FILE, timeout=wait)
    try:
        lock.acquire()
    except Timeout:
        raise LockedError(f"{folder}: this {what} is in use by {describe_holder(folder)}") from None
    try:
        record = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        tmp = folder / f".{LOCK_FILE}.holder.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(record))
        os.replace(tmp, folder / f"{LOCK_FILE}.holder")
        yield
    finally:
        lock.release()


def is_locked(folder: Path) -> bool:
    """True while some process holds the lock of ``folder``."""
    if not (folder / LOCK_FILE).exists():
        return False
    lock = FileLock(folder / LOCK_FILE, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    lock.release()
    return False
