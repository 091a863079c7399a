"""`medtl strategies`: the built-in transfer strategies and what they train on an architecture."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from medtl_cli.app import console, new_app

app = new_app("Transfer strategies: which groups train in which phase (see docs/strategies.md).")

NameArg = Annotated[str, typer.Argument(help="built-in strategy name or a strategy .toml file")]
ArchOpt = Annotated[
    Optional[str],
    typer.Option("--arch", "--backbone", "-a", help="count parameters on this backbone, e.g. resnet50"),
]
ClassesOpt = Annotated[int, typer.Option("--classes", "-k", min=1, help="head outputs (1 for binary)")]
InChansOpt = Annotated[int, typer.Option("--in-chans", min=1, help="input channels")]
TomlOpt = Annotated[bool, typer.Option("--toml", help="print the strategy as TOML (a template for your own)")]


@app.command("list")
def list_() -> None:
    """List the built-in strategies."""
    from medtl.strategies import get_strategy, list_strategies

    table = Table("name", "phases (epochs)", "description")
    for name in list_strategies():
        strategy = get_strategy(name)
        phases = " → ".join(f"{p.name} ({p.epochs})" for p in strategy.phases)
        table.add_row(name, phases, strategy.description)
    console.print(table)


@app.command("show")
def show(
    name: NameArg,
    arch: ArchOpt = None,
    classes: ClassesOpt = 1,
    in_chans: InChansOpt = 3,
    toml: TomlOpt = False,
) -> None:
    """Show a strategy's phases, with total and trainable parameters when --arch is given."""
    from medtl.strategies import describe_strategy, get_strategy, strategy_to_toml

    strategy = get_strategy(name)
    if toml:
        console.print(strategy_to_toml(strategy), markup=False, highlight=False, soft_wrap=True, end="")
        return
    summary = describe_strategy(strategy, arch, classes, in_chans=in_chans) if arch else None

    extras = [f"truncate = {strategy.truncate}"] if strategy.truncate else []
    extras += [f"module = {strategy.module}"] if strategy.module else []
    console.print(f"[bold]{strategy.name}[/]: {strategy.description}", highlight=False)
    if extras:
        console.print(", ".join(extras), highlight=False)
    if summary:
        console.print(
            f"{arch}, {classes} output(s): {summary.num_total:,} parameters in total", highlight=False
        )

    table = Table("phase", "trainable", "epochs", "optimizer", "lr", "wd", "bn")
    if summary:
        table.add_column("trainable params", justify="right", no_wrap=True)
        table.add_column("groups")
    for i, phase in enumerate(strategy.phases):
        row = [phase.name, ", ".join(phase.trainable), str(phase.epochs), phase.optimizer]
        row += [f"{phase.lr:g}", f"{phase.weight_decay:g}", phase.bn]
        if summary:
            resolved = summary.phases[i]
            row += [f"{resolved.num_trainable:,}", ", ".join(resolved.trained_groups)]
        table.add_row(*row)
    console.print(table)
