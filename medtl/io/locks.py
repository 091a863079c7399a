"""One writer at a time: an exclusive lock on an output (a store, a run directory, a sweep).

``exclusive(path)`` takes an operating-system file lock (``filelock``: ``flock`` on Unix, released
by the kernel when the holder dies, so a killed command never leaves a stale lock) on a hidden
``.<name>.lock`` file beside ``path``. The lock sits beside the output, not inside it, because a
store is published by renaming a finished directory over it. Whoever holds the lock writes its host,
pid and command to ``.<name>.lock.json``; a second command is refused at once with those details
(``BusyError``), or with ``wait=True`` waits until the first one is done.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from medtl.errors import BusyError
from medtl.io.paths import write_error, write_errors

log = logging.getLogger("medtl")

LOCK_SUFFIX = ".lock"
HOLDER_SUFFIX = ".lock.json"


def lock_file(path: str | Path) -> Path:
    """The lock file of ``path``: ``.<name>.lock`` in the same directory."""
    path = Path(path).absolute()
    return path.parent / f".{path.name}{LOCK_SUFFIX}"


def _holder_file(path: Path) -> Path:
    return path.parent / f".{path.name}{HOLDER_SUFFIX}"


def read_holder(path: str | Path) -> dict[str, Any] | None:
    """Who holds (or last held) the lock on ``path``: host, pid, command, since; None if unknown."""
    try:
        data = json.loads(_holder_file(Path(path).absolute()).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_holder(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another process (it has not said which yet)"
    text = f"pid {holder.get('pid')} on {holder.get('host')}"
    if holder.get("since"):
        text += f" since {holder['since']}"
    if holder.get("command"):
        text += f" ({holder['command']})"
    return text


def _write_holder(path: Path) -> None:
    holder = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:300],
    }
    target = _holder_file(path)
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(holder))
    os.replace(tmp, target)


@contextmanager
def exclusive(path: str | Path, *, wait: bool = False, what: str = "output") -> Iterator[Path]:
    """Hold the exclusive lock on ``path`` for the ``with`` block (``path`` need not exist yet).

    Raises BusyError naming the holder when another process holds it, unless ``wait``: then a line
    says who is waited for and the call blocks until the lock is free.
    """
    path = Path(path).absolute()
    lock_path = lock_file(path)
    with write_errors(lock_path.parent):
        lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path))
    if not _acquire(lock, lock_path, timeout=0):
        holder = describe_holder(_read_holder_soon(path))
        if not wait:
            raise BusyError(
                path,
                f"{what} is in use by {holder}",
                hint="wait for it to finish, or pass --wait to start when it is done",
            )
        log.info("%s: waiting for %s to finish", path, holder)
        _acquire(lock, lock_path, timeout=-1)
    try:
        with write_errors(lock_path.parent):
            _write_holder(path)
        yield path
    finally:
        _holder_file(path).unlink(missing_ok=True)
        lock.release()


def _acquire(lock: FileLock, lock_path: Path, *, timeout: float) -> bool:
    """Whether the lock was taken within ``timeout`` seconds (-1: wait for it)."""
    try:
        lock.acquire(timeout=timeout)
    except Timeout:  # before OSError: filelock's Timeout is a TimeoutError, an OSError
        return False
    except OSError as exc:
        error = write_error(exc, lock_path.parent)  # the folder the output goes to
        raise (error or exc) from exc
    return True


def _read_holder_soon(path: Path, tries: int = 5) -> dict[str, Any] | None:
    """The holder's record; a holder that has just taken the lock may take a moment to write it."""
    for _ in range(tries):
        holder = read_holder(path)
        if holder is not None:
            return holder
        time.sleep(0.05)
    return None
