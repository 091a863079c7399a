"""A run's checkpoints: ``last`` / ``best`` safetensors and the resume state, written by rank 0.

``last.safetensors`` holds the whole model at every phase start and end; the resume state
``resume.pt``, written after an epoch when ``checkpoint_interval`` seconds have passed since the
last write and at every phase end, holds only what the current phase can change (its trainable
parameters and the buffers it can move: all of them, or the head's in a cached phase) plus
optimiser, schedule, RNG and bookkeeping. Parameters a phase does not train are constant within
it, so ``last.safetensors`` + ``resume.pt`` rebuild the model exactly, and a head-only phase on
cached features does not write the backbone every epoch. ``best.safetensors`` (best validation
monitor over the whole run) is written when its phase ends.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medtl.engine.callbacks import Callback
from medtl.engine.distributed import DistInfo
from medtl.engine.state import RESUME_FILE, load_resume, save_resume
from medtl.models import load_model_weights, save_model

Delta = dict[str, torch.Tensor]


class Checkpointer:
    """Writes and restores the checkpoints of one run; callbacks hear of every file written."""

    def __init__(
        self,
        model: nn.Module,
        directory: Path,
        metadata: dict[str, str],
        dist: DistInfo,
        callbacks: Sequence[Callback] = (),
    ) -> None:
        self.model, self.dir, self.metadata, self.dist = model, directory, metadata, dist
        self.callbacks = list(callbacks)
        self.best_delta: Delta | None = None  # best weights not yet on disk
        self.last_delta: Delta | None = None  # what the phase changed, as of the last epoch
        self._changing: list[tuple[str, torch.Tensor]] = []
        self._saved_at = time.monotonic()

    def track(self, names: Sequence[str], head: nn.Module | None = None) -> None:
        """Remember the tensors a phase can change: the trainable parameters ``names`` and the
        buffers (all of them, or only ``head``'s when nothing else runs)."""
        head_buffers = None if head is None else {id(b) for b in head.buffers()}
        keep = set(names) | {
            n for n, b in self.model.named_buffers() if head_buffers is None or id(b) in head_buffers
        }
        state = self.model.state_dict(keep_vars=True)  # references, updated in place by training
        self._changing = [(k, v) for k, v in state.items() if k in keep]

    def delta(self) -> Delta:
        """A CPU copy of what the current phase can change."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self._changing}

    def _written(self, name: str, epochs_done: int) -> None:
        for cb in self.callbacks:
            cb.on_checkpoint(name, epochs_done)

    def save_model(self, name: str, delta: Delta | None = None, *, epochs_done: int, **meta: Any) -> None:
        """Write the model (with ``delta`` swapped in when given) as ``<name>.safetensors``."""
        if not self.dist.is_main:
            return
        metadata = {**self.metadata, **{k: str(v) for k, v in meta.items()}}
        path = self.dir / f"{name}.safetensors"
        if delta is None:
            save_model(self.model, path, metadata)
        else:
            current = {k: v.detach().clone() for k, v in self.model.state_dict().items() if k in delta}
            self.model.load_state_dict(delta, strict=False)
            try:
                save_model(self.model, path, metadata)
            finally:
                self.model.load_state_dict(current, strict=False)
        self._written(name, epochs_done)

    # -- the resume state ----------------------------------------------------------------------------
    def resume_due(self, interval: float) -> bool:
        return time.monotonic() - self._saved_at >= interval

    def save_resume(self, state: dict[str, Any], *, epochs_done: int) -> None:
        """Write ``state`` plus the deltas as the resume state (rank 0)."""
        self._saved_at = time.monotonic()
        if not self.dist.is_main:
            return
        save_resume(
            self.dir / RESUME_FILE, {**state, "delta": self.last_delta, "best_delta": self.best_delta}
        )
        self._written("resume", epochs_done)

    def load_resume(self) -> dict[str, Any] | None:
        return load_resume(self.dir / RESUME_FILE)

    def restore(self, saved: dict[str, Any]) -> None:
        """The weights of a resume state: ``last.safetensors`` with the saved delta on top."""
        load_model_weights(self.model, self.dir / "last.safetensors")
        self.model.load_state_dict(saved["delta"], strict=False)
        self.last_delta = saved["delta"]
        self.best_delta = saved.get("best_delta")
