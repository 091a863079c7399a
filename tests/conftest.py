"""Test-wide settings: keep torch to one thread (CI has 2 cores) and never touch the network."""

from __future__ import annotations

import os
import subprocess

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MEDTL_WEIGHTS_DIR", "/nonexistent/medtl-weights")


def _mount_tmpfs(path, options: str) -> bool:
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nothing can be written to: a read-only tmpfs for root (who ignores permission
    bits), else a directory without write permission."""
    path = tmp_path / "read-only"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    if not _mount_tmpfs(path, "ro,size=1m"):
        pytest.skip("cannot mount a read-only file system here")
    yield path
    subprocess.run(["umount", "--lazy", str(path)], check=False)  # memory maps may still be open


@pytest.fixture
def small_disk(tmp_path):
    """``(folder, resize)``: a tmpfs of a few hundred KiB (root only) and a function that grows it,
    to run out of space for real and then free some."""
    path = tmp_path / "small-disk"
    path.mkdir()
    if os.geteuid() != 0 or not _mount_tmpfs(path, "size=256k"):
        pytest.skip("needs root and tmpfs to make a small file system")

    def resize(size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)

    yield path, resize
    subprocess.run(["umount", "--lazy", str(path)], check=False)  # memory maps may still be open
