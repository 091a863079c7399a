"""`medtl probe FEATURES`: train a head on cached features and print its final AUROC."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from medtl_cli.app import console, load_cli_settings, make_progress
from medtl_cli.options import DeviceOpt, OptionalOutOpt, OverwriteOpt, SeedOpt

FeaturesArg = Annotated[Path, typer.Argument(help="features directory written by `medtl extract`")]
HeadOpt = Annotated[
    str,
    typer.Option("--head", help="logreg | linear | mlp-64-32 | mlp-512-256-256-128 (any mlp-<w1>-<w2>-...)"),
]
EpochsOpt = Annotated[int, typer.Option("--epochs", help="training epochs (torch heads)")]
LrOpt = Annotated[
    Optional[float], typer.Option("--lr", help="Adam learning rate (default: 1e-3 linear, 5e-5 MLP)")
]
ProbeBatchOpt = Annotated[int, typer.Option("--batch-size", "-b", help="samples per step")]
PatienceOpt = Annotated[
    Optional[int],
    typer.Option("--patience", help="stop after this many epochs without a better val AUROC; keep the best"),
]
COpt = Annotated[float, typer.Option("--c", help="logreg: inverse L2 regularisation strength")]


def probe(
    features: FeaturesArg,
    head: HeadOpt = "linear",
    epochs: EpochsOpt = 500,
    lr: LrOpt = None,
    batch_size: ProbeBatchOpt = 64,
    patience: PatienceOpt = None,
    c: COpt = 1.0,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    out: OptionalOutOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Train a head on cached features; write curves.csv and probe.json to <FEATURES>/probe-<head>."""
    from medtl.evaluate.probe import ProbeSettings, train_probe

    train = load_cli_settings(train={"seed": seed, "device": device}).train
    settings = ProbeSettings(
        head=head,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        patience=patience,
        c=c,
        seed=train.seed,
        device=train.device,
    )
    with make_progress() as progress:
        result = train_probe(features, settings, out=out, overwrite=overwrite, progress=progress)
    table = Table("head", "task", "epochs", "best epoch", "val AUROC", "test AUROC", title=str(features))
    table.add_row(
        result.head,
        result.task,
        str(len(result.curves)) + (" (stopped early)" if result.stopped_early else ""),
        str(result.best_epoch or "-"),
        _fmt(result.final("val")),
        _fmt(result.final("test")),
    )
    console.print(table)
    console.print(f"wrote {result.out}", highlight=False)


def _fmt(value: float) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"
