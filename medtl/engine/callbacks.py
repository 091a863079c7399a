"""What the training loop reports as it goes: progress (epochs and batches) and TensorBoard scalars.

The loop calls every callback at the same points; a callback never changes what is computed.
``medtl.engine.run`` takes extra callbacks (tests inject faults through them, sweeps could log).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medtl.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from torch import nn


class Callback:
    """No-op hooks; subclasses override what they need."""

    def on_phase_start(self, phase: str, *, epochs: int, done: int, steps: int) -> None:
        """A phase begins (or resumes with ``done`` epochs already run)."""

    def on_epoch_start(self, phase: str, epoch: int) -> None:
        pass

    def on_batch_end(self, loss: float) -> None:
        pass

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        """``record``: phase, epoch (within the phase), global_epoch, train_loss, lr, val_* values."""

    def on_phase_end(self, summary: dict[str, Any]) -> None:
        pass

    def on_checkpoint(self, name: str, epochs_done: int) -> None:
        """``checkpoints/<name>`` ("last", "best" or "resume") was written after ``epochs_done`` epochs."""

    def on_epoch_committed(self, epochs_done: int) -> None:
        """Everything of the epoch, checkpoint writes included, is done."""

    def on_train_end(self, model: nn.Module) -> None:
        """Every phase ran; ``model`` holds the last epoch's weights (on every process)."""

    def close(self) -> None:
        pass


class ProgressCallback(Callback):
    """An epoch bar per phase and a batch bar per epoch on the medtl Progress; the epoch bar shows the
    losses and the validation monitor."""

    def __init__(self, progress: Progress = NULL_PROGRESS, monitor: str = "auroc") -> None:
        self.progress = progress
        self._shown = ("train_loss", "val_loss", f"val_{monitor}")
        self._phase_task: int | None = None
        self._batch_task: int | None = None
        self._steps = 0

    def on_phase_start(self, phase: str, *, epochs: int, done: int, steps: int) -> None:
        self._steps = steps
        self._phase_task = self.progress.start(f"phase {phase}", total=epochs)
        if done:
            self.progress.advance(self._phase_task, done)

    def on_epoch_start(self, phase: str, epoch: int) -> None:
        self._batch_task = self.progress.start(f"{phase} epoch {epoch + 1}", total=self._steps)

    def on_batch_end(self, loss: float) -> None:
        if self._batch_task is not None:
            self.progress.advance(self._batch_task, loss=loss)

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        if self._batch_task is not None:
            self.progress.end(self._batch_task)
            self._batch_task = None
        if self._phase_task is not None:
            info = {k: v for k, v in record.items() if k in self._shown}
            self.progress.advance(self._phase_task, **info)

    def on_phase_end(self, summary: dict[str, Any]) -> None:
        if self._phase_task is not None:
            self.progress.end(self._phase_task)
            self._phase_task = None
        if summary.get("stopped_early"):
            self.progress.message(
                f"phase {summary['name']}: early stop after {summary['epochs_run']} epochs "
                f"(no improvement for {summary['patience']})"
            )


class TensorBoardCallback(Callback):
    """Scalars per epoch under ``<phase>/<name>``, stepped by the run's epoch so phases line up."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._writer = None

    def _w(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # imports tensorboard; only when used

            self._writer = SummaryWriter(str(self.log_dir))
        return self._writer

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        w = self._w()
        for key, value in record.items():
            numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
            if numeric and key not in ("epoch", "global_epoch", "phase_index") and math.isfinite(value):
                w.add_scalar(f"{record['phase']}/{key}", value, record["global_epoch"] + 1)
        # SummaryWriter flushes on its own every 2 minutes; flushing per epoch would slow
        # thousand-epoch head phases on cached features.

    def on_phase_end(self, summary: dict[str, Any]) -> None:
        w = self._w()
        for key in ("kwh", "wall_time_s"):
            if key in summary:
                w.add_scalar(f"phase_summary/{key}", summary[key], summary["index"])
        w.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
