"""`medtl quickstart`: the whole study on a phantom BraTS dataset in minutes, to an HTML report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medtl_cli.app import console, make_progress

QuickOutOpt = Annotated[Path, typer.Option("--out", "-o", help="folder of the study (reused when run again)")]
QuickWorkersOpt = Annotated[
    int, typer.Option("--workers", "-j", help="runs trained at once (one CPU core each)")
]


def quickstart(out: QuickOutOpt = Path("quickstart"), workers: QuickWorkersOpt = 2) -> None:
    """The whole study in minutes: phantom BraTS -> prepare -> split -> 4 strategies x 2 seeds -> report."""
    from medtl.quickstart import run_quickstart

    with make_progress() as progress:
        result = run_quickstart(out, workers=workers, progress=progress)
    from medtl_cli.report import show

    show(result.report)
    if result.reused:
        console.print(f"reused from an earlier quickstart: {', '.join(result.reused)}", highlight=False)
    timing = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    console.print(f"{len(result.started)} runs trained ({timing})", highlight=False)
    console.print(f"[bold]open the report:[/] {result.report.html}", highlight=False, soft_wrap=True)
