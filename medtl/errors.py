"""User-facing errors. Each carries a one-line message that names the file and the problem.

The CLI turns any MedtlError into one red line on stderr and exit code 2; other exceptions
are bugs and propagate with their traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class MedtlError(Exception):
    """Base class of every error a user can cause and fix."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InputError(MedtlError):
    """A file or directory given by the user cannot be used (unreadable, malformed, inconsistent)."""

    def __init__(self, path: str | Path | None, problem: str, *, hint: str | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.problem = problem
        message = problem if path is None else f"{path}: {problem}"
        super().__init__(message, hint=hint)


class OutputExistsError(MedtlError):
    """The output path exists and overwriting was not asked for."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(f"{path}: output already exists", hint="pass --overwrite to replace it")
        self.path = Path(path)


class OutputError(MedtlError):
    """An output cannot be written: it would destroy an input or something medtl did not write, its
    directory is read-only, or the disk is full."""

    def __init__(self, path: str | Path, problem: str, *, hint: str | None = None) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}", hint=hint)


class BusyError(OutputError):
    """Another medtl command holds the output (a store being prepared, a run being trained)."""


class ConfigError(MedtlError):
    """Settings, RunConfig or a strategy definition is invalid."""


class StoreError(InputError):
    """A prepared store (or a file next to it) is missing, incomplete or inconsistent."""


class UnknownChoiceError(MedtlError):
    """A name is not among the valid choices; the message suggests close matches."""

    def __init__(self, kind: str, name: str, choices: Iterable[str]) -> None:
        choices = list(choices)
        self.kind, self.name, self.choices = kind, name, choices
        super().__init__(f"unknown {kind} '{name}'{did_you_mean(name, choices)}")


class WeightsMissingError(MedtlError):
    """Pretrained weights are not on disk; the message says which file to place where."""


class CheckpointError(InputError):
    """A checkpoint cannot be loaded into the model (no matching keys, shape mismatch, ...)."""


class TrainingError(MedtlError):
    """Training cannot go on (NaN loss, resume with a different config, ...)."""


class SkipSample(Exception):
    """Raised by a converter for one bad sample; prepare records it and goes on (or stops with --strict)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ", did you mean 'a', 'b'?" for close matches, else the list of valid choices."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(name, choices, n=n, cutoff=0.5)
    if not close:
        close = [c for c in choices if name.lower() in c.lower()][:n]
    if close:
        return ", did you mean " + ", ".join(f"'{c}'" for c in close) + "?"
    if len(choices) <= 12:
        return "; valid choices: " + ", ".join(choices)
    return ""
