"""Reports of a sweep: runs grouped by factors, tests of difference, tables, figures, one HTML page."""

from medtl.report.aggregate import Aggregate, Comparison, GroupRow, aggregate, parse_baseline
from medtl.report.build import ReportResult, build_report
from medtl.report.reader import read_run, read_run_table
from medtl.report.records import RunRecord, RunTable

__all__ = [
    "Aggregate",
    "Comparison",
    "GroupRow",
    "ReportResult",
    "RunRecord",
    "RunTable",
    "aggregate",
    "build_report",
    "parse_baseline",
    "read_run",
    "read_run_table",
]
