"""Keep large batch buffers in the heap instead of mapping fresh pages for every batch.

glibc serves allocations above its mmap threshold (at most 32 MiB by default) with a new mapping
and returns it to the kernel on free, so every batch tensor of that size (64 x 3 x 224 x 224
float32 is 38 MiB) is page-faulted in anew: on a 2-core machine that cost 4x the time of reading
and normalising the batch (docs/benchmarks.md). Raising the thresholds lets freed batches be reused.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger("medtl")

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_done: bool | None = None


def keep_large_buffers_in_heap(threshold_mib: int = 256) -> bool:
    """Raise glibc's mmap and trim thresholds once per process; False where there is no glibc."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    threshold = threshold_mib << 20
    _done = bool(mallopt(_M_MMAP_THRESHOLD, threshold)) and bool(mallopt(_M_TRIM_THRESHOLD, 2 * threshold))
    if not _done:
        log.debug("mallopt refused the thresholds; batches stay memory-mapped")
    return _done
