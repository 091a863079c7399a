"""The `medtl` console script: composes one Typer app per command group.

Command modules import heavy libraries (torch, timm, MONAI) inside the commands, so that
`medtl --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from medtl import __version__
from medtl_cli import config_cmd
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


app.add_typer(config_cmd.app, name="config")
# command groups are registered below, one line each


def main() -> None:
    app()
