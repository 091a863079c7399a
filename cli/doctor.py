"""`medtl doctor`: a table of what this machine offers medtl; exit 1 when a required part is missing."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from medtl_cli.app import console

RequireOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--require",
        help="fail also without: gpu, nvml, rapl, slurm, apptainer, docker, podman, charliecloud, weights "
        "(repeat or comma-separate)",
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="print only the failed checks (health checks)")]


def doctor(require: RequireOpt = None, quiet: QuietOpt = False) -> None:
    """Check Python, torch, CUDA/GPUs, NVML, RAPL, SLURM, container runtimes, folders and weights."""
    from medtl.doctor import MISSING, OK, diagnose

    wanted = [part.strip() for item in require or [] for part in item.split(",") if part.strip()]
    checks = diagnose(wanted)
    failed = [c for c in checks if c.failed]
    if not quiet:
        table = Table("check", "status", "details", "needed for", title="medtl doctor")
        for c in checks:
            colour = "green" if c.status == OK else ("red" if c.failed else "yellow")
            label = "MISSING (required)" if c.failed else ("not found" if c.status == MISSING else c.status)
            table.add_row(c.name, f"[{colour}]{label}[/]", c.detail, c.needed_by)
        console.print(table)
    for c in failed:
        console.print(f"[red]missing:[/] {c.name}: {c.detail}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)
    if not quiet:
        console.print("everything required is here", highlight=False)
