"""Two `prepare` commands to one output (issue 6, section 2), with real processes.

Seen on the landed main: in 3 of ~14 trials one exited 0 reporting 964 samples while the published
images.npy header said 0 rows and its checksum did not match; the other crashed with a traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medtl.io.store import Store

MEDTL = [sys.executable, "-c", "from medtl_cli.main import main; main()"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("concurrent") / "raw"
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        for i in range(30):
            path = root / name / f"{name}{i:02d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(path)
    return root


def prepare(*args: str | Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*MEDTL, "prepare", "folder", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def test_concurrent_prepares_never_publish_a_corrupt_store(raw, tmp_path):
    out = tmp_path / "store"  # scripts/fault_trials.py repeats this many times
    procs = [prepare(raw, out, "--overwrite") for _ in range(3)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    for code, _stdout, stderr in results:
        assert "Traceback" not in stderr, stderr
        if code != 0:
            lines = [line for line in stderr.splitlines() if line.strip()]
            assert code == 2 and len(lines) == 1 and "store is in use by pid" in lines[0], stderr
    assert any(code == 0 for code, *_ in results)
    store = Store(out)
    store.verify()  # every byte matches the manifest
    assert len(store) == 60 and store.images.shape == (60, 1, 24, 24)


HOLD = textwrap.dedent(
    """
    import sys
    from medtl.io.locks import exclusive

    with exclusive(sys.argv[1], what="store"):
        print("locked", flush=True)
        sys.stdin.readline()
    """
)


def test_a_second_prepare_fails_at_once_or_waits_with_wait(raw, tmp_path):
    out = tmp_path / "store"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    try:
        second = prepare(raw, out)
        code, (_, stderr) = second.wait(timeout=120), second.communicate()
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1, stderr
        assert lines[0].startswith(f"error: {out}: store is in use by pid {holder.pid} on ")
        assert "--wait" in lines[0]
        waiting = prepare(raw, out, "--wait")
        with pytest.raises(subprocess.TimeoutExpired):
            waiting.wait(timeout=3)  # still waiting for the holder
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert waiting.wait(timeout=120) == 0, waiting.communicate()[1]
    assert len(Store(out)) == 60
