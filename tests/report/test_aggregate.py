import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from medtl.errors import ConfigError, UnknownChoiceError
from medtl.metrics.comparison import delong_test
from medtl.report import aggregate, parse_baseline, read_run_table
from medtl.report.aggregate import matched_pairs
from tests.report.synthetic import write_run, write_sweep


def _row(agg, **key):
    return next(r for r in agg.rows if all(r.key[k] == v for k, v in key.items()))


def test_groups_hold_mean_std_over_seeds_and_cost(sweep):
    table = read_run_table(sweep)
    agg = aggregate(table, by=["strategy"], metric="auroc", bootstrap=200)
    # strategies ordered from the fewest parameters trained to the most
    assert [r.key["strategy"] for r in agg.rows] == ["linear", "l1sb", "progressive", "full"]
    full = _row(agg, strategy="full")
    values = [r.test["auroc"] for r in table.completed if r.factors["strategy"] == "full"]
    assert full.metric.n == 2 and full.metric.mean == pytest.approx(np.mean(values))
    assert full.metric.std == pytest.approx(np.std(values, ddof=1))
    assert full.total == 3 and full.failed == 1 and full.params_trained == 11_177_538
    assert _row(agg, strategy="linear").unfinished == 1
    assert full.ci_source == "patients" and full.ci95[0] <= full.metric.mean <= full.ci95[1]


def test_auroc_recomputed_from_predictions_matches_metrics_json(sweep):
    table = read_run_table(sweep)
    for run in table.completed:
        p = run.predictions()
        assert roc_auc_score(p.target, p.score) == pytest.approx(run.test["auroc"])


def test_comparisons_against_the_baseline_with_holm(sweep):
    table = read_run_table(sweep)
    agg = aggregate(table, by=["strategy"], metric="auroc", baseline=("strategy", "full"), bootstrap=300)
    full = _row(agg, strategy="full")
    assert full.is_baseline and full.comparison is None
    linear = _row(agg, strategy="linear").comparison
    assert linear.pairs == 2 and linear.difference < -0.1 and linear.ci95[1] < 0
    assert linear.p_value < 0.01 and "paired bootstrap over 24 patients" in linear.test
    ps = [r.comparison.p_value for r in agg.rows if r.comparison]
    holm = sorted(r.comparison.p_holm for r in agg.rows if r.comparison)
    assert holm[0] == pytest.approx(min(1.0, 3 * min(ps)))


def test_delong_on_matched_seeds(tmp_path):
    root = write_sweep(tmp_path / "s", strategies=("linear", "full"), seeds=(0,))
    table = read_run_table(root)
    agg = aggregate(table, by=["strategy"], metric="auroc", baseline=("strategy", "full"), test="delong")
    c = _row(agg, strategy="linear").comparison
    a = next(r for r in table.completed if r.factors["strategy"] == "linear").predictions()
    b = next(r for r in table.completed if r.factors["strategy"] == "full").predictions()
    expected = delong_test(a.target, a.score, b.score)
    assert c.test == "DeLong (1 pair)"
    assert c.difference == pytest.approx(expected.difference) and c.p_value == pytest.approx(expected.p_value)


def test_runs_without_predictions_get_intervals_over_runs_and_no_test(tmp_path):
    root = write_sweep(tmp_path / "s", strategies=("linear", "full"), predictions=False)
    agg = aggregate(read_run_table(root), by=["strategy"], metric="auroc", baseline=("strategy", "full"))
    linear = _row(agg, strategy="linear")
    assert linear.ci_source == "runs" and math.isnan(linear.comparison.p_value)
    assert "predictions_test.npz" in linear.comparison.note
    assert linear.comparison.difference < 0  # the difference of means is still known


def test_a_single_run_keeps_its_own_interval(tmp_path):
    root = write_sweep(tmp_path / "s", strategies=("linear",), seeds=(0,), predictions=False)
    table = read_run_table(root)
    row = aggregate(table, by=["strategy"], metric="auroc").rows[0]
    assert row.ci_source == "run" and row.ci95 == tuple(table.completed[0].test_ci["auroc"])


def test_pairs_match_on_store_fold_and_seed(tmp_path):
    root = tmp_path / "s"
    for strategy in ("linear", "full"):
        for seed in (0, 1, 2):
            write_run(root, strategy=strategy, seed=seed, predictions=False)
    table = read_run_table(root)
    lin = [r for r in table.completed if r.factors["strategy"] == "linear"]
    full = [r for r in table.completed if r.factors["strategy"] == "full" and r.factors["seed"] != "2"]
    pairs = matched_pairs(lin, full)
    assert [(a.factors["seed"], b.factors["seed"]) for a, b in pairs] == [("0", "0"), ("1", "1")]


def test_two_factors_and_pooled_factors_are_named(tmp_path):
    root = tmp_path / "s"
    for init in ("random", "imagenet"):
        for strategy in ("linear", "full"):
            write_run(root, strategy=strategy, seed=0, init=init)
    table = read_run_table(root)
    agg = aggregate(table, by=["init", "strategy"], metric="auroc", baseline=("strategy", "full"))
    assert len(agg.rows) == 4
    c = _row(agg, init="random", strategy="linear").comparison
    assert c.baseline == {"init": "random", "strategy": "full"}
    assert aggregate(table, by=["strategy"], metric="auroc").pooled_over == ["init"]


def test_bad_factor_baseline_and_test_names(sweep):
    table = read_run_table(sweep)
    with pytest.raises(UnknownChoiceError, match="did you mean 'strategy'"):
        aggregate(table, by=["stratgy"], metric="auroc")
    with pytest.raises(ConfigError, match="is not one of --by"):
        aggregate(table, by=["strategy"], metric="auroc", baseline=("init", "random"))
    with pytest.raises(UnknownChoiceError, match="baseline level"):
        aggregate(table, by=["strategy"], metric="auroc", baseline=("strategy", "ful"))
    with pytest.raises(UnknownChoiceError, match="unknown test"):
        aggregate(table, by=["strategy"], metric="auroc", test="t-test")
    with pytest.raises(ConfigError, match="FACTOR=LEVEL"):
        parse_baseline("strategy")
    assert parse_baseline("strategy = full") == ("strategy", "full")


def test_a_factor_that_does_not_vary_is_a_note_not_an_error(sweep):
    agg = aggregate(read_run_table(sweep), by=["init", "strategy"], metric="auroc")
    assert agg.notes == ["init does not vary (every run has 'random')"]
    assert len(agg.rows) == 4


def test_segmentation_runs_compare_dice_with_a_paired_bootstrap(tmp_path):
    import json

    root = tmp_path / "seg"
    rng = np.random.default_rng(0)
    patient = np.repeat([f"p{i}" for i in range(15)], 3)
    base_dice = rng.uniform(0.6, 0.8, 45)
    for strategy, shift in (("frozen_encoder", -0.05), ("full", 0.0)):
        for seed in (0, 1):
            run = write_run(root, strategy=strategy, seed=seed, predictions=False)
            dice = np.clip(base_dice + shift + 0.01 * rng.standard_normal(45), 0, 1)
            metrics = json.loads((run / "metrics.json").read_text())
            metrics["task"], metrics["test"] = "segmentation", {"dice": float(dice.mean())}
            (run / "metrics.json").write_text(json.dumps(metrics))
            np.savez(run / "predictions_test.npz", index=np.arange(45), patient=patient, score=dice)
    table = read_run_table(root)
    assert {r.objective for r in table.completed} == {"segmentation"}
    agg = aggregate(table, by=["strategy"], metric="dice", baseline=("strategy", "full"), bootstrap=300)
    frozen = _row(agg, strategy="frozen_encoder")
    assert frozen.ci_source == "patients"
    assert frozen.comparison.difference == pytest.approx(-0.05, abs=0.01)
    assert frozen.comparison.p_value < 0.01 and "paired bootstrap over 15 patients" in frozen.comparison.test
