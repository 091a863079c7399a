"""Bootstrap confidence intervals (percentile method), optionally resampling whole patients.

Resampling patients rather than images keeps the slices of one patient together, so correlated
samples do not make an interval look narrower than the data supports. Resamples in which a metric
is undefined (NaN, e.g. AUROC of a resample holding one class only) are left out of its interval.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from medtl.metrics.classification import SCALAR_METRICS, MetricTask, classification_metrics, to_numpy

log = logging.getLogger("medtl")

# Below this many patients a patient-level bootstrap interval says little (a few distinct resamples).
FEW_GROUPS = 10


def warn_if_few_groups(groups: Sequence[Any] | np.ndarray | None) -> None:
    """Warn when a patient-level bootstrap has fewer than ``FEW_GROUPS`` patients to draw from."""
    if groups is None:
        return
    count = len(np.unique(np.asarray(groups)))
    if count < FEW_GROUPS:
        log.warning(
            "bootstrap over %d patients: fewer than %d, so the 95%% intervals are unreliable",
            count,
            FEW_GROUPS,
        )


def bootstrap_indices(
    num_samples: int, n: int, seed: int = 0, groups: Sequence[Any] | np.ndarray | None = None
):
    """Yield ``n`` arrays of sample indices drawn with replacement (whole groups when given)."""
    rng = np.random.default_rng(seed)
    if groups is None:
        for _ in range(n):
            yield rng.integers(0, num_samples, num_samples)
        return
    groups = np.asarray(groups)
    if groups.shape[0] != num_samples:
        raise ValueError(f"{groups.shape[0]} group ids for {num_samples} samples")
    _, group_of = np.unique(groups, return_inverse=True)
    num_groups = int(group_of.max()) + 1 if num_samples else 0
    all_samples = np.arange(num_samples)
    for _ in range(n):
        # Each sample appears as often as its group was drawn.
        times = np.bincount(rng.integers(0, num_groups, num_groups), minlength=num_groups)
        yield np.repeat(all_samples, times[group_of])


def percentile_interval(values: np.ndarray, alpha: float, name: str) -> tuple[float, float]:
    """(low, high) percentiles of the finite resample ``values``; undefined ones are counted in a warning."""
    finite = values[np.isfinite(values)]
    if finite.size < values.size:
        log.warning(
            "bootstrap %s: undefined in %d of %d resamples; they are left out",
            name,
            values.size - finite.size,
            values.size,
        )
    if finite.size == 0:
        return math.nan, math.nan
    low, high = np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def bootstrap_ci(
    y_true: Any,
    y_score: Any,
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    groups: Sequence[Any] | np.ndarray | None = None,
) -> tuple[float, float]:
    """(low, high) of the 1 - alpha percentile interval of ``metric_fn(y_true, y_score)``.

    ``groups`` (e.g. patient ids, one per sample) resamples whole groups instead of samples.
    """
    y_true, y_score = to_numpy(y_true), to_numpy(y_score)
    warn_if_few_groups(groups)
    values = np.array(
        [metric_fn(y_true[idx], y_score[idx]) for idx in bootstrap_indices(len(y_true), n, seed, groups)],
        dtype=np.float64,
    )
    return percentile_interval(values, alpha, getattr(metric_fn, "__name__", "metric"))


def bootstrap_metrics(
    y_true: Any,
    y_score: Any,
    task: MetricTask,
    *,
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    groups: Sequence[Any] | np.ndarray | None = None,
    threshold: float = 0.5,
    metrics: Sequence[str] = SCALAR_METRICS,
) -> dict[str, tuple[float, float]]:
    """Intervals of several scalar metrics of ``classification_metrics`` from the same resamples."""
    y_true, y_score = to_numpy(y_true), to_numpy(y_score)
    warn_if_few_groups(groups)
    values: dict[str, list[float]] = {name: [] for name in metrics}
    for idx in bootstrap_indices(len(y_true), n, seed, groups):
        result = classification_metrics(y_true[idx], y_score[idx], task, threshold=threshold)
        for name in metrics:
            values[name].append(result[name])
    return {
        name: percentile_interval(np.array(v, dtype=np.float64), alpha, name) for name, v in values.items()
    }
