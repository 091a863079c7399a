"""A run killed at any point and started again ends with exactly the metrics of an uninterrupted run."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from medtl.engine import run
from tests.engine.faults import KILLED

PROGRESSIVE = {"head": 2, "last_blocks": 2, "all_non_bn": 1}
TIMING_KEYS = {"time_s", "wall_time_s", "energy_j", "kwh", "last_session_wall_time_s", "energy"}


def without_timing(value):
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def run_killed(config, after_epochs: int | str) -> subprocess.CompletedProcess:
    """Run ``config`` in a subprocess that dies (os._exit) once ``after_epochs`` epochs are saved."""
    code = (
        "import json, sys\n"
        "from medtl.engine import RunConfig, run\n"
        "from tests.engine.faults import KillAt\n"
        "run(RunConfig.parse(json.loads(sys.argv[1])), callbacks=[KillAt(sys.argv[2])])\n"
    )
    # The same intra-op threads as this process: CPU convolutions sum in a thread-count-dependent
    # order, so the killed part must run like the reference and the resumed part do.
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    return subprocess.run(
        [sys.executable, "-c", code, json.dumps(config.model_dump(mode="json")), str(after_epochs)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("augment", "kill_after", "interval"),
    [
        ("default", 1, 0),  # inside the first phase, augmented (every RNG matters)
        ("none", 1, 0),  # inside a head phase trained on cached features
        # state saved only at phase ends: killed one epoch after the last save, that epoch is replayed
        ("default", 3, 1e9),
        # at the end of phase 2, after its resume state is written but before last.safetensors
        ("default", "4:before-last", 1e9),
    ],
)
def test_killed_run_resumes_to_identical_metrics(make_config, augment, kill_after, interval):
    common = dict(
        strategy="progressive",
        phase_epochs=PROGRESSIVE,
        lr=3e-3,
        augment=augment,
        deterministic=True,
        warmup_epochs=0.5,
        scheduler="cosine",
        checkpoint_interval=interval,
    )
    reference = make_config(run_name="reference", **common)
    run(reference)
    config = make_config(run_name="interrupted", **common)
    killed = run_killed(config, kill_after)
    assert killed.returncode == KILLED, killed.stderr[-2000:]
    status = json.loads((config.run_dir / "status.json").read_text())
    assert status["status"] == "running"  # a killed process cannot say more
    assert not (config.run_dir / "metrics.json").exists()

    result = run(config)
    assert result.resumed
    expected = json.loads((reference.run_dir / "metrics.json").read_text())
    got = json.loads((config.run_dir / "metrics.json").read_text())
    assert len(got["history"]) == 5
    assert without_timing(got) == without_timing(expected)
    assert json.loads((config.run_dir / "status.json").read_text())["attempts"] == 2
