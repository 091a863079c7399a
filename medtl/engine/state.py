"""The files of a run directory that the loop keeps up to date: status, metrics, the resume state.

Every file is written to a temporary name and renamed into place, so a run killed at any moment
leaves either the previous or the new version, never half a file.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtl.errors import CheckpointError

STATUS_FILE = "status.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
RESUME_FILE = "resume.pt"
RESUME_VERSION = 1


def _jsonable(value: Any) -> Any:
    """Non-finite floats become None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return _jsonable(value.item())
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_jsonable(data), indent=2) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_status(run_dir: Path, status: str, **extra: Any) -> None:
    """status.json: running | completed | failed, with the times it started and last changed."""
    path = run_dir / STATUS_FILE
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    previous: dict[str, Any] = {}
    if path.exists():
        try:
            previous = read_json(path)
        except (OSError, ValueError):
            previous = {}
    # Fields other writers added (a sweep's host, SLURM job id, attempt wall time) are kept; a new
    # attempt clears the previous attempt's outcome.
    kept = {k: v for k, v in previous.items() if status != "running" or k not in ("error", "finished")}
    data = {**kept, "status": status, "started": previous.get("started", now), "updated": now}
    if status == "running":
        data["attempts"] = int(previous.get("attempts", 0)) + 1
    else:
        data["attempts"] = int(previous.get("attempts", 1))
    if status in ("completed", "failed"):
        data["finished"] = now
    data.update(extra)
    write_json(path, data)


def read_status(run_dir: Path) -> str | None:
    try:
        return read_json(run_dir / STATUS_FILE).get("status")
    except (OSError, ValueError):
        return None


# -- RNG ---------------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states in a form ``torch.load(weights_only=True)`` accepts."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed python, numpy, torch's CPU generator and, once CUDA is in use, every CUDA device."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    # Not torch.manual_seed: it queues lazy seeding of every accelerator kind with a recorded stack
    # trace each call (~0.5 ms), too slow for once per epoch of a head on cached features.
    torch.default_generator.manual_seed(seed)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.manual_seed_all(seed)


# -- resume state ------------------------------------------------------------------------------------
@dataclass
class LoopState:
    """Everything that must survive an interruption besides weights and optimiser state."""

    phase_index: int = 0
    epoch: int = -1  # last completed epoch of phase_index
    phase_finished: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    phases: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    phase_best: float | None = None
    bad_epochs: int = 0
    phase_wall: float = 0.0
    phase_energy: float = 0.0
    stopped_early: bool = False

    def begin_phase(self, index: int) -> None:
        """Start phase ``index`` afresh (not resumed)."""
        self.phase_index, self.epoch, self.phase_finished = index, -1, False
        self.phase_best, self.bad_epochs, self.phase_wall, self.phase_energy = None, 0, 0.0, 0.0
        self.stopped_early = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def save_resume(path: Path, state: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({"version": RESUME_VERSION, **state}, tmp)
    os.replace(tmp, path)


def load_resume(path: Path) -> dict[str, Any] | None:
    """The saved resume state, or None when the run has none yet."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated or foreign file: not resumable, say so
        raise CheckpointError(path, f"resume state cannot be read ({exc})") from None
    if not isinstance(state, dict) or state.get("version") != RESUME_VERSION:
        raise CheckpointError(path, "not a medtl resume state of this version")
    return state
