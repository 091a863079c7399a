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
    # Identical rankings (or a degenerate sample): no evidence of a difference unless AUROCs differ.
    z, p = p_from_z(diff, var)
    half = 1.959963984540054 * se
    return DeLongResult(float(aucs[0]), float(aucs[1]), diff, se, z, p, (diff - half, diff + half))


def delong_contrast(y_true: Any, scores: np.ndarray, weights: Sequence[float]) -> tuple[float, float]:
    """``sum(w_k * AUROC_k)`` over K models scored on the same samples, and its DeLong variance.

    With weights ``[1/k]*k + [-1/k]*k`` this is the mean AUROC difference of k matched pairs (seeds)
    on one test set, with the correlation between all 2k models taken into account.
    """
    w = np.asarray(weights, dtype=np.float64)
    aucs, cov = delong_covariance(y_true, scores)
    if w.shape != aucs.shape:
        raise ValueError(f"{w.size} weights for {aucs.size} models")
    return float(w @ aucs), float(max(w @ cov @ w, 0.0))


def p_from_z(estimate: float, variance: float) -> tuple[float, float]:
    """(z, two-sided normal p) of ``estimate`` with ``variance`` (p 1 for no difference and no variance)."""
    se = math.sqrt(max(variance, 0.0))
    if se == 0.0:
        return (0.0, 1.0) if estimate == 0 else (math.copysign(math.inf, estimate), 0.0)
    z = estimate / se
    return z, float(2 * stats.norm.sf(abs(z)))


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


class WeightedMetric:
    """A metric ``f(targets, scores)`` that can also be computed under many patient resamples at once:
    ``weighted(targets, scores, group, times)`` with ``group`` each sample's patient (0..K-1) and
    ``times`` (B, K) how often each patient was drawn -> (B,) values. A patient drawn twice counts
    its samples twice. Metrics without a closed weighted form fall back to repeating the samples."""

    def __init__(
        self, fn: MetricFn, weighted: Callable[..., np.ndarray] | None = None, name: str = ""
    ) -> None:
        self.fn, self._weighted, self.__name__ = fn, weighted, name or getattr(fn, "__name__", "metric")

    def __call__(self, target: np.ndarray, score: np.ndarray) -> float:
        return float(self.fn(target, score))

    def weighted(
        self, target: np.ndarray, score: np.ndarray, group: np.ndarray, times: np.ndarray
    ) -> np.ndarray:
        if self._weighted is not None:
            with np.errstate(invalid="ignore", divide="ignore"):
                return self._weighted(target, score, group, times)
        out = np.full(times.shape[0], np.nan)
        for b, t in enumerate(times):
            rows = np.repeat(np.arange(len(group)), t[group].astype(np.int64))
            if rows.size:
                with np.errstate(all="ignore"):
                    out[b] = self.fn(target[rows], score[rows])
        return out


def _positive(score: np.ndarray) -> np.ndarray:
    score = np.asarray(score, dtype=np.float64)
    return score[:, -1] if score.ndim == 2 else score.reshape(-1)


def _per_group(values: np.ndarray, group: np.ndarray, k: int) -> np.ndarray:
    """Sum of ``values`` (N,) or (N, G) per group -> (K,) or (K, G)."""
    out = np.zeros((k, *values.shape[1:]))
    np.add.at(out, group, values)
    return out


def weighted_binary_auroc(
    target: np.ndarray, score: np.ndarray, group: np.ndarray, times: np.ndarray
) -> np.ndarray:
    """Binary AUROC (ties count 1/2) under each row of patient counts ``times`` (B, K).

    With ``t`` the counts, AUROC = t'Mt / ((t·pos)(t·neg)) where M[k, l] counts the pairs (positive of
    patient k, negative of patient l) ranked right, 1/2 for a tie; M is built once, so B resamples cost
    B·K² instead of B·N log N.
    """
    score = _positive(score)
    y = np.asarray(target).reshape(-1) > 0.5
    if score.size != y.size:
        raise ValueError("weighted AUROC needs binary targets and one score per sample")
    k = times.shape[1]
    levels, tie = np.unique(score, return_inverse=True)
    g = len(levels)
    pos = np.zeros((k, g))
    neg = np.zeros((k, g))
    np.add.at(pos, (group[y], tie[y]), 1.0)
    np.add.at(neg, (group[~y], tie[~y]), 1.0)
    below = np.cumsum(neg, axis=1) - 0.5 * neg  # negatives strictly below, plus half of the ties
    m = pos @ below.T
    t = np.asarray(times, dtype=np.float64)
    area = ((t @ m) * t).sum(axis=1)
    return area / ((t @ pos.sum(axis=1)) * (t @ neg.sum(axis=1)))


def weighted_binary_balanced_accuracy(
    target: np.ndarray, score: np.ndarray, group: np.ndarray, times: np.ndarray, threshold: float = 0.5
) -> np.ndarray:
    """Mean recall of the classes present (as medtl.metrics' balanced_accuracy) under each resample."""
    y = np.asarray(target).reshape(-1) > 0.5
    hit = (_positive(score) >= threshold) == y
    t = np.asarray(times, dtype=np.float64)
    k = t.shape[1]
    recalls = []
    for cls in (y, ~y):
        total = t @ _per_group(cls.astype(np.float64), group, k)
        right = t @ _per_group((cls & hit).astype(np.float64), group, k)
        recalls.append(np.where(total > 0, right / np.where(total > 0, total, 1), np.nan))
    return np.nanmean(np.vstack(recalls), axis=0)


def weighted_mean(_target: np.ndarray, score: np.ndarray, group: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Mean of per-sample values (Dice) under each resample; NaN values are left out."""
    score = np.asarray(score, dtype=np.float64).reshape(-1)
    defined = np.isfinite(score)
    t = np.asarray(times, dtype=np.float64)
    k = t.shape[1]
    sums = _per_group(np.where(defined, score, 0.0), group, k)
    counts = _per_group(defined.astype(np.float64), group, k)
    return (t @ sums) / (t @ counts)


def _as_weighted(metric_fn: MetricFn | WeightedMetric) -> WeightedMetric:
    return metric_fn if isinstance(metric_fn, WeightedMetric) else WeightedMetric(metric_fn)


def _values(s: Scored, patient_index: np.ndarray, times: np.ndarray, metric: WeightedMetric) -> np.ndarray:
    """The metric of one scored run under every resample (rows of ``times``, counts per patient)."""
    # Only this run's patients matter: compact them so the per-patient matrices stay small.
    used, local = np.unique(patient_index, return_inverse=True)
    return metric.weighted(np.asarray(s.target), np.asarray(s.score), local, times[:, used])


def _differences(
    pairs: Sequence[tuple[Scored, Scored | None]],
    index_of: list[tuple[np.ndarray, np.ndarray | None]],
    times: np.ndarray,
    metric: WeightedMetric,
) -> np.ndarray:
    """Per resample, the mean over pairs of metric(a) - metric(b) (pairs undefined there left out)."""
    rows = []
    for (a, b), (ia, ib) in zip(pairs, index_of):
        va = _values(a, ia, times, metric)
        rows.append(va if b is None else va - _values(b, ib, times, metric))  # type: ignore[arg-type]
    stacked = np.vstack(rows)
    defined = np.isfinite(stacked)
    count = defined.sum(axis=0)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, np.where(defined, stacked, 0.0).sum(axis=0) / count, np.nan)


def paired_bootstrap(
    pairs: Sequence[tuple[Scored, Scored | None]],
    metric_fn: MetricFn | WeightedMetric,
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
    metric = _as_weighted(metric_fn)
    sets = [s for pair in pairs for s in pair if s is not None]
    patients, indices = _patient_counts(sets)
    it = iter(indices)
    index_of = [(next(it), None if b is None else next(it)) for _, b in pairs]
    k = len(patients)
    estimate = float(_differences(pairs, index_of, np.ones((1, k)), metric)[0])
    rng = np.random.default_rng(seed)
    # The same draws, resample by resample, as medtl.metrics.bootstrap.bootstrap_indices.
    times = np.array([np.bincount(rng.integers(0, k, k), minlength=k) for _ in range(n)], dtype=np.float64)
    draws = _differences(pairs, index_of, times.reshape(n, k), metric)
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
