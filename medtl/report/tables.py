"""Tables of an Aggregate as Markdown, CSV and LaTeX (booktabs), with the cost next to the metric.

One ``Table`` (header, formatted cells, caption) renders to Markdown, LaTeX and HTML; the CSV holds
the unformatted numbers, so a reader can recompute anything the formatted tables round.
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from medtl.report.aggregate import LOWER_IS_BETTER, Aggregate, GroupRow
from medtl.report.records import RunTable

CI_SOURCES = {
    "patients": "bootstrap over test patients pooled across the group's runs",
    "runs": "Student's t over runs",
    "run": "the single run's bootstrap over test patients",
}


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    caption: str
    bold: set[tuple[int, int]] = field(default_factory=set)  # (row, column) cells to emphasise
    align: str = ""  # one of l/r per column


def format_count(n: int | None) -> str:
    if n is None:
        return "–"
    if n >= 1_000_000:
        return f"{n / 1e6:.1f} M"
    if n >= 10_000:
        return f"{n / 1e3:.0f} k"
    return f"{n:,}"


def format_seconds(s: float) -> str:
    if not math.isfinite(s):
        return "–"
    if s < 120:
        return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def format_kwh(k: float) -> str:
    if not math.isfinite(k):
        return "–"
    return f"{k:.3g}" if k >= 0.01 else f"{k:.2e}"


def format_p(p: float) -> str:
    if not math.isfinite(p):
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _interval(ci: tuple[float, float], digits: int = 3) -> str:
    low, high = ci
    if not (math.isfinite(low) and math.isfinite(high)):
        return "–"
    return f"{low:.{digits}f}–{high:.{digits}f}"


def _signed(v: float, digits: int = 3) -> str:
    return "–" if not math.isfinite(v) else f"{v:+.{digits}f}"


def _runs_cell(row: GroupRow) -> str:
    cell = f"{len(row.runs)}/{row.total}"
    extra = []
    if row.failed:
        extra.append(f"{row.failed} failed")
    if row.unfinished:
        extra.append(f"{row.unfinished} unfinished")
    if row.missing_metric:
        extra.append(f"{row.missing_metric} lack it")
    return cell + (f" ({', '.join(extra)})" if extra else "")


def _comparison_cells(row: GroupRow) -> list[str]:
    if row.is_baseline:
        return ["baseline", "", ""]
    c = row.comparison
    if c is None:
        return ["–", "–", "–"]
    diff = _signed(c.difference)
    if math.isfinite(c.ci95[0]):
        diff += f" ({_signed(c.ci95[0])} to {_signed(c.ci95[1])})"
    return [diff, format_p(c.p_value), format_p(c.p_holm)]


def caption(agg: Aggregate) -> str:
    metric = agg.metric
    parts = [f"Test {metric} by {', '.join(agg.by) or 'nothing'}: mean ± std over runs (seeds, folds)."]
    sources = sorted({r.ci_source for r in agg.rows if r.ci_source})
    if sources:
        parts.append("95% CI: " + "; ".join(f"{CI_SOURCES[s]}" for s in sources) + ".")
    if agg.baseline is not None:
        factor, level = agg.baseline
        tests = sorted(
            {r.comparison.test.split(" (")[0] for r in agg.rows if r.comparison and r.comparison.test}
        )
        m = sum(1 for r in agg.rows if r.comparison is not None and math.isfinite(r.comparison.p_value))
        parts.append(
            f"Δ: difference to {factor}={level} (with its 95% CI), mean over runs matched on store, fold "
            f"and seed; p: {' / '.join(tests) or 'no test'}, two-sided; Holm-corrected over {m} comparisons."
        )
    if agg.pooled_over:
        parts.append(f"Pooled over {', '.join(agg.pooled_over)} (not in --by).")
    parts.append("Cost per run: largest number of parameters trained in any phase, wall time, energy.")
    return " ".join(parts)


def results_table(agg: Aggregate) -> Table:
    """The main table: one row per group."""
    header = [*agg.by, "runs", f"{agg.metric} (mean ± std)", "95% CI"]
    if agg.baseline is not None:
        header += ["Δ vs baseline", "p", "p (Holm)"]
    header += ["params trained", "wall time", "kWh"]
    rows, bold = [], set()
    means = [r.metric.mean for r in agg.rows if math.isfinite(r.metric.mean)]
    best = (min(means) if agg.metric in LOWER_IS_BETTER else max(means)) if means else math.nan
    metric_col = len(agg.by) + 1
    for i, r in enumerate(agg.rows):
        cells = [r.key[f] for f in agg.by]
        cells += [_runs_cell(r), r.metric.format(), _interval(r.ci95)]
        if agg.baseline is not None:
            cells += _comparison_cells(r)
        cells += [format_count(r.params_trained), format_seconds(r.wall.mean), format_kwh(r.kwh.mean)]
        rows.append(cells)
        if r.metric.mean == best:
            bold.add((i, metric_col))
    align = "l" * len(agg.by) + "r" * (len(header) - len(agg.by))
    return Table(header, rows, caption(agg), bold, align)


def failed_table(table: RunTable) -> Table | None:
    failed = table.with_status("failed")
    if not failed:
        return None
    rows = [
        [r.run_id, ", ".join(f"{k}={v}" for k, v in r.factors.items() if k != "store"), r.error or ""]
        for r in failed
    ]
    return Table(
        ["run", "factors", "error"], rows, f"{len(failed)} failed runs and their error line.", align="lll"
    )


# -- renderers ----------------------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(t: Table) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    sep = ["---:" if a == "r" else "---" for a in (t.align or "l" * len(t.header))]
    body = []
    for i, row in enumerate(t.rows):
        body.append(line([f"**{c}**" if (i, j) in t.bold else _md_escape(c) for j, c in enumerate(row)]))
    return "\n".join([line(map(_md_escape, t.header)), line(sep), *body, "", f"*{t.caption}*", ""])


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
    return out.replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("–", "--").replace("< ", "$<$ ")


def to_latex(t: Table, label: str = "tab:results") -> str:
    """A booktabs table (needs ``\\usepackage{booktabs}``)."""
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\caption{" + latex_escape(t.caption) + "}",
        r"\label{" + label + "}",
        r"\begin{tabular}{" + (t.align or "l" * len(t.header)) + "}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in t.header) + r" \\",
        r"\midrule",
    ]
    for i, row in enumerate(t.rows):
        cells = [
            r"\textbf{" + latex_escape(c) + "}" if (i, j) in t.bold else latex_escape(c)
            for j, c in enumerate(row)
        ]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def to_html(t: Table, css_class: str = "results") -> str:
    align = t.align or "l" * len(t.header)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.header)
    body = []
    for i, row in enumerate(t.rows):
        cells = []
        for j, c in enumerate(row):
            text = html.escape(c)
            if (i, j) in t.bold:
                text = f"<strong>{text}</strong>"
            cells.append(f'<td class="{"num" if align[j] == "r" else "txt"}">{text}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table class="{css_class}"><caption>{html.escape(t.caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _num(v: float | int | None) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return ""
    return repr(v) if isinstance(v, float) else str(v)


def results_csv(agg: Aggregate) -> str:
    """The numbers of the results table, unformatted (empty cells for missing values)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        [
            *agg.by,
            "runs",
            "total",
            "failed",
            "unfinished",
            "missing_metric",
            "metric",
            "mean",
            "std",
            "ci_low",
            "ci_high",
            "ci_source",
            "baseline",
            "difference",
            "difference_low",
            "difference_high",
            "p",
            "p_holm",
            "test",
            "params_trained",
            "params_total",
            "wall_s_mean",
            "kwh_mean",
        ]
    )
    for r in agg.rows:
        c = r.comparison
        baseline = (
            "yes"
            if r.is_baseline
            else ("" if c is None else ",".join(f"{k}={v}" for k, v in c.baseline.items()))
        )
        writer.writerow(
            [
                *(r.key[f] for f in agg.by),
                len(r.runs),
                r.total,
                r.failed,
                r.unfinished,
                r.missing_metric,
                agg.metric,
                _num(r.metric.mean),
                _num(r.metric.std),
                _num(r.ci95[0]),
                _num(r.ci95[1]),
                r.ci_source,
                baseline,
                _num(c.difference if c else None),
                _num(c.ci95[0] if c else None),
                _num(c.ci95[1] if c else None),
                _num(c.p_value if c else None),
                _num(c.p_holm if c else None),
                c.test if c else "",
                _num(r.params_trained),
                _num(r.params_total),
                _num(r.wall.mean),
                _num(r.kwh.mean),
            ]
        )
    return buf.getvalue()


def runs_csv(table: RunTable, metrics: Sequence[str]) -> str:
    """Every run: id, status, factors, test metrics, cost and error line."""
    factors = table.factor_names()
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["run_id", "status", *factors, *metrics, "params_trained", "wall_s", "kwh", "error"])
    for r in table.records:
        writer.writerow(
            [
                r.run_id,
                r.status,
                *(r.factors.get(f, "") for f in factors),
                *(_num(r.test.get(m)) for m in metrics),
                _num(r.params_trained),
                _num(r.wall_s),
                _num(r.kwh),
                r.error or "",
            ]
        )
    return buf.getvalue()
