"""Progress reporting arrives through this small interface so the library never imports rich.

The CLI passes a rich progress bar on a terminal and plain periodic lines otherwise (SLURM logs).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("medtl")


class Progress:
    """No-op progress sink; subclasses render it. Tasks may nest (epochs > batches)."""

    def start(self, description: str, total: int | None = None) -> int:
        """Begin a task; returns its id."""
        return 0

    def advance(self, task: int, n: int = 1, **info: Any) -> None:
        """Advance a task by n steps; info holds values to show (loss, metric)."""

    def end(self, task: int, *, interrupted: bool = False) -> None:
        """Finish a task; ``interrupted`` when it stopped before its end (an error, Ctrl-C)."""

    def message(self, text: str) -> None:
        """A line for the user (load reports, skip summaries)."""
        log.info(text)


NULL_PROGRESS = Progress()
