from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_thresholds_are_set_once_and_make_loader_applies_them():
    # In a fresh process, so the test sees the first call and leaves this process alone.
    code = (
        "from medtl.data import allocator\n"
        "assert allocator._done is None\n"
        "from medtl.data.dataset import make_loader\n"
        "import torch\n"
        "class D(torch.utils.data.Dataset):\n"
        "    def __len__(self): return 2\n"
        "    def batch(self, items): return torch.zeros(len(items)), torch.zeros(len(items))\n"
        "make_loader(D(), batch_size=2)\n"
        "print(allocator._done, allocator.keep_large_buffers_in_heap())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"]
