"""``build_report``: a sweep folder in, a report folder out (tables, figures, one HTML page).

The report folder is written beside itself under a temporary name and renamed into place when
complete; an existing one is replaced only with ``force`` and only when it is a medtl report
(it holds ``report.json``), so nothing the report did not write is ever deleted.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import platform
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from medtl import __version__
from medtl.errors import InputError, OutputExistsError, UnknownChoiceError
from medtl.report.aggregate import Aggregate, TestName, aggregate
from medtl.report.figures import Figure, all_figures
from medtl.report.page import Page, render
from medtl.report.reader import read_run_table
from medtl.report.records import RunTable
from medtl.report.tables import failed_table, results_csv, results_table, runs_csv, to_latex, to_markdown

log = logging.getLogger("medtl")

REPORT_MARKER = "report.json"
DEFAULT_BY = ("store", "init", "strategy")
DEFAULT_METRIC = {"classification": "auroc", "segmentation": "dice"}


@dataclass
class ReportResult:
    out: Path
    html: Path
    aggregate: Aggregate
    counts: dict[str, int]
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.counts["running"] == 0 and self.counts["pending"] == 0


def _select_objective(table: RunTable, objective: str | None) -> None:
    kinds = Counter(r.objective or "?" for r in table.completed)
    if objective is not None:
        if objective not in kinds:
            raise UnknownChoiceError("objective", objective, sorted(kinds))
        table.records = [r for r in table.records if not r.completed or r.objective == objective]
    elif len(kinds) > 1:
        listed = ", ".join(f"{k} ({n} runs)" for k, n in sorted(kinds.items()))
        raise InputError(
            table.sweep.root,
            f"mixes runs of different objectives: {listed}; one report compares one objective",
            hint="pass --objective NAME to report one of them",
        )


def _check_finished(table: RunTable) -> None:
    if table.completed:
        return
    counts = table.counts()
    listed = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    first_error = next((r for r in table.records if r.error), None)
    detail = f"; first error: {first_error.run_id}: {first_error.error}" if first_error else ""
    raise InputError(
        table.sweep.root,
        f"no finished runs to report ({listed}){detail}",
        hint="wait for the sweep (medtl report --watch) or look at the runs' status.json",
    )


def _choose_metric(table: RunTable, metric: str | None) -> tuple[str, list[str]]:
    available = sorted({k for r in table.completed for k in r.test})
    if metric is None:
        objective = table.completed[0].objective or "classification"
        metric = DEFAULT_METRIC.get(objective) or (available[0] if available else "auroc")
    lacking = [r for r in table.completed if not math.isfinite(r.value(metric))]
    if len(lacking) == len(table.completed):
        raise UnknownChoiceError("metric (no finished run has it)", metric, available)
    notes = []
    if lacking:
        ids = ", ".join(r.run_id for r in lacking[:10]) + (" ..." if len(lacking) > 10 else "")
        notes.append(f"{len(lacking)} finished runs lack test {metric} and are left out: {ids}")
    return metric, notes


def _comparison_notes(agg: Aggregate) -> list[str]:
    """One note per reason a comparison has no test, naming the groups it concerns."""
    by_note: dict[str, list[str]] = {}
    for r in agg.rows:
        if r.comparison is not None and r.comparison.note:
            by_note.setdefault(r.comparison.note, []).append(r.label(agg.by))
    return [f"{note} ({', '.join(groups)})" for note, groups in by_note.items()]


def _default_by(table: RunTable) -> list[str]:
    varying = table.varying()
    return [f for f in DEFAULT_BY if f in varying] or ["strategy"]


def versions() -> dict[str, str]:
    out = {"medtl": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for name in ("torch", "torchvision", "timm", "numpy", "scipy", "scikit-learn", "matplotlib"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def _prepare_out(out: Path, force: bool) -> Path:
    """A fresh temporary folder beside ``out``; checks that ``out`` may be replaced."""
    if out.exists():
        if not force:
            err = OutputExistsError(out)
            err.hint = "pass --force to replace it"
            raise err
        if not (out / REPORT_MARKER).is_file():
            raise InputError(out, f"exists and is not a medtl report (no {REPORT_MARKER}); not replacing it")
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "figures").mkdir(parents=True)
    (tmp / "tables").mkdir()
    return tmp


def _swap_into_place(tmp: Path, out: Path) -> None:
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        os.replace(out, old)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def _summary_json(
    agg: Aggregate, counts: dict[str, int], figures: Sequence[Figure], root: Path
) -> dict[str, Any]:
    def num(v: float | None) -> float | None:
        return None if v is None or not math.isfinite(v) else v

    rows = []
    for r in agg.rows:
        c = r.comparison
        rows.append(
            {
                "key": r.key,
                "runs": [run.run_id for run in r.runs],
                "total": r.total,
                "mean": num(r.metric.mean),
                "std": num(r.metric.std),
                "ci95": [num(r.ci95[0]), num(r.ci95[1])],
                "ci_source": r.ci_source,
                "params_trained": r.params_trained,
                "wall_s": num(r.wall.mean),
                "kwh": num(r.kwh.mean),
                "baseline": r.is_baseline,
                "comparison": None
                if c is None
                else {
                    "baseline": c.baseline,
                    "pairs": c.pairs,
                    "difference": num(c.difference),
                    "ci95": [num(c.ci95[0]), num(c.ci95[1])],
                    "p": num(c.p_value),
                    "p_holm": num(c.p_holm),
                    "test": c.test,
                    "note": c.note,
                },
            }
        )
    return {
        "medtl_version": __version__,
        "sweep": str(root),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "metric": agg.metric,
        "by": agg.by,
        "objective": agg.objective,
        "baseline": None if agg.baseline is None else "=".join(agg.baseline),
        "test": agg.test,
        "counts": counts,
        "notes": agg.notes,
        "rows": rows,
        "figures": [f.name for f in figures],
    }


def _write_report(
    tmp: Path, table: RunTable, agg: Aggregate, counts: dict[str, int], figures: bool
) -> list[Figure]:
    """Every file of the report into ``tmp``; returns the figures drawn."""
    root = table.sweep.root
    drawn = all_figures(agg, table.records, tmp / "figures") if figures else []
    result_table = results_table(agg)
    failed = failed_table(table)
    (tmp / "tables" / "results.md").write_text(to_markdown(result_table))
    (tmp / "tables" / "results.tex").write_text(to_latex(result_table))
    (tmp / "tables" / "results.csv").write_text(results_csv(agg))
    metrics = sorted({k for r in table.completed for k in r.test})
    (tmp / "tables" / "runs.csv").write_text(runs_csv(table, metrics))
    if failed is not None:
        (tmp / "tables" / "failed.md").write_text(to_markdown(failed))
    page = Page(
        title=f"medtl report: {table.sweep.name}",
        subtitle=f"{root.resolve()} · test {agg.metric} by {', '.join(agg.by)} · "
        f"written {time.strftime('%Y-%m-%d %H:%M')}",
        counts=counts,
        notes=agg.notes,
        tables=[result_table],
        figures=drawn,
        failed=failed,
        unfinished=[f"{r.run_id} ({r.status})" for r in table.with_status("running", "pending")],
        spec_name=table.sweep.spec_name,
        spec_text=table.sweep.spec_text,
        versions=versions(),
    )
    (tmp / "index.html").write_text(render(page))
    summary = _summary_json(agg, counts, drawn, root)
    (tmp / REPORT_MARKER).write_text(json.dumps(summary, indent=2) + "\n")
    return drawn


def build_report(
    sweep_dir: str | Path,
    out: str | Path | None = None,
    *,
    by: Sequence[str] | None = None,
    metric: str | None = None,
    baseline: tuple[str, str] | None = None,
    test: TestName = "bootstrap",
    objective: str | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    force: bool = False,
    figures: bool = True,
) -> ReportResult:
    """Read the runs under ``sweep_dir`` and write the report to ``out`` (default SWEEP/report);
    ``figures=False`` writes the tables and the page without figures (much faster)."""
    root = Path(sweep_dir)
    table = read_run_table(root)
    out_path = Path(out) if out is not None else root / "report"
    table.records = [r for r in table.records if r.path.resolve() != out_path.resolve()]
    _select_objective(table, objective)
    _check_finished(table)
    metric, notes = _choose_metric(table, metric)
    # The bootstrap multiplies small matrices; BLAS threads only contend for them (measured 60x
    # slower with 2 threads on a busy 2-core machine), so the report keeps BLAS to one thread.
    with threadpool_limits(limits=1, user_api="blas"):
        agg = aggregate(
            table,
            by=list(by) if by else _default_by(table),
            metric=metric,
            baseline=baseline,
            test=test,
            bootstrap=bootstrap,
            seed=seed,
        )
    agg.notes = notes + agg.notes + _comparison_notes(agg)
    counts = table.counts()
    tmp = _prepare_out(out_path, force)
    try:
        drawn = _write_report(tmp, table, agg, counts, figures)
        _swap_into_place(tmp, out_path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    placed = [
        Figure(f.name, f.title, f.alt, {k: out_path / "figures" / p.name for k, p in f.files.items()})
        for f in drawn
    ]
    return ReportResult(out_path, out_path / "index.html", agg, counts, placed, agg.notes)
