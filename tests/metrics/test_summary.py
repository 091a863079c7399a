import math

import numpy as np
import pytest

from medtl.metrics.summary import over_runs


def test_over_runs_mean_std_and_t_interval():
    s = over_runs([0.80, 0.84, 0.82])
    assert s.n == 3 and s.mean == pytest.approx(0.82) and s.std == pytest.approx(0.02)
    # t(0.975, 2) = 4.302653; half width = 4.302653 * 0.02 / sqrt(3)
    half = 4.302652729911275 * 0.02 / math.sqrt(3)
    assert s.ci95 == pytest.approx((0.82 - half, 0.82 + half))
    assert s.format() == "0.820 ± 0.020"


def test_over_runs_leaves_out_missing_values_and_handles_one_or_none():
    assert over_runs([0.7, None, math.nan]).n == 1
    one = over_runs([0.7])
    assert one.mean == 0.7 and math.isnan(one.std) and math.isnan(one.ci95[0]) and one.format() == "0.700"
    none = over_runs([])
    assert none.n == 0 and math.isnan(none.mean) and none.format() == "–"


def test_over_runs_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(400):
        low, high = over_runs(rng.normal(1.0, 0.1, 5)).ci95
        hits += low <= 1.0 <= high
    assert 0.92 < hits / 400 < 0.98
