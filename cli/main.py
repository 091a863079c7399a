"""The `medtl` console script: composes one Typer app per command group.

Command modules import heavy libraries (torch, timm, MONAI) inside the commands, so that
`medtl --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from medtl import __version__
from medtl_cli import (
    config_cmd,
    data,
    doctor,
    evaluate,
    extract,
    finetune,
    models,
    prepare,
    pretrain,
    probe,
    quickstart,
    report,
    runs,
    strategies,
    sweep,
)
from medtl_cli.app import MedtlGroup, setup_logging, state

app = typer.Typer(
    cls=MedtlGroup,
    help="medtl: transfer learning for medical images.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"medtl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    config: Annotated[
        Optional[Path], typer.Option("--config", help="settings file (default: ./medtl.toml when present)")
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="print the version")
    ] = False,
) -> None:
    """Prepare datasets, transfer pretrained backbones, evaluate and report."""
    state["config_file"] = config
    setup_logging()


# The workflow's order: prepare -> data -> models/strategies -> finetune -> extract/probe -> evaluate
# -> sweep -> report; then doctor and config.
app.command("quickstart")(quickstart.quickstart)
app.add_typer(prepare.app, name="prepare")
app.add_typer(data.app, name="data")
app.add_typer(models.app, name="models")
app.add_typer(strategies.app, name="strategies")
app.command("finetune", cls=finetune.FinetuneCommand)(finetune.finetune)
app.command("extract")(extract.extract)
app.command("probe")(probe.probe)
app.command("evaluate")(evaluate.evaluate)
app.add_typer(pretrain.app, name="pretrain")
app.add_typer(runs.app, name="runs")
app.add_typer(sweep.app, name="sweep")
app.command("report")(report.report)
app.command("doctor")(doctor.doctor)
app.add_typer(config_cmd.app, name="config")


def main() -> None:
    app()
