"""One writer at a time: the output lock, tested with real processes (issue 6, section 2)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from medtl.errors import BusyError, MedtlError
from medtl.io import locks
from medtl.io.locks import exclusive, read_holder
from tests.helpers import LOCK_FILE_SUFFIXES

HOLD = textwrap.dedent(
    """
    import sys, time
    from medtl.io.locks import exclusive

    with exclusive(sys.argv[1]):
        print("locked", flush=True)
        sys.stdin.readline()  # hold until the test closes stdin
        time.sleep(float(sys.argv[2]))
    """
)


def hold(path: Path, linger: float = 0.0) -> subprocess.Popen:
    """A process holding the lock on ``path`` until its stdin is closed (then ``linger`` seconds)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(linger)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline().strip() == "locked"
    return proc


def release(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(timeout=30)


def test_suffixes_agree_with_the_test_helper():
    assert (locks.LOCK_SUFFIX, locks.HOLDER_SUFFIX) == LOCK_FILE_SUFFIXES


def test_a_second_process_is_refused_at_once_naming_the_holder(tmp_path):
    target = tmp_path / "store"
    proc = hold(target)
    try:
        start = time.monotonic()
        with pytest.raises(BusyError) as err, exclusive(target):
            pass
        assert time.monotonic() - start < 2
        message = err.value.message
        assert message.startswith(f"{target}: output is in use by pid {proc.pid} on {socket.gethostname()}")
        assert "\n" not in message and "--wait" in err.value.hint
        assert isinstance(err.value, MedtlError) and err.value.exit_code == 2
        assert read_holder(target)["pid"] == proc.pid
    finally:
        release(proc)
    with exclusive(target):  # free again
        assert read_holder(target)["pid"] == os.getpid()
    assert read_holder(target) is None  # the record goes with the lock


def test_wait_blocks_until_the_holder_is_done(tmp_path):
    target = tmp_path / "run"
    proc = hold(target, linger=1.0)
    try:
        proc.stdin.close()  # the holder lets go about one second from now
        start = time.monotonic()
        with exclusive(target, wait=True):
            waited = time.monotonic() - start
        assert waited > 0.5
    finally:
        proc.wait(timeout=30)


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    target = tmp_path / "store"
    proc = hold(target)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    with exclusive(target):  # the kernel released the lock with the process
        pass


def test_the_lock_is_usable_for_directories_that_exist(tmp_path):
    run_dir = tmp_path / "runs" / "abc"
    run_dir.mkdir(parents=True)
    with exclusive(run_dir, what="run"):
        assert (tmp_path / "runs" / ".abc.lock").exists()
        with pytest.raises(BusyError, match=r"run is in use by pid \d+"), exclusive(run_dir, what="run"):
            pass  # a second holder in the same process is refused too


def test_a_lock_in_a_read_only_place_is_one_line(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(MedtlError, match="cannot be written"), exclusive(tmp_path / "x" / "store"):
        pass
