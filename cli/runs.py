"""`medtl runs lineage RUN`: which run's weights a run started from, back to the first init."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medtl_cli.app import console, new_app

app = new_app("Look at runs: where their weights came from.")

RunArg = Annotated[Path, typer.Argument(help="a run directory")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the chain as JSON")]


@app.command("lineage")
def lineage(run: RunArg, as_json: JsonOpt = False) -> None:
    """The chain of runs whose weights RUN started from, newest first, with each one's kWh."""
    from medtl.pretrain.lineage import lineage as chain_of
    from medtl.pretrain.lineage import total_kwh

    chain = chain_of(run)
    if as_json:
        typer.echo(json.dumps([step.as_dict() for step in chain], indent=2))
        return
    table = Table("", "run", "objective", "strategy", "backbone", "status", "kWh", "init", title=str(run))
    for depth, step in enumerate(chain):
        if step.run_dir is None:
            table.add_row("", f"[dim]start: {step.init}[/]", "", "", "", "", "", "")
            continue
        kwh = "-" if step.kwh is None else f"{step.kwh:.3g}"
        table.add_row(
            "↑" * min(depth, 1),
            step.run_dir.name,
            step.objective or "-",
            step.strategy or "-",
            step.backbone or "-",
            step.status or "-",
            kwh,
            step.init,
        )
    console.print(table)
    total = total_kwh(chain)
    if total is not None:
        console.print(f"energy of the chain: {total:.3g} kWh", highlight=False)
