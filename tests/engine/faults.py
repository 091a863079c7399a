"""Faults injected into a run through its callbacks: die like ``kill -9`` at a chosen point."""

from __future__ import annotations

import os

from medtl.engine.callbacks import Callback

KILLED = 75  # the exit status of a process killed here


class KillAt(Callback):
    """``KillAt("N")``: end the process once epoch N and its checkpoint writes are done;
    ``KillAt("N:before-last")``: right after epoch N's resume state is written, before the phase's
    ``last.safetensors`` (the window at a phase end)."""

    def __init__(self, point: str) -> None:
        epochs, _, self.where = point.partition(":")
        self.epochs = int(epochs)

    def on_checkpoint(self, name: str, epochs_done: int) -> None:
        if self.where == "before-last" and name == "resume" and epochs_done == self.epochs:
            os._exit(KILLED)

    def on_epoch_committed(self, epochs_done: int) -> None:
        if not self.where and epochs_done == self.epochs:
            os._exit(KILLED)
