"""The report's input: one typed row per run, whatever wrote the run folder.

Everything the report computes (groups, intervals, paired tests, tables, figures) reads a
``RunTable`` of ``RunRecord`` rows; reading run folders is one adapter (``medtl.report.reader``).
A run that failed, is still running or could not be read is a row too (with its status and
error line), so a partial sweep is counted and listed, never crashed on.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medtl.metrics.comparison import Scored

RunStatus = Literal["completed", "failed", "running", "pending"]
STATUSES: tuple[str, ...] = ("completed", "failed", "running", "pending")
# Factors that repeat a measurement rather than change what is measured: the report aggregates
# over them (mean ± std over seeds and folds) and pairs runs on them in paired tests.
REPLICATE_FACTORS: tuple[str, ...] = ("seed", "fold")


@dataclass
class Predictions:
    """Per-sample test outputs of one run (``predictions_test.npz``): store sample index, patient
    id, target and score (classification: probabilities; segmentation: the sample's Dice)."""

    index: np.ndarray
    patient: np.ndarray
    target: np.ndarray
    score: np.ndarray

    def scored(self, keep: np.ndarray | None = None) -> Scored:
        """The predictions (of the samples at positions ``keep``) for medtl.metrics.comparison."""
        if keep is None:
            return Scored(self.patient, self.target, self.score)
        return Scored(self.patient[keep], self.target[keep], self.score[keep])


@dataclass
class EpochPoint:
    """One validation point of a run's history: epoch counted over all phases, phase, values."""

    epoch: int
    phase: str
    values: dict[str, float]


@dataclass
class RunRecord:
    """One run. ``factors`` are what the sweep varied (or the run's settings that can vary:
    store, backbone, init, strategy, seed, fraction, ...), as strings. ``test``/``val``: scalar
    metrics; ``test_ci``: the run's own patient-bootstrap 95% intervals; ``external``: scalar
    metrics per external evaluation; ``robustness``: per evaluation the rows of
    ``medtl.evaluate.robustness`` (corruption, severity, metrics)."""

    run_id: str
    path: Path
    status: RunStatus
    factors: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    objective: str | None = None
    task: str | None = None
    test: dict[str, float] = field(default_factory=dict)
    test_ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    val: dict[str, float] = field(default_factory=dict)
    external: dict[str, dict[str, float]] = field(default_factory=dict)
    robustness: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    history: list[EpochPoint] = field(default_factory=list)
    params_trained: int | None = None
    params_total: int | None = None
    wall_s: float | None = None
    kwh: float | None = None
    energy_method: str | None = None
    predictions_path: Path | None = None
    _predictions: Predictions | None = field(default=None, repr=False)

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    def value(self, metric: str) -> float:
        """The test value of ``metric``, NaN when the run lacks it."""
        v = self.test.get(metric)
        return math.nan if v is None else float(v)

    def predictions(self) -> Predictions | None:
        """The run's per-sample test predictions, read once on first use (None without a file)."""
        if self._predictions is None and self.predictions_path is not None:
            from medtl.report.reader import read_predictions

            self._predictions = read_predictions(self.predictions_path)
        return self._predictions


@dataclass
class SweepInfo:
    """What the report says about where the runs came from."""

    root: Path
    name: str
    spec_text: str | None = None
    spec_name: str | None = None
    planned: int | None = None  # runs the sweep planned (pending ones may have no folder yet)
    factor_order: dict[str, list[str]] = field(default_factory=dict)  # levels as the spec lists them


@dataclass
class RunTable:
    sweep: SweepInfo
    records: list[RunRecord]

    def with_status(self, *statuses: str) -> list[RunRecord]:
        return [r for r in self.records if r.status in statuses]

    @property
    def completed(self) -> list[RunRecord]:
        return self.with_status("completed")

    def counts(self) -> dict[str, int]:
        counts = {s: 0 for s in STATUSES}
        for r in self.records:
            counts[r.status] += 1
        if self.sweep.planned is not None:
            counts["pending"] += max(0, self.sweep.planned - len(self.records))
        return counts

    def factor_names(self) -> list[str]:
        """Every factor any record has, in first-seen order."""
        names: dict[str, None] = {}
        for r in self.records:
            names.update(dict.fromkeys(r.factors))
        return list(names)

    def levels(self, factor: str, records: Iterable[RunRecord] | None = None) -> list[str]:
        """The values ``factor`` takes, in a natural order (numbers numerically)."""
        rows = self.records if records is None else records
        return sort_levels({r.factors.get(factor, "") for r in rows})

    def varying(self, records: Sequence[RunRecord] | None = None) -> list[str]:
        rows = self.completed if records is None else records
        return [f for f in self.factor_names() if len(self.levels(f, rows)) > 1]


def sort_levels(values: Iterable[str]) -> list[str]:
    """Numbers in numeric order, then the rest alphabetically."""

    def key(v: str) -> tuple[int, float, str]:
        try:
            return (0, float(v), v)
        except ValueError:
            return (1, 0.0, v)

    return sorted(values, key=key)
