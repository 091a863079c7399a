import math

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from medtl.metrics.classification import binary_auroc
from medtl.metrics.comparison import (
    Scored,
    delong_components,
    delong_covariance,
    delong_test,
    holm,
    midranks,
    paired_bootstrap,
)


def _psi(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """DeLong's kernel for every (positive, negative) pair: 1 if x > y, 1/2 if tied."""
    return (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])


def _slow_delong(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """DeLong, DeLong & Clarke-Pearson (1988) written out with O(m n) placement values."""
    comps = []
    for s in (a, b):
        kernel = _psi(s[y == 1], s[y == 0])
        comps.append((kernel.mean(), kernel.mean(axis=1), kernel.mean(axis=0)))
    m, n = (y == 1).sum(), (y == 0).sum()
    v10 = np.vstack([c[1] for c in comps])
    v01 = np.vstack([c[2] for c in comps])
    cov = np.cov(v10) / m + np.cov(v01) / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    z = (comps[0][0] - comps[1][0]) / math.sqrt(var)
    return comps[0][0], comps[1][0], 2 * stats.norm.sf(abs(z))


def _correlated_scores(n: int, seed: int, ties: bool = False):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    shared = rng.standard_normal(n)
    a = y * 1.0 + shared + 0.7 * rng.standard_normal(n)
    b = y * 0.6 + shared + 0.7 * rng.standard_normal(n)
    if ties:
        a, b = np.round(a), np.round(b * 2) / 2
    return y, a, b


def test_midranks_average_tied_ranks():
    assert midranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])).tolist() == [4.0, 1.0, 4.0, 2.0, 4.0]
    assert midranks(np.array([0.5, 0.5])).tolist() == [1.5, 1.5]


@pytest.mark.parametrize(
    ("n", "seed", "ties"), [(60, 0, False), (200, 1, False), (150, 2, True), (31, 3, True)]
)
def test_fast_delong_matches_the_definition(n, seed, ties):
    y, a, b = _correlated_scores(n, seed, ties)
    result = delong_test(y, a, b)
    auc_a, auc_b, p = _slow_delong(y, a, b)
    assert result.auroc_a == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert result.auroc_b == pytest.approx(roc_auc_score(y, b), abs=1e-12)
    assert result.auroc_a == pytest.approx(auc_a, abs=1e-12)
    assert result.p_value == pytest.approx(p, rel=1e-9)
    assert result.difference == pytest.approx(auc_a - auc_b, abs=1e-12)
    low, high = result.ci95
    assert low < result.difference < high


def test_delong_hand_computed_example():
    # positives score 0.9, 0.6; negatives 0.7, 0.2. Model b ranks everything right.
    y = np.array([1, 1, 0, 0])
    a = np.array([0.9, 0.6, 0.7, 0.2])
    b = np.array([0.9, 0.8, 0.7, 0.2])
    aucs, v10, v01 = delong_components(y, np.vstack([a, b]))
    # a: positive 0.9 beats both negatives (1), 0.6 beats one (1/2); negative 0.7 loses to one positive.
    assert aucs.tolist() == [0.75, 1.0]
    assert v10[0].tolist() == [1.0, 0.5]
    assert v01[0].tolist() == [0.5, 1.0]
    _, cov = delong_covariance(y, np.vstack([a, b]))
    # var(a) = var(V10)/m + var(V01)/n = 0.125/2 + 0.125/2; b's components are constant.
    assert cov[0, 0] == pytest.approx(0.125)
    assert cov[1, 1] == 0.0
    result = delong_test(y, a, b)
    assert result.se == pytest.approx(math.sqrt(0.125))
    assert result.p_value == pytest.approx(2 * stats.norm.sf(0.25 / math.sqrt(0.125)))


def test_delong_same_scores_is_no_evidence():
    y, a, _ = _correlated_scores(50, 4)
    result = delong_test(y, a, a)
    assert result.difference == 0 and result.p_value == 1.0


def test_delong_detects_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 400)
    good = y + 0.5 * rng.standard_normal(400)
    bad = y + 2.0 * rng.standard_normal(400)
    assert delong_test(y, good, bad).p_value < 1e-6
    # Two equally good, independent models: p-values are uniform under the null.
    ps = []
    for seed in range(200):
        r = np.random.default_rng(seed)
        yy = r.integers(0, 2, 80)
        ps.append(delong_test(yy, yy + r.standard_normal(80), yy + r.standard_normal(80)).p_value)
    assert 0.02 < np.mean(np.array(ps) < 0.05) < 0.10


@pytest.mark.parametrize(
    ("y", "message"), [([0, 0, 0], "positive and negative"), ([0, 1, 2], "binary targets")]
)
def test_delong_rejects_targets_it_cannot_test(y, message):
    with pytest.raises(ValueError, match=message):
        delong_test(np.array(y), np.arange(3.0), np.arange(3.0))


def _patients(n_patients: int, per_patient: int) -> np.ndarray:
    return np.repeat([f"p{i:02d}" for i in range(n_patients)], per_patient)


def test_pooled_bootstrap_of_one_run_equals_the_patient_bootstrap_of_its_metric():
    from medtl.metrics.bootstrap import bootstrap_indices

    rng = np.random.default_rng(0)
    patient = _patients(20, 3)
    y = rng.integers(0, 2, 60)
    s = y + rng.standard_normal(60)
    result = paired_bootstrap([(Scored(patient, y, s), None)], binary_auroc, n=300, seed=7)
    assert result.estimate == pytest.approx(roc_auc_score(y, s))
    assert math.isnan(result.p_value) and result.patients == 20
    # The same draws as bootstrap_indices with groups: the same resampled metric values.
    expected = [binary_auroc(y[i], s[i]) for i in bootstrap_indices(60, 300, seed=7, groups=patient)]
    assert result.ci95 == pytest.approx(tuple(np.percentile(expected, [2.5, 97.5])))


def test_paired_bootstrap_separates_a_better_model_and_gives_large_p_for_equal_ones():
    rng = np.random.default_rng(1)
    patient = _patients(40, 4)
    y = np.repeat(rng.integers(0, 2, 40), 4)
    shared = rng.standard_normal(160)
    strong = Scored(patient, y, y * 2.0 + shared)
    weak = Scored(patient, y, y * 0.5 + shared)
    better = paired_bootstrap([(strong, weak)], binary_auroc, n=500, seed=0)
    assert better.estimate > 0.1 and better.ci95[0] > 0
    assert better.p_value == pytest.approx(2 / 501)  # no resample reached zero
    same = paired_bootstrap([(strong, strong)], binary_auroc, n=200, seed=0)
    assert same.estimate == 0 and same.p_value == 1.0


def test_paired_bootstrap_averages_matched_pairs_over_seeds():
    rng = np.random.default_rng(2)
    patient = _patients(15, 2)
    y = rng.integers(0, 2, 30)
    runs = [Scored(patient, y, y + rng.standard_normal(30)) for _ in range(4)]
    pairs = [(runs[0], runs[1]), (runs[2], runs[3])]
    result = paired_bootstrap(pairs, binary_auroc, n=50, seed=0)
    diffs = [roc_auc_score(y, a.score) - roc_auc_score(y, b.score) for a, b in pairs]
    assert result.estimate == pytest.approx(np.mean(diffs))


def test_paired_bootstrap_of_dice_is_the_mean_per_sample_difference():
    patient = _patients(12, 2)
    dice_a = np.linspace(0.6, 0.9, 24)
    dice_b = dice_a - 0.05
    mean = lambda _t, s: float(np.mean(s))  # noqa: E731
    a, b = Scored(patient, np.zeros(24), dice_a), Scored(patient, np.zeros(24), dice_b)
    result = paired_bootstrap([(a, b)], mean, n=100, seed=0)
    assert result.estimate == pytest.approx(0.05)
    assert result.ci95 == pytest.approx((0.05, 0.05))  # every resample differs by exactly 0.05
    assert result.p_value < 0.05 and result.few_patients is False


def test_scored_needs_one_patient_target_and_score_per_sample():
    with pytest.raises(ValueError, match="one each per sample"):
        Scored(np.array(["a", "b"]), np.array([0, 1]), np.array([0.5]))


def test_holm_matches_hand_computed_values():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []
    adjusted = holm([0.01, math.nan, 0.02])
    assert (
        adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)
    )


def test_delong_contrast_of_one_pair_is_the_pairwise_test_and_of_seeds_averages_them():
    from medtl.metrics.comparison import delong_contrast, p_from_z

    y, a, b = _correlated_scores(120, 6)
    est, var = delong_contrast(y, np.vstack([a, b]), [1, -1])
    pair = delong_test(y, a, b)
    assert est == pytest.approx(pair.difference) and math.sqrt(var) == pytest.approx(pair.se)
    assert p_from_z(est, var)[1] == pytest.approx(pair.p_value)
    # Two seeds per model: the estimate is the mean difference; identical seeds give the pair's variance.
    est2, var2 = delong_contrast(y, np.vstack([a, a, b, b]), [0.5, 0.5, -0.5, -0.5])
    assert est2 == pytest.approx(pair.difference) and var2 == pytest.approx(var)
    with pytest.raises(ValueError, match="3 weights for 2 models"):
        delong_contrast(y, np.vstack([a, b]), [1, -1, 0])


@pytest.mark.parametrize("ties", [False, True])
def test_weighted_metrics_equal_the_metric_of_repeated_samples(ties):
    from medtl.metrics.classification import balanced_accuracy
    from medtl.metrics.comparison import (
        weighted_binary_auroc,
        weighted_binary_balanced_accuracy,
        weighted_mean,
    )

    rng = np.random.default_rng(8)
    y = rng.integers(0, 2, 40)
    s = rng.uniform(0, 1, 40)
    if ties:
        s = np.round(s, 1)
    group = np.repeat(np.arange(10), 4)  # 10 patients of 4 samples
    times = rng.integers(0, 3, (6, 10)).astype(float)
    for t, auc, bacc, mean in zip(
        times,
        weighted_binary_auroc(y, s, group, times),
        weighted_binary_balanced_accuracy(y, s, group, times),
        weighted_mean(y, s, group, times),
    ):
        rows = np.repeat(np.arange(40), t[group].astype(int))
        assert auc == pytest.approx(roc_auc_score(y[rows], s[rows]))
        assert bacc == pytest.approx(balanced_accuracy(y[rows], s[rows], "binary"))
        assert mean == pytest.approx(s[rows].mean())
    # (N, 2) scores: the positive column decides
    both = np.column_stack([1 - s, s])
    assert weighted_binary_auroc(y, both, group, times[:1])[0] == pytest.approx(
        weighted_binary_auroc(y, s, group, times[:1])[0]
    )
