"""`medtl extract RUN_OR_BACKBONE --data STORE --out DIR`: pooled features per split, for `medtl probe`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medtl_cli.app import console, load_cli_settings, make_progress
from medtl_cli.options import (
    AllowPartialOpt,
    BatchSizeOpt,
    DataOpt,
    DeviceOpt,
    ImageSizeOpt,
    InitOpt,
    MinLoadedFractionOpt,
    NormaliseOpt,
    OutOpt,
    OverwriteOpt,
    SplitOpt,
    WorkersOpt,
)

SourceArg = Annotated[
    str, typer.Argument(help="a run directory (its best weights) or a backbone name (see --init)")
]


def extract(
    source: SourceArg,
    data: DataOpt,
    out: OutOpt,
    split: SplitOpt = None,
    init: InitOpt = "imagenet",
    allow_partial: AllowPartialOpt = False,
    min_loaded_fraction: MinLoadedFractionOpt = None,
    image_size: ImageSizeOpt = None,
    normalise: NormaliseOpt = "imagenet",
    batch_size: BatchSizeOpt = None,
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Write features_<split>.npy, labels_<split>.npy, index_<split>.csv and features.json to OUT."""
    from medtl.engine import export_features
    from medtl.io.features import read_features_meta

    settings = load_cli_settings(train={"device": device, "num_workers": workers, "batch_size": batch_size})
    with make_progress() as progress:
        written = export_features(
            source,
            data,
            out,
            split=split,
            init=init,
            allow_partial=allow_partial,
            min_loaded_fraction=0.5 if min_loaded_fraction is None else min_loaded_fraction,
            weights_dir=settings.paths.weights_dir,
            image_size=image_size,
            normalise=normalise,
            batch_size=settings.train.batch_size,
            num_workers=settings.train.num_workers,
            device=settings.train.device,
            overwrite=overwrite,
            progress=progress,
        )
    meta = read_features_meta(written)
    table = Table("split", "samples", "dim", title=f"{meta['backbone']} features of {Path(data).name}")
    for name, count in meta["splits"].items():
        table.add_row(name, str(count), str(meta["dim"]))
    console.print(table)
    console.print(f"wrote {written}", highlight=False)
