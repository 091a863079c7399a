"""The report's figures (matplotlib, written as PNG and SVG).

Every figure labels its axes with units, keeps its legend outside the data (right of the axes),
rotates tick labels that would overlap, and draws with the Okabe–Ito palette (safe for the common
colour-vision deficiencies) plus a distinct marker per series, so no distinction rests on colour
alone. A figure whose data the sweep does not have (no robustness evaluation, no ``fraction``
factor, no external test) is skipped.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medtl.metrics.summary import over_runs
from medtl.report.aggregate import LOWER_IS_BETTER, UNBOUNDED, Aggregate, GroupRow
from medtl.report.records import RunRecord, sort_levels

# Okabe & Ito (2008), "Color Universal Design"; yellow last (weak on white).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h", "<", ">", "p")
METRIC_LABELS = {
    "auroc": "AUROC",
    "balanced_accuracy": "balanced accuracy",
    "accuracy": "accuracy",
    "f1": "F1 (macro)",
    "precision": "precision (macro)",
    "recall": "recall (macro)",
    "dice": "Dice",
    "mean_dice": "mean Dice",
    "loss": "loss",
}


@dataclass
class Figure:
    """A rendered figure: ``name`` (file stem), ``title`` and ``alt`` text for the page, ``files``."""

    name: str
    title: str
    alt: str
    files: dict[str, Path]


def metric_label(metric: str, where: str = "test") -> str:
    return f"{where.capitalize()} {METRIC_LABELS.get(metric, metric.replace('_', ' '))} (0–1)"


def style(i: int) -> dict[str, str]:
    return {"color": PALETTE[i % len(PALETTE)], "marker": MARKERS[i % len(MARKERS)]}


def _new_figure(width: float = 7.5, height: float = 4.2):
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), layout="constrained", dpi=110)
    return fig


def _legend_outside(ax, title: str | None = None, **kwargs) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(
            handles,
            labels,
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            borderaxespad=0.0,
            frameon=False,
            title=title,
            fontsize="small",
            title_fontsize="small",
            **kwargs,
        )


def _fit_ticks(ax, labels: Sequence[str]) -> None:
    """Category tick labels, rotated when they would not fit side by side."""
    ax.set_xticks(range(len(labels)))
    longest = max((len(s) for s in labels), default=0)
    if longest * len(labels) > 60:
        ax.set_xticklabels(labels, rotation=30, ha="right", rotation_mode="anchor")
    else:
        ax.set_xticklabels(labels)


def _log_x(ax, values: Sequence[float]) -> None:
    """A log x axis whose tick labels do not collide: 1-2-5 ticks within two decades, else decades."""
    from matplotlib.ticker import LogFormatterSciNotation, LogLocator, NullFormatter

    ax.set_xscale("log")
    finite = [v for v in values if v > 0 and math.isfinite(v)]
    span = math.log10(max(finite) / min(finite)) if finite else 0.0
    subs = (1.0, 2.0, 5.0) if span <= 2 else (1.0,)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=subs, numticks=12))
    ax.xaxis.set_major_formatter(LogFormatterSciNotation(labelOnlyBase=False))
    ax.xaxis.set_minor_formatter(NullFormatter())
    if finite:  # room for the markers at both ends
        ax.set_xlim(min(finite) / 10 ** max(0.15, span * 0.08), max(finite) * 10 ** max(0.15, span * 0.08))


def _save(fig, out_dir: Path, name: str, title: str, alt: str) -> Figure:
    files = {}
    for ext in ("png", "svg"):
        path = out_dir / f"{name}.{ext}"
        metadata = {"Date": None} if ext == "svg" else {"Software": None}
        fig.savefig(path, format=ext, metadata=metadata)
        files[ext] = path
    return Figure(name, title, alt, files)


def _series(agg: Aggregate) -> tuple[str | None, list[str], list[str]]:
    """How groups are drawn: x = the last --by factor, one series per combination of the others."""
    if not agg.by:
        return None, ["all runs"], []
    x_factor = agg.by[-1]
    x_levels = list(dict.fromkeys(r.key[x_factor] for r in agg.rows))  # the table's order
    others = agg.by[:-1]
    series = list(dict.fromkeys(", ".join(r.key[f] for f in others) for r in agg.rows)) if others else []
    return x_factor, x_levels, series


def _err(row: GroupRow) -> tuple[list[float], list[float]]:
    low, high = row.ci95
    m = row.metric.mean
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0], [0.0]
    return [max(m - low, 0.0)], [max(high - m, 0.0)]


def metric_by_group(agg: Aggregate, out_dir: Path) -> Figure | None:
    rows = [r for r in agg.rows if r.runs]
    if not rows:
        return None
    x_factor, x_levels, series = _series(agg)
    fig = _new_figure(max(6.0, 1.0 + 0.9 * len(x_levels) + (2.0 if series else 0.0)), 4.2)
    ax = fig.add_subplot()
    names = series or [""]
    width = 0.7 / len(names)
    rng = np.random.default_rng(0)
    for si, name in enumerate(names):
        first = True
        for r in rows:
            label = ", ".join(r.key[f] for f in agg.by[:-1]) if series else ""
            if label != name:
                continue
            # One series: colour per group, as in the other figures; several: colour per series.
            st = style(si) if series else style(agg.rows.index(r))
            x = (x_levels.index(r.key[x_factor]) if x_factor else 0) + (si - (len(names) - 1) / 2) * width
            values = [run.value(agg.metric) for run in r.runs]
            jitter = rng.uniform(-0.12, 0.12, len(values)) * width
            ax.scatter(
                x + jitter,
                values,
                s=18,
                facecolors="none",
                edgecolors=st["color"],
                marker=st["marker"],
                linewidths=0.9,
                alpha=0.8,
                zorder=2,
                label=None,
            )
            low, high = _err(r)
            ax.errorbar(
                [x],
                [r.metric.mean],
                yerr=[low, high],
                fmt=st["marker"],
                color=st["color"],
                markersize=7,
                capsize=4,
                elinewidth=1.5,
                zorder=3,
                label=name if first and series else None,
            )
            first = False
    _fit_ticks(ax, x_levels)
    ax.set_xlabel(x_factor or "")
    ax.set_ylabel(metric_label(agg.metric))
    ax.grid(axis="y", alpha=0.3)
    ax.set_xlim(-0.6, len(x_levels) - 0.4)
    _legend_outside(ax, title=", ".join(agg.by[:-1]) if series else None)
    title = (
        f"Test {METRIC_LABELS.get(agg.metric, agg.metric)} by {', '.join(agg.by)}: "
        "mean and 95% CI (filled), single runs (hollow)"
    )
    return _save(fig, out_dir, "metric_by_group", title, title)


def _group_points(agg: Aggregate, x_of) -> list[tuple[int, GroupRow, float]]:
    return [(i, r, x_of(r)) for i, r in enumerate(agg.rows) if r.runs and x_of(r) is not None and x_of(r) > 0]


def _dodged(points) -> list[float]:
    """x positions with groups that share an x (same parameter count) spread a little apart on the
    log axis, so their intervals do not hide each other."""
    same: dict[float, list[int]] = defaultdict(list)
    for k, (_, _, x) in enumerate(points):
        same[x].append(k)
    out = [x for _, _, x in points]
    for x, members in same.items():
        for j, k in enumerate(members):
            out[k] = x * 10 ** (0.04 * (j - (len(members) - 1) / 2))
    return out


def _scatter_groups(ax, agg: Aggregate, points) -> None:
    for (i, r, _), x in zip(points, _dodged(points)):
        low, high = _err(r)
        st = style(i)
        ax.errorbar(
            [x],
            [r.metric.mean],
            yerr=[low, high],
            fmt=st["marker"],
            color=st["color"],
            markersize=7,
            capsize=4,
            elinewidth=1.2,
            label=r.label(agg.by),
        )


def metric_vs_params(agg: Aggregate, out_dir: Path) -> Figure | None:
    points = _group_points(agg, lambda r: r.params_trained)
    if not points:
        return None
    fig = _new_figure()
    ax = fig.add_subplot()
    _scatter_groups(ax, agg, points)
    _log_x(ax, [x for *_, x in points])
    ax.set_xlabel("Parameters trained (count, log scale)")
    ax.set_ylabel(metric_label(agg.metric))
    ax.grid(alpha=0.3)
    _legend_outside(ax, title=", ".join(agg.by))
    title = f"Test {METRIC_LABELS.get(agg.metric, agg.metric)} vs parameters trained"
    return _save(fig, out_dir, "metric_vs_params", title, f"{title} (mean and 95% CI per group)")


def pareto_front(points: Sequence[tuple[float, float]], lower_is_better: bool = False) -> list[int]:
    """Indices of the points no other point beats on both cost (x, lower) and metric (y)."""
    order = sorted(
        range(len(points)),
        key=lambda i: (points[i][0], -points[i][1] if not lower_is_better else points[i][1]),
    )
    front, best = [], math.inf if lower_is_better else -math.inf
    for i in order:
        y = points[i][1]
        if (y < best) if lower_is_better else (y > best):
            front.append(i)
            best = y
    return front


def metric_vs_kwh(agg: Aggregate, out_dir: Path) -> Figure | None:
    points = _group_points(agg, lambda r: r.kwh.mean if math.isfinite(r.kwh.mean) else None)
    if not points:
        return None
    fig = _new_figure()
    ax = fig.add_subplot()
    _scatter_groups(ax, agg, points)
    front = pareto_front([(x, r.metric.mean) for _, r, x in points], agg.metric in LOWER_IS_BETTER)
    placed = _dodged(points)
    fx = [placed[i] for i in front]
    fy = [points[i][1].metric.mean for i in front]
    ax.plot(
        fx,
        fy,
        drawstyle="steps-post",
        linestyle="--",
        color="#555555",
        linewidth=1.2,
        zorder=1,
        label="Pareto front",
    )
    ax.scatter(fx, fy, s=190, facecolors="none", edgecolors="#555555", linewidths=1.2, zorder=1)
    _log_x(ax, [x for *_, x in points])
    ax.set_xlabel("Energy per run (kWh, log scale)")
    ax.set_ylabel(metric_label(agg.metric))
    ax.grid(alpha=0.3)
    _legend_outside(ax, title=", ".join(agg.by))
    title = f"Test {METRIC_LABELS.get(agg.metric, agg.metric)} vs energy (Pareto front circled)"
    return _save(fig, out_dir, "metric_vs_kwh", title, f"{title}: mean and 95% CI per group")


def validation_curves(agg: Aggregate, out_dir: Path) -> Figure | None:
    key = agg.metric
    rows = [r for r in agg.rows if any(any(key in p.values for p in run.history) for run in r.runs)]
    if not rows:
        return None
    fig = _new_figure(8.0, 4.4)
    ax = fig.add_subplot()
    for _gi, r in enumerate(rows):
        st = style(agg.rows.index(r))
        for ri, run in enumerate(r.runs):
            pts = [(p.epoch + 1, p.values[key]) for p in run.history if key in p.values]
            if not pts:
                continue
            xs, ys = zip(*pts)
            ax.plot(
                xs,
                ys,
                color=st["color"],
                marker=st["marker"],
                markersize=3.5,
                linewidth=1.2,
                markevery=max(1, len(xs) // 8),
                alpha=0.85,
                label=r.label(agg.by) if ri == 0 else None,
            )
    ax.set_xlabel("Epoch (counted over all phases)")
    ax.set_ylabel(metric_label(key, "validation"))
    ax.grid(alpha=0.3)
    _legend_outside(ax, title=", ".join(agg.by) + " (one line per run)")
    title = f"Validation {METRIC_LABELS.get(key, key)} per epoch"
    return _save(fig, out_dir, "validation_curves", title, f"{title}, one line per run, coloured by group")


def _robustness_rows(run: RunRecord) -> list[dict]:
    """The first robustness evaluation of a run (its own test set first)."""
    for name in sorted(run.robustness, key=lambda n: (n.endswith(("-all",)), n)):
        return run.robustness[name]
    return []


def robustness_curves(agg: Aggregate, out_dir: Path) -> Figure | None:
    metric = agg.metric
    by_group: dict[int, dict[str, dict[int, list[float]]]] = {}
    corruptions: dict[str, None] = {}
    for gi, r in enumerate(agg.rows):
        cells: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for run in r.runs:
            rows = _robustness_rows(run)
            clean = [x.get(metric) for x in rows if x.get("severity") == 0]
            for x in rows:
                if x.get("severity", 0) > 0 and x.get(metric) is not None:
                    corruptions[x["corruption"]] = None
                    cells[x["corruption"]][int(x["severity"])].append(float(x[metric]))
                    if clean and clean[0] is not None:
                        cells[x["corruption"]][0].append(float(clean[0]))
        if cells:
            by_group[gi] = cells
    if not by_group:
        return None
    names = list(corruptions)
    cols = min(4, len(names))
    nrows = math.ceil(len(names) / cols)
    fig = _new_figure(2.6 * cols + 2.4, 2.3 * nrows + 0.6)
    axes = fig.subplots(nrows, cols, sharex=True, sharey=True, squeeze=False)
    for k, name in enumerate(names):
        ax = axes[k // cols][k % cols]
        for gi, cells in by_group.items():
            st = style(gi)
            sev = sorted(cells[name])
            means = [float(np.mean(cells[name][s])) for s in sev]
            ax.plot(
                sev,
                means,
                color=st["color"],
                marker=st["marker"],
                markersize=4,
                linewidth=1.2,
                label=agg.rows[gi].label(agg.by) if k == 0 else None,
            )
        ax.set_title(name.replace("_", " "), fontsize="small")
        ax.set_xticks(range(0, 6))
        ax.grid(alpha=0.3)
    for k in range(len(names), nrows * cols):
        axes[k // cols][k % cols].set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("Severity (0 = clean)")
    for row in axes:
        row[0].set_ylabel(METRIC_LABELS.get(metric, metric) + " (0–1)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(
        handles, labels, loc="outside right upper", frameon=False, fontsize="small", title=", ".join(agg.by)
    )
    title = f"Robustness: test {METRIC_LABELS.get(metric, metric)} vs corruption severity"
    return _save(
        fig, out_dir, "robustness_curves", title, f"{title}, one panel per corruption, mean over runs"
    )


def few_shot_curves(agg: Aggregate, records: Sequence[RunRecord], out_dir: Path) -> Figure | None:
    done = [
        r for r in records if r.completed and math.isfinite(r.value(agg.metric)) and "fraction" in r.factors
    ]
    fractions = sort_levels({r.factors["fraction"] for r in done})
    if len(fractions) < 2:
        return None
    series_by = [f for f in agg.by if f != "fraction"]
    groups: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in done:
        label = ", ".join(r.factors.get(f, "") for f in series_by) or "all runs"
        groups[label][float(r.factors["fraction"])].append(r.value(agg.metric))
    fig = _new_figure()
    ax = fig.add_subplot()
    bounded = agg.metric not in UNBOUNDED
    for i, (label, cells) in enumerate(groups.items()):
        st = style(i)
        xs = sorted(cells)
        stats = [over_runs(cells[x]) for x in xs]
        ys = [s.mean for s in stats]
        lows = [max(s.ci95[0], 0.0) if bounded else s.ci95[0] for s in stats]
        highs = [min(s.ci95[1], 1.0) if bounded else s.ci95[1] for s in stats]
        low = [m - lo if math.isfinite(lo) else 0.0 for m, lo in zip(ys, lows)]
        high = [hi - m if math.isfinite(hi) else 0.0 for m, hi in zip(ys, highs)]
        # Series side by side (a few hundredths of a decade apart), so equal values do not hide each other.
        dodge = 10 ** (0.025 * (i - (len(groups) - 1) / 2))
        ax.errorbar(
            [100 * x * dodge for x in xs],
            ys,
            yerr=[low, high],
            color=st["color"],
            marker=st["marker"],
            capsize=3,
            linewidth=1.3,
            label=label,
        )
    ax.set_xscale("log")
    ax.set_xticks([100 * float(f) for f in fractions])
    ax.set_xticklabels([f"{100 * float(f):g}" for f in fractions])
    ax.minorticks_off()
    ax.set_xlabel("Training data used (% of each class, log scale)")
    ax.set_ylabel(metric_label(agg.metric))
    ax.grid(alpha=0.3)
    _legend_outside(ax, title=", ".join(series_by) or None)
    title = f"Few-shot: test {METRIC_LABELS.get(agg.metric, agg.metric)} vs training fraction"
    return _save(fig, out_dir, "few_shot_curves", title, f"{title}, mean and 95% CI over runs")


def dev_vs_external(agg: Aggregate, out_dir: Path) -> Figure | None:
    metric = agg.metric
    externals = sorted(
        {name for r in agg.rows for run in r.runs for name, m in run.external.items() if metric in m}
    )
    rows = [r for r in agg.rows if r.runs]
    if not externals or not rows:
        return None
    fig = _new_figure(7.5, 1.2 + 0.45 * len(rows))
    ax = fig.add_subplot()
    ys = list(range(len(rows)))[::-1]
    series = [("development test", lambda run: run.value(metric))] + [
        (f"external: {name}", lambda run, n=name: run.external.get(n, {}).get(metric, math.nan))
        for name in externals
    ]
    for si, (label, get) in enumerate(series):
        st = style(si)
        xs = [over_runs(get(run) for run in r.runs).mean for r in rows]
        ax.scatter(xs, ys, color=st["color"], marker=st["marker"], s=42, zorder=3, label=label)
        if si:
            dev = [over_runs(run.value(metric) for run in r.runs).mean for r in rows]
            for y, a, b in zip(ys, dev, xs):
                if math.isfinite(a) and math.isfinite(b):
                    ax.plot([a, b], [y, y], color="#999999", linewidth=1.0, zorder=1)
    ax.set_yticks(ys)
    ax.set_yticklabels([r.label(agg.by) for r in rows])
    ax.set_xlabel(f"{METRIC_LABELS.get(metric, metric)} (0–1), mean over runs")
    ax.grid(axis="x", alpha=0.3)
    _legend_outside(ax)
    title = f"Development vs external test: {METRIC_LABELS.get(metric, metric)}"
    return _save(fig, out_dir, "dev_vs_external", title, f"{title} per group")


def all_figures(agg: Aggregate, records: Sequence[RunRecord], out_dir: Path) -> list[Figure]:
    """Every figure the data supports, written into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    makers = [
        lambda: metric_by_group(agg, out_dir),
        lambda: metric_vs_params(agg, out_dir),
        lambda: metric_vs_kwh(agg, out_dir),
        lambda: validation_curves(agg, out_dir),
        lambda: robustness_curves(agg, out_dir),
        lambda: few_shot_curves(agg, records, out_dir),
        lambda: dev_vs_external(agg, out_dir),
    ]
    return [f for f in (make() for make in makers) if f is not None]
