"""Test-wide settings: keep torch to one thread (CI has 2 cores) and never touch the network."""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MEDTL_WEIGHTS_DIR", "/nonexistent/medtl-weights")
