"""`medtl report SWEEP_DIR`: tables, tests of difference, figures and one HTML page of a sweep."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from medtl_cli.app import console, err_console

SweepArg = Annotated[Path, typer.Argument(help="sweep folder (one folder per run) or a runs folder")]
ByOpt = Annotated[
    Optional[str],
    typer.Option(
        "--by", help="comma-separated factors to group by (default: those of store,init,strategy that vary)"
    ),
]
MetricOpt = Annotated[
    Optional[str], typer.Option("--metric", help="test metric (default: auroc; dice for segmentation)")
]
BaselineOpt = Annotated[
    Optional[str],
    typer.Option("--baseline", help="FACTOR=LEVEL every group is tested against, e.g. strategy=full"),
]
TestOpt = Annotated[
    str, typer.Option("--test", help="bootstrap (paired, by patient) | delong (binary AUROC)")
]
ObjectiveOpt = Annotated[
    Optional[str], typer.Option("--objective", help="report the runs of this objective only")
]
ReportOutOpt = Annotated[
    Optional[Path], typer.Option("--out", "-o", help="report folder (default: SWEEP/report)")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="replace an existing report folder")]
BootstrapOpt = Annotated[
    int, typer.Option("--bootstrap", help="bootstrap resamples for CIs and paired tests")
]
WatchOpt = Annotated[
    bool, typer.Option("--watch", help="rebuild while the sweep runs, until every run ended")
]
IntervalOpt = Annotated[float, typer.Option("--interval", help="seconds between rebuilds with --watch")]
FiguresOpt = Annotated[bool, typer.Option("--figures/--no-figures", help="draw the figures (PNG, SVG)")]


def report(
    sweep: SweepArg,
    by: ByOpt = None,
    metric: MetricOpt = None,
    baseline: BaselineOpt = None,
    test: TestOpt = "bootstrap",
    objective: ObjectiveOpt = None,
    out: ReportOutOpt = None,
    force: ForceOpt = False,
    bootstrap: BootstrapOpt = 1000,
    watch: WatchOpt = False,
    interval: IntervalOpt = 30.0,
    figures: FiguresOpt = True,
) -> None:
    """Aggregate a sweep's runs by factors: mean ± std, 95% CIs, paired tests, tables, figures, HTML."""
    from medtl.report import build_report, parse_baseline

    kwargs = dict(
        by=[f.strip() for f in by.split(",") if f.strip()] if by else None,
        metric=metric,
        baseline=parse_baseline(baseline),
        test=test,
        objective=objective,
        bootstrap=bootstrap,
        figures=figures,
    )
    result = build_report(sweep, out, force=force, **kwargs)
    show(result)
    while watch and not result.finished:
        time.sleep(interval)
        result = build_report(sweep, out, force=True, **kwargs)  # replaces only its own report
        show(result)


def show(result) -> None:
    agg = result.aggregate
    table = Table(title=f"test {agg.metric} by {', '.join(agg.by)}")
    for f in agg.by:
        table.add_column(f)
    for name in ("runs", "mean ± std", "95% CI", "Δ", "p (Holm)", "params", "kWh"):
        table.add_column(name, justify="right")
    for r in agg.rows:
        c = r.comparison
        diff = "baseline" if r.is_baseline else ("–" if c is None else f"{c.difference:+.3f}")
        p = "" if c is None or not math.isfinite(c.p_holm) else f"{c.p_holm:.3g}"
        low, high = r.ci95
        ci = f"{low:.3f}–{high:.3f}" if math.isfinite(low) and math.isfinite(high) else "–"
        table.add_row(
            *(r.key[f] for f in agg.by),
            f"{len(r.runs)}/{r.total}",
            r.metric.format(),
            ci,
            diff,
            p,
            "–" if r.params_trained is None else f"{r.params_trained:,}",
            f"{r.kwh.mean:.2e}" if math.isfinite(r.kwh.mean) else "–",
        )
    console.print(table)
    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    counts = ", ".join(f"{n} {s}" for s, n in result.counts.items() if n)
    console.print(f"{counts}; report: {result.html}", highlight=False, soft_wrap=True)
