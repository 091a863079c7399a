"""Groups of runs (by the chosen factors, over seeds and folds) and their tests against a baseline.

Per group: mean ± std of the metric over runs, a 95% interval (bootstrap over the test patients
pooled across the group's runs when every run saved its test predictions; otherwise Student's t
over runs; for a single run its own patient-bootstrap interval), and the cost columns (parameters
trained, wall time, kWh). Per group against the baseline group (the same key with the baseline
factor set to the baseline level): the mean paired difference over matched runs (same store, fold
and seed), its p-value and the Holm-corrected p-value over the whole table.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from medtl.errors import ConfigError, InputError, UnknownChoiceError
from medtl.metrics.classification import accuracy, auroc, balanced_accuracy, classification_metrics
from medtl.metrics.comparison import (
    BootstrapResult,
    Scored,
    WeightedMetric,
    delong_contrast,
    holm,
    p_from_z,
    paired_bootstrap,
    weighted_binary_auroc,
    weighted_binary_balanced_accuracy,
    weighted_mean,
)
from medtl.metrics.summary import OverRuns, over_runs
from medtl.report.records import REPLICATE_FACTORS, Predictions, RunRecord, RunTable

log = logging.getLogger("medtl")

TestName = Literal["bootstrap", "delong"]
TESTS: tuple[str, ...] = ("bootstrap", "delong")
# Metrics where lower is better (the Pareto front and "best" flip for them).
LOWER_IS_BETTER = frozenset({"loss", "hd95", "hausdorff"})
SEGMENTATION_METRICS = frozenset({"dice", "mean_dice", "iou"})
# Metrics not confined to [0, 1].
UNBOUNDED = frozenset({"loss", "hd95", "hausdorff", "wall_s", "kwh"})


@dataclass
class Comparison:
    """One group against its baseline group: ``difference`` = group - baseline (mean over pairs)."""

    baseline: dict[str, str]
    pairs: int
    difference: float = math.nan
    ci95: tuple[float, float] = (math.nan, math.nan)
    p_value: float = math.nan
    p_holm: float = math.nan
    test: str = ""
    note: str | None = None


@dataclass
class GroupRow:
    key: dict[str, str]
    runs: list[RunRecord]  # completed runs with the metric
    total: int  # every run of the group, whatever its status
    failed: int
    unfinished: int
    missing_metric: int
    metric: OverRuns
    ci95: tuple[float, float]
    ci_source: str  # "patients" | "runs" | "run" | ""
    params_trained: int | None
    params_total: int | None
    wall: OverRuns
    kwh: OverRuns
    comparison: Comparison | None = None
    is_baseline: bool = False

    def label(self, factors: Sequence[str] | None = None) -> str:
        names = list(self.key) if factors is None else list(factors)
        return ", ".join(self.key[f] for f in names) if names else "all runs"


@dataclass
class Aggregate:
    by: list[str]
    metric: str
    objective: str | None
    rows: list[GroupRow]
    baseline: tuple[str, str] | None = None
    test: str = "bootstrap"
    notes: list[str] = field(default_factory=list)
    pooled_over: list[str] = field(default_factory=list)  # varying factors not in --by (besides replicates)


# -- metric functions for the bootstrap ---------------------------------------------------------------


def metric_function(metric: str, task: str | None) -> WeightedMetric:
    """``f(targets, scores) -> value`` for resampling (segmentation scores are per-sample values)."""
    if metric in SEGMENTATION_METRICS or task is None or task.startswith("seg"):
        return WeightedMetric(
            lambda _t, s: float(np.nanmean(s)) if len(s) else math.nan, weighted_mean, metric
        )
    if task == "binary" and metric == "auroc":
        return WeightedMetric(lambda t, s: auroc(t, s, "binary"), weighted_binary_auroc, metric)
    if task == "binary" and metric == "balanced_accuracy":
        return WeightedMetric(
            lambda t, s: balanced_accuracy(t, s, "binary"), weighted_binary_balanced_accuracy, metric
        )
    direct: dict[str, Callable[..., float]] = {
        "auroc": auroc,
        "accuracy": accuracy,
        "balanced_accuracy": balanced_accuracy,
    }
    if metric in direct:
        fn = direct[metric]
        return WeightedMetric(lambda t, s: fn(t, s, task), name=metric)
    return WeightedMetric(lambda t, s: float(classification_metrics(t, s, task)[metric]), name=metric)  # type: ignore[arg-type]


# -- grouping -----------------------------------------------------------------------------------------


def check_factors(table: RunTable, by: Sequence[str]) -> list[str]:
    """The factors of ``by`` (unknown ones are an error); notes for those that do not vary."""
    names = table.factor_names()
    for f in by:
        if f not in names:
            raise UnknownChoiceError("--by factor", f, names)
    return [
        f"{f} does not vary (every run has {table.levels(f, table.completed)[0]!r})"
        for f in by
        if len(table.levels(f, table.completed)) == 1
    ]


def _cost_params(runs: Sequence[RunRecord]) -> tuple[int | None, int | None]:
    trained = [r.params_trained for r in runs if r.params_trained is not None]
    total = [r.params_total for r in runs if r.params_total is not None]
    # Seeds train the same parameters; a group pooling backbones reports the median.
    return (int(np.median(trained)) if trained else None, int(np.median(total)) if total else None)


def _predictions(run: RunRecord) -> Predictions | None:
    try:
        return run.predictions()
    except InputError as exc:
        log.warning("%s: paired tests leave this run out (%s)", run.path, exc)
        run.predictions_path = None
        return None


def _interval(runs: Sequence[RunRecord], metric: str, task: str | None, n: int, seed: int):
    """(interval, source): pooled patient bootstrap, t over runs, or the single run's own."""
    preds = [_predictions(r) for r in runs]
    if runs and all(p is not None for p in preds):
        result = paired_bootstrap(
            [(p.scored(), None) for p in preds if p is not None],
            metric_function(metric, task),
            n=n,
            seed=seed,
        )
        return result.ci95, "patients"
    if len(runs) >= 2:
        low, high = over_runs(r.value(metric) for r in runs).ci95
        if metric not in UNBOUNDED:  # a t interval of few runs can leave the metric's [0, 1] range
            low, high = max(low, 0.0), min(high, 1.0)
        return (low, high), "runs"
    if len(runs) == 1 and metric in runs[0].test_ci:
        return runs[0].test_ci[metric], "run"
    return (math.nan, math.nan), ""


def level_order(table: RunTable, factor: str) -> list[str]:
    """The sweep's own order of a factor's levels when it has one; strategies from the fewest
    parameters trained to the most; otherwise numbers numerically and names alphabetically."""
    levels = table.levels(factor)
    spec = table.sweep.factor_order.get(factor)
    if spec:
        return [v for v in spec if v in levels] + [v for v in levels if v not in spec]
    if factor == "strategy":
        params: dict[str, list[int]] = defaultdict(list)
        for r in table.completed:
            if r.params_trained is not None:
                params[r.factors.get(factor, "")].append(r.params_trained)
        return sorted(levels, key=lambda v: (float(np.median(params[v])) if params[v] else math.inf, v))
    return levels


def group_runs(table: RunTable, by: Sequence[str]) -> dict[tuple[str, ...], list[RunRecord]]:
    groups: dict[tuple[str, ...], list[RunRecord]] = defaultdict(list)
    for r in table.records:
        groups[tuple(r.factors.get(f, "") for f in by)].append(r)
    order = {f: level_order(table, f) for f in by}
    return dict(sorted(groups.items(), key=lambda kv: [order[f].index(v) for f, v in zip(by, kv[0])]))


def aggregate(
    table: RunTable,
    *,
    by: Sequence[str],
    metric: str,
    baseline: tuple[str, str] | None = None,
    test: TestName = "bootstrap",
    bootstrap: int = 1000,
    seed: int = 0,
) -> Aggregate:
    """Group ``table`` by ``by`` and summarise ``metric``; see the module docstring."""
    if test not in TESTS:
        raise UnknownChoiceError("test", test, TESTS)
    by = list(by)
    notes = check_factors(table, by)
    completed = table.completed
    objectives = sorted({r.objective or "?" for r in completed})
    task = next((r.task for r in completed if r.task), None)
    rows = []
    for key, runs in group_runs(table, by).items():
        done = [r for r in runs if r.completed]
        with_metric = [r for r in done if math.isfinite(r.value(metric))]
        ci, source = _interval(with_metric, metric, task, bootstrap, seed)
        trained, total = _cost_params(with_metric)
        rows.append(
            GroupRow(
                key=dict(zip(by, key)),
                runs=with_metric,
                total=len(runs),
                failed=sum(r.status == "failed" for r in runs),
                unfinished=sum(r.status in ("running", "pending") for r in runs),
                missing_metric=len(done) - len(with_metric),
                metric=over_runs(r.value(metric) for r in with_metric),
                ci95=ci,
                ci_source=source,
                params_trained=trained,
                params_total=total,
                wall=over_runs(r.wall_s for r in with_metric),
                kwh=over_runs(r.kwh for r in with_metric),
            )
        )
    result = Aggregate(
        by=by, metric=metric, objective=objectives[0] if len(objectives) == 1 else None, rows=rows, test=test
    )
    result.notes = notes
    result.pooled_over = [f for f in table.varying() if f not in by and f not in REPLICATE_FACTORS]
    if baseline is not None:
        _compare(result, baseline, task, bootstrap=bootstrap, seed=seed)
    return result


# -- tests against the baseline ----------------------------------------------------------------------


def parse_baseline(text: str | None) -> tuple[str, str] | None:
    """``strategy=full`` -> ("strategy", "full")."""
    if not text:
        return None
    factor, sep, level = text.partition("=")
    if not sep or not factor.strip() or not level.strip():
        raise ConfigError(f"--baseline must be FACTOR=LEVEL (e.g. strategy=full), got {text!r}")
    return factor.strip(), level.strip()


def _pair_key(run: RunRecord) -> tuple[str, ...]:
    return (run.factors.get("store", ""), *(run.factors.get(f, "") for f in REPLICATE_FACTORS))


def matched_pairs(runs: Sequence[RunRecord], base: Sequence[RunRecord]) -> list[tuple[RunRecord, RunRecord]]:
    """Runs of two groups on the same test set and seed (same store, fold, seed), in order."""
    by_key: dict[tuple[str, ...], list[RunRecord]] = defaultdict(list)
    for b in base:
        by_key[_pair_key(b)].append(b)
    pairs = []
    for r in sorted(runs, key=lambda r: (_pair_key(r), r.run_id)):
        candidates = by_key.get(_pair_key(r))
        if candidates:
            pairs.append((r, candidates.pop(0)))
    return pairs


def _aligned(a: Predictions, b: Predictions) -> tuple[Scored, Scored] | None:
    """The two runs' predictions on the samples both scored, in the same order."""
    common, ia, ib = np.intersect1d(a.index, b.index, assume_unique=False, return_indices=True)
    if common.size == 0:
        return None
    return a.scored(ia), b.scored(ib)


def _compare(result: Aggregate, baseline: tuple[str, str], task: str | None, *, bootstrap: int, seed: int):
    factor, level = baseline
    if factor not in result.by:
        raise ConfigError(
            f"--baseline {factor}={level}: {factor} is not one of --by ({', '.join(result.by)})"
        )
    levels = {row.key[factor] for row in result.rows}
    if level not in levels:
        raise UnknownChoiceError(f"--baseline level of {factor}", level, sorted(levels))
    result.baseline = baseline
    index = {tuple(row.key.values()): row for row in result.rows}
    for row in result.rows:
        base_key = {**row.key, factor: level}
        if row.key[factor] == level:
            row.is_baseline = True
            continue
        base = index.get(tuple(base_key.values()))
        if base is None:
            row.comparison = Comparison(base_key, 0, note="no baseline group")
            continue
        row.comparison = _compare_rows(row, base, base_key, result.metric, task, result.test, bootstrap, seed)
    comparisons = [r.comparison for r in result.rows if r.comparison is not None]
    for c, adjusted in zip(comparisons, holm([c.p_value for c in comparisons])):
        c.p_holm = adjusted


def _compare_rows(
    row: GroupRow,
    base: GroupRow,
    base_key: dict[str, str],
    metric: str,
    task: str | None,
    test: str,
    bootstrap: int,
    seed: int,
) -> Comparison:
    pairs = matched_pairs(row.runs, base.runs)
    c = Comparison(base_key, len(pairs))
    if not pairs:
        c.note = "no runs matched on store, fold and seed"
        return c
    c.difference = float(np.mean([a.value(metric) - b.value(metric) for a, b in pairs]))
    scored = []
    for a, b in pairs:
        pa, pb = _predictions(a), _predictions(b)
        aligned = None if pa is None or pb is None else _aligned(pa, pb)
        if aligned is None:
            c.note = "no per-sample test predictions (predictions_test.npz): no test of difference"
            return c
        scored.append(((a.factors.get("store", ""), a.factors.get("fold", "")), pa, pb, *aligned))
    use_delong = test == "delong" and metric == "auroc" and task == "binary"
    if test == "delong" and not use_delong:
        c.note = "DeLong needs a binary AUROC; paired bootstrap used"
    if use_delong:
        c.difference, c.ci95, c.p_value = _delong_over_test_sets([(k, pa, pb) for k, pa, pb, _, _ in scored])
        c.test = f"DeLong ({len(pairs)} pair{'s' if len(pairs) > 1 else ''})"
    else:
        boot: BootstrapResult = paired_bootstrap(
            [(a, b) for *_, a, b in scored], metric_function(metric, task), n=bootstrap, seed=seed
        )
        c.difference, c.ci95, c.p_value = boot.estimate, boot.ci95, boot.p_value
        c.test = f"paired bootstrap over {boot.patients} patients ({len(pairs)} pair{'s' * (len(pairs) > 1)})"
    return c


def _delong_over_test_sets(scored: list[tuple[tuple[str, str], Predictions, Predictions]]):
    """Mean AUROC difference over pairs; DeLong within each test set (all its runs on the samples
    they all scored), test sets independent of each other."""
    sets: dict[tuple[str, str], list[tuple[Predictions, Predictions]]] = defaultdict(list)
    for test_set, a, b in scored:
        sets[test_set].append((a, b))
    total = len(scored)
    estimate, variance = 0.0, 0.0
    for pairs in sets.values():
        k = len(pairs)
        runs = [a for a, _ in pairs] + [b for _, b in pairs]
        common = runs[0].index
        for p in runs[1:]:
            common = np.intersect1d(common, p.index)
        rows = [np.searchsorted(p.index, common, sorter=np.argsort(p.index)) for p in runs]
        order = [np.argsort(p.index)[r] for p, r in zip(runs, rows)]
        y = np.asarray(runs[0].target)[order[0]].reshape(-1)
        scores = np.vstack([np.asarray(p.score)[o].reshape(-1) for p, o in zip(runs, order)])
        est, var = delong_contrast(y, scores, [1 / k] * k + [-1 / k] * k)
        estimate += est * k / total
        variance += var * (k / total) ** 2
    half = 1.959963984540054 * math.sqrt(variance)
    return estimate, (estimate - half, estimate + half), p_from_z(estimate, variance)[1]
