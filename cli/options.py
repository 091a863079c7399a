"""Option definitions shared by every command, so each flag is spelled the same everywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

StorePath = Annotated[Path, typer.Argument(help="a prepared store (directory written by `medtl prepare`)")]
DataOpt = Annotated[Path, typer.Option("--data", "-d", help="a prepared store directory")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="output directory")]
OptionalOutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="output path")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="random seed")]
WorkersOpt = Annotated[Optional[int], typer.Option("--workers", "-j", help="parallel worker processes")]
StrictOpt = Annotated[
    Optional[bool], typer.Option("--strict/--skip-bad", help="stop at the first bad input (default: skip it)")
]
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite", help="replace an existing output (only one medtl wrote, or an empty directory)"
    ),
]
WaitOpt = Annotated[
    bool,
    typer.Option("--wait", help="when another command is writing the output, wait for it instead of failing"),
]
SplitOpt = Annotated[Optional[Path], typer.Option("--split", help="split file (default: <store>.split.json)")]
DtypeOpt = Annotated[Optional[str], typer.Option("--dtype", help="pixel dtype in the store: float16 | uint8")]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="auto | cpu | cuda")]
BatchSizeOpt = Annotated[Optional[int], typer.Option("--batch-size", "-b", help="samples per step")]
BackboneOpt = Annotated[str, typer.Option("--backbone", help="backbone name (`medtl models list`)")]
InitOpt = Annotated[
    str, typer.Option("--init", help="random | imagenet | a checkpoint file | a finished run's directory")
]
AllowPartialOpt = Annotated[bool, typer.Option("--allow-partial", help="go on with backbone weights missing")]
MinLoadedFractionOpt = Annotated[
    Optional[float],
    typer.Option(
        "--min-loaded-fraction",
        help="with --allow-partial, the least share of the backbone's weights that must load (default 0.5)",
    ),
]
ImageSizeOpt = Annotated[Optional[int], typer.Option("--image-size", help="resize images to this size")]
NormaliseOpt = Annotated[
    Optional[str], typer.Option("--normalise", help="imagenet | clip | half | minmax | none")
]
