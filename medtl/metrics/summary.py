"""Summaries of one metric over several runs (seeds, folds): mean ± std and a 95% interval.

The interval over runs is Student's t interval of the mean (``mean ± t(0.975, n-1) · std / √n``):
it says how much the mean over seeds/folds would move with other seeds, not how the test patients
vary (for that, ``medtl.metrics.comparison.paired_bootstrap`` pools patients over runs).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class OverRuns:
    """``n`` finite values, their mean, sample standard deviation (ddof 1) and t interval of the
    mean; std and interval are NaN for fewer than two runs."""

    n: int
    mean: float
    std: float
    ci95: tuple[float, float]

    def format(self, digits: int = 3) -> str:
        """``0.812 ± 0.014`` (``0.812`` for one run, ``–`` for none)."""
        if self.n == 0:
            return "–"
        if self.n == 1 or not math.isfinite(self.std):
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.std:.{digits}f}"


def over_runs(values: Iterable[float | None], confidence: float = 0.95) -> OverRuns:
    """Mean, std and t interval of the finite values (None and NaN are left out)."""
    finite = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    n = int(finite.size)
    if n == 0:
        return OverRuns(0, math.nan, math.nan, (math.nan, math.nan))
    mean = float(finite.mean())
    if n == 1:
        return OverRuns(1, mean, math.nan, (math.nan, math.nan))
    std = float(finite.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return OverRuns(n, mean, std, (mean - half, mean + half))
