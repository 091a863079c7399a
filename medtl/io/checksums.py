"""Content checksums of store files, cheap sampled ones, and the signatures of input files.

* ``file_checksum``: SHA-256 of the whole file (``"sha256:<hex>"``), what the manifest records for
  every array and samples.csv; ``data check`` and ``--verify`` compare against it.
* ``sampled_checksum``: SHA-256 of the size and 64 evenly spaced 4 KiB blocks (header and tail
  included), recorded for the large arrays so a run can check them in milliseconds at start. It
  catches a truncated, replaced or re-written file, not every flipped byte: the full checksum does.
* ``input_signature``: (size, mtime) of the files a conversion read, so a resumed ``prepare``
  notices inputs that changed since the interrupted run.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path

_CHUNK = 1 << 23
_BLOCKS = 64
_BLOCK = 4096


def file_checksum(path: Path, chunk: int = _CHUNK, on_bytes: Callable[[int], None] | None = None) -> str:
    """``sha256:<hex>`` of the file; ``on_bytes(n)`` is called after each chunk (progress)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
            if on_bytes is not None:
                on_bytes(len(block))
    return "sha256:" + digest.hexdigest()


def sampled_checksum(path: Path, blocks: int = _BLOCKS, block: int = _BLOCK) -> str:
    """``sampled-sha256:<hex>`` of the file size and ``blocks`` evenly spaced blocks."""
    size = os.path.getsize(path)
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        last = max(0, size - block)
        for i in range(blocks):
            fh.seek(last * i // max(1, blocks - 1))
            digest.update(fh.read(block))
    return "sampled-sha256:" + digest.hexdigest()


def input_signature(files: Sequence[str | Path]) -> list[list[int] | None]:
    """``[size, mtime_ns]`` of each file (None for one that is gone)."""
    out: list[list[int] | None] = []
    for name in files:
        try:
            st = os.stat(name)
        except OSError:
            out.append(None)
        else:
            out.append([st.st_size, st.st_mtime_ns])
    return out
