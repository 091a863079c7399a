"""Is a difference real? Paired tests of two models scored on the same test samples.

* ``delong_test``: DeLong's test for two correlated AUROCs (binary targets), computed with the fast
  algorithm of Sun & Xu (2014, IEEE Signal Processing Letters 21(11)), O(N log N) per model. It
  treats samples as independent; slices of one patient are not, so for slice-level stores prefer
  the patient-level bootstrap below (the report says which test a p-value comes from).
* ``paired_bootstrap``: resample whole patients, recompute the metric of both models on each
  resample and look at the distribution of the difference. It works for any metric (AUROC,
  balanced accuracy, mean Dice of per-sample Dice values) and over several matched pairs of runs at
  once (seeds on the same test set, or folds with their own test sets): the statistic is the mean
  over pairs of ``metric(a) - metric(b)``, with one draw of patients shared by all pairs.
* ``holm``: Holm's step-down correction of a family of p-values.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from medtl.metrics.bootstrap import FEW_GROUPS
from medtl.metrics.classification import to_numpy

MetricFn = Callable[[np.ndarray, np.ndarray], float]


# -- DeLong ----------------------------------------------------------------------------------------


def midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x`` with ties given the mean of the ranks they span (Sun & Xu, Alg. 1)."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    n = len(x)
    ranks_sorted = np.empty(n, dtype=np.float64)
    i = 0
    while i < n:
        j = i
        while j < n and sorted_x[j] == sorted_x[i]:
            j += 1
        ranks_sorted[i:j] = 0.5 * (i + j - 1) + 1
        i = j
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = ranks_sorted
    return ranks


def delong_components(y_true: Any, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUROCs (K,) of K score vectors (K, N) and their DeLong structural components.

    Returns ``(aucs, v10, v01)`` with ``v10`` (K, positives) and ``v01`` (K, negatives): the
    placement values of each positive among the negatives and of each negative among the positives.
    """
    y = to_numpy(y_true).reshape(-1).astype(np.int64)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    if scores.shape[1] != y.shape[0]:
        raise ValueError(f"{y.shape[0]} targets for {scores.shape[1]} scores")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("DeLong's test needs binary targets (0 or 1)")
    positives, negatives = scores[:, y == 1], scores[:, y == 0]
    m, n = positives.shape[1], negatives.shape[1]
    if m == 0 or n == 0:
        raise ValueError("DeLong's test needs positive and negative samples")
    k = scores.shape[0]
    tx, ty, tz = np.empty((k, m)), np.empty((k, n)), np.empty((k, m + n))
    for r in range(k):
        tx[r], ty[r] = midranks(positives[r]), midranks(negatives[r])
        tz[r] = midranks(np.concatenate([positives[r], negatives[r]]))
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1.0) / (2.0 * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return aucs, v10, v01


def delong_covariance(y_true: Any, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs (K,) and their DeLong covariance matrix (K, K)."""
    aucs, v10, v01 = delong_components(y_true, scores)
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((len(aucs), len(aucs)))
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((len(aucs), len(aucs)))
    return aucs, s10 / m + s01 / n


@dataclass(frozen=True)
class DeLongResult:
    auroc_a: float
    auroc_b: float
    difference: float  # auroc_a - auroc_b
    se: float
    z: float
    p_value: float  # two-sided
    ci95: tuple[float, float]  # of the difference, normal approximation


def delong_test(y_true: Any, score_a: Any, score_b: Any) -> DeLongResult:
    """DeLong's two-sided test that two models scored on the same samples have equal AUROC."""
    a, b = to_numpy(score_a).astype(np.float64).reshape(-1), to_numpy(score_b).astype(np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"the two models scored different numbers of samples ({a.size} and {b.size})")
    aucs, cov = delong_covariance(y_true, np.vstack([a, b]))
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = math.sqrt(max(var, 0.0))
    if se == 0.0:
        # Identical rankings (or a degenerate sample): no evidence of a difference unless AUROCs differ.
        z = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        p = 1.0 if diff == 0 else 0.0
    else:
        z = diff / se
        p = float(2 * stats.norm.sf(abs(z)))
    half = 1.959963984540054 * se
    return DeLongResult(float(aucs[0]), float(aucs[1]), diff, se, z, p, (diff - half, diff + half))


# -- patient-level bootstrap -------------------------------------------------------------------------


@dataclass(frozen=True)
class Scored:
    """One model's predictions on a test set: per sample its patient, target and score.

    ``score`` is whatever ``metric_fn`` reads: probabilities for AUROC, or per-sample Dice values
    (with ``target`` unused) for segmentation.
    """

    patient: np.ndarray
    target: np.ndarray
    score: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.patient)
        if len(self.target) != n or len(self.score) != n:
            raise ValueError(
                f"{n} patient ids, {len(self.target)} targets and {len(self.score)} scores: "
                "one each per sample"
            )


@dataclass(frozen=True)
class BootstrapResult:
    """``estimate``: the statistic on the data as observed; ``ci95``: percentile interval;
    ``p_value``: two-sided p of ``estimate == 0`` (paired tests only); ``resamples``: how many
    resamples the statistic was defined in; ``patients``: distinct patients drawn from."""

    estimate: float
    ci95: tuple[float, float]
    p_value: float
    resamples: int
    patients: int

    @property
    def few_patients(self) -> bool:
        return self.patients < FEW_GROUPS


def _patient_counts(sets: Sequence[Scored]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Distinct patients over all sets and, per set, each sample's index into them."""
    patients, inverse = np.unique(
        np.concatenate([np.asarray(s.patient).astype(str) for s in sets]), return_inverse=True
    )
    bounds = np.cumsum([0] + [len(s.patient) for s in sets])
    return patients, [inverse[bounds[i] : bounds[i + 1]] for i in range(len(sets))]


def _statistic(
    pairs: Sequence[tuple[Scored, Scored | None]],
    index_of: list[tuple[np.ndarray, np.ndarray | None]],
    times: np.ndarray | None,
    metric_fn: MetricFn,
) -> float:
    """Mean over pairs of metric(a) - metric(b) (or metric(a) alone) with patients weighted by ``times``."""
    values = []
    for (a, b), (ia, ib) in zip(pairs, index_of):
        va = _weighted_metric(a, ia, times, metric_fn)
        vb = 0.0 if b is None else _weighted_metric(b, ib, times, metric_fn)  # type: ignore[arg-type]
        if math.isfinite(va) and math.isfinite(vb):
            values.append(va - vb)
    return float(np.mean(values)) if values else math.nan


def _weighted_metric(
    s: Scored, patient_index: np.ndarray, times: np.ndarray | None, metric_fn: MetricFn
) -> float:
    if times is None:
        return float(metric_fn(np.asarray(s.target), np.asarray(s.score)))
    rows = np.repeat(np.arange(len(patient_index)), times[patient_index])
    if rows.size == 0:
        return math.nan
    with np.errstate(all="ignore"):
        return float(metric_fn(np.asarray(s.target)[rows], np.asarray(s.score)[rows]))


def paired_bootstrap(
    pairs: Sequence[tuple[Scored, Scored | None]],
    metric_fn: MetricFn,
    *,
    n: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> BootstrapResult:
    """Patient-level bootstrap of the mean over ``pairs`` of ``metric(a) - metric(b)``.

    Each pair holds two models scored on the same samples (``b`` None: the metric of ``a`` alone,
    which gives a pooled interval of one model over several runs). Every resample draws patients
    with replacement from all patients of all pairs; each run keeps its samples of the drawn
    patients, as often as they were drawn. Resamples where a run's metric is undefined leave that
    run out of that resample's mean. The p-value is two-sided: twice the smaller share of
    resampled differences at or beyond zero on either side, ``(count + 1) / (resamples + 1)``.
    """
    if not pairs:
        raise ValueError("paired_bootstrap needs at least one pair of scored runs")
    sets = [s for pair in pairs for s in pair if s is not None]
    patients, indices = _patient_counts(sets)
    it = iter(indices)
    index_of = [(next(it), None if b is None else next(it)) for _, b in pairs]
    estimate = _statistic(pairs, index_of, None, metric_fn)
    rng = np.random.default_rng(seed)
    k = len(patients)
    draws = np.array(
        [
            _statistic(pairs, index_of, np.bincount(rng.integers(0, k, k), minlength=k), metric_fn)
            for _ in range(n)
        ]
    )
    finite = draws[np.isfinite(draws)]
    if finite.size == 0:
        return BootstrapResult(estimate, (math.nan, math.nan), math.nan, 0, k)
    low, high = np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    paired = any(b is not None for _, b in pairs)
    p = math.nan
    if paired:
        below, above = int((finite <= 0).sum()), int((finite >= 0).sum())
        p = min(1.0, 2 * (min(below, above) + 1) / (finite.size + 1))
    return BootstrapResult(estimate, (float(low), float(high)), p, int(finite.size), k)


# -- multiple comparisons ---------------------------------------------------------------------------


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values (same order); NaN entries stay NaN and do not count in the family."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    defined = np.flatnonzero(np.isfinite(p))
    m = defined.size
    if m == 0:
        return out.tolist()
    order = defined[np.argsort(p[defined], kind="mergesort")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * p[i])
        out[i] = min(1.0, running)
    return out.tolist()
