"""Run-directory files: atomic JSON without NaN, status transitions, RNG state round trip."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from medtl.engine.state import (
    load_resume,
    read_status,
    rng_state,
    save_resume,
    set_rng_state,
    write_json,
    write_status,
)
from medtl.errors import CheckpointError


def test_json_has_no_nan(tmp_path):
    write_json(tmp_path / "m.json", {"auroc": float("nan"), "x": [np.float32(0.5)], "n": np.int64(3)})
    assert json.loads((tmp_path / "m.json").read_text()) == {"auroc": None, "x": [0.5], "n": 3}
    assert not list(tmp_path.glob(".*tmp"))


def test_status_keeps_start_and_counts_attempts(tmp_path):
    write_status(tmp_path, "running")
    first = json.loads((tmp_path / "status.json").read_text())
    write_status(tmp_path, "failed", error="boom")
    write_status(tmp_path, "running")
    write_status(tmp_path, "completed")
    final = json.loads((tmp_path / "status.json").read_text())
    assert final["status"] == "completed" and read_status(tmp_path) == "completed"
    assert final["started"] == first["started"] and final["attempts"] == 2 and "finished" in final
    assert "error" not in final  # a new attempt clears the previous one's outcome


def test_status_keeps_fields_other_writers_added(tmp_path):
    (tmp_path / "status.json").write_text(
        json.dumps({"status": "pending", "host": "node7", "slurm_job_id": "9_1"})
    )
    write_status(tmp_path, "running")
    write_status(tmp_path, "completed")
    final = json.loads((tmp_path / "status.json").read_text())
    assert final["host"] == "node7" and final["slurm_job_id"] == "9_1" and final["attempts"] == 1


def test_rng_state_round_trip_through_resume_file(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    save_resume(tmp_path / "resume.pt", {"rng": rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(load_resume(tmp_path / "resume.pt")["rng"])  # weights_only load
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_missing_and_broken_resume(tmp_path):
    assert load_resume(tmp_path / "resume.pt") is None
    (tmp_path / "resume.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"resume.pt: resume state cannot be read"):
        load_resume(tmp_path / "resume.pt")
