"""Bootstrap confidence intervals: seeded, percentile method, sample or patient resampling."""

from __future__ import annotations

import logging
import math
from functools import partial

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medtl.metrics import auroc, bootstrap_ci, bootstrap_indices, bootstrap_metrics


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    score = rng.normal(size=n) + y
    return y, score


def test_percentile_interval_matches_manual_resampling():
    y, score = _data()
    low, high = bootstrap_ci(y, score, roc_auc_score, n=200, seed=3)
    rng = np.random.default_rng(3)
    values = [
        roc_auc_score(y[idx], score[idx]) for idx in (rng.integers(0, len(y), len(y)) for _ in range(200))
    ]
    assert (low, high) == pytest.approx(tuple(np.percentile(values, [2.5, 97.5])))
    assert low < roc_auc_score(y, score) < high


def test_seeded_and_alpha_widens():
    y, score = _data()
    fn = partial(auroc, task="binary")
    assert bootstrap_ci(y, score, fn, n=100, seed=1) == bootstrap_ci(y, score, fn, n=100, seed=1)
    assert bootstrap_ci(y, score, fn, n=100, seed=1) != bootstrap_ci(y, score, fn, n=100, seed=2)
    low95, high95 = bootstrap_ci(y, score, fn, n=100, seed=1, alpha=0.05)
    low50, high50 = bootstrap_ci(y, score, fn, n=100, seed=1, alpha=0.5)
    assert low95 <= low50 < high50 <= high95


def test_grouped_resampling_keeps_patients_whole():
    groups = np.repeat(np.arange(10), [1, 2, 3, 4, 5, 1, 2, 3, 4, 5])
    for idx in bootstrap_indices(len(groups), 20, seed=0, groups=groups):
        chosen = groups[idx]
        for g in np.unique(chosen):
            size = (groups == g).sum()
            count = (chosen == g).sum()
            assert count % size == 0  # a patient comes with all its samples, possibly several times
        assert len(np.unique(chosen)) <= 10


def test_grouped_interval_is_wider_for_correlated_samples():
    # 20 patients with 10 identical slices each: per-sample resampling overstates the evidence.
    rng = np.random.default_rng(0)
    y_p = rng.integers(0, 2, 20)
    s_p = rng.normal(size=20) + y_p
    y, score, groups = np.repeat(y_p, 10), np.repeat(s_p, 10), np.repeat(np.arange(20), 10)
    fn = partial(auroc, task="binary")
    low_s, high_s = bootstrap_ci(y, score, fn, n=300, seed=0)
    low_g, high_g = bootstrap_ci(y, score, fn, n=300, seed=0, groups=groups)
    assert high_g - low_g > 1.5 * (high_s - low_s)


def test_undefined_resamples_are_left_out_and_all_undefined_gives_nan():
    y = np.array([0] * 29 + [1])  # one positive: many resamples hold no positive at all
    score = np.linspace(0, 1, 30)
    low, high = bootstrap_ci(y, score, partial(auroc, task="binary"), n=100, seed=0)
    assert low == pytest.approx(1.0) and high == pytest.approx(1.0)
    low, high = bootstrap_ci(np.zeros(5), np.ones(5), partial(auroc, task="binary"), n=10)
    assert math.isnan(low) and math.isnan(high)


def test_bootstrap_metrics_gives_every_scalar():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    score = rng.dirichlet(np.ones(3), 90)
    score[np.arange(90), y] += 0.5
    score /= score.sum(1, keepdims=True)
    out = bootstrap_metrics(y, score, "multiclass", n=50, seed=0)
    assert set(out) == {"accuracy", "balanced_accuracy", "auroc", "precision", "recall", "f1"}
    for low, high in out.values():
        assert 0 <= low <= high <= 1
    assert out["auroc"] == pytest.approx(bootstrap_ci(y, score, partial(auroc, task="multiclass"), n=50))


def test_few_patients_give_a_warning(caplog):
    y = np.array([0, 1] * 10)
    scores = np.linspace(0, 1, 20)
    with caplog.at_level(logging.WARNING, logger="medtl"):
        bootstrap_metrics(y, scores, "binary", n=20, groups=np.repeat(np.arange(4), 5))
    assert "bootstrap over 4 patients" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="medtl"):
        bootstrap_metrics(y, scores, "binary", n=20, groups=np.arange(20))
    assert "patients" not in caplog.text
