"""`medtl extract RUN_OR_BACKBONE --data STORE --out DIR`: pooled features per split, for `medtl probe`;
with `--reports FILE --text-encoder DIR`, image and text embeddings for Adaptor pretraining."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

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
    StrictOpt,
    WorkersOpt,
)

ReportsOpt = Annotated[
    Optional[Path],
    typer.Option("--reports", help="CSV/JSONL of report texts keyed by sample: embed images and texts"),
]
TextEncoderOpt = Annotated[
    Optional[str],
    typer.Option("--text-encoder", help="local Hugging Face directory, or bert | biobert | pubmedbert | ..."),
]
TextPoolingOpt = Annotated[str, typer.Option("--text-pooling", help="pooler | cls | mean")]
KeyOpt = Annotated[
    str, typer.Option("--key", help="reports column matched with samples.csv (auto, source_file, ...)")
]
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
    reports: ReportsOpt = None,
    text_encoder: TextEncoderOpt = None,
    text_pooling: TextPoolingOpt = "pooler",
    key: KeyOpt = "auto",
    strict: StrictOpt = False,
) -> None:
    """Write features_<split>.npy, labels_<split>.npy, index_<split>.csv and features.json to OUT;
    with --reports, image_<split>.npy, text_<split>.npy and embeddings.json (Adaptor pretraining)."""
    from medtl.engine import export_features
    from medtl.io.features import read_features_meta

    settings = load_cli_settings(train={"device": device, "num_workers": workers, "batch_size": batch_size})
    if reports is not None or text_encoder is not None:
        _extract_embeddings(
            source,
            data,
            out,
            reports=reports,
            text_encoder=text_encoder,
            options={
                "split": split,
                "key": key,
                "strict": strict,
                "text_pooling": text_pooling,
                "init": init,
                "allow_partial": allow_partial,
                "weights_dir": settings.paths.weights_dir,
                "image_size": image_size,
                "normalise": normalise,
                "batch_size": settings.train.batch_size,
                "num_workers": settings.train.num_workers,
                "device": settings.train.device,
                "overwrite": overwrite,
            },
        )
        return
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


def _extract_embeddings(
    source: str, data: Path, out: Path, *, reports: Path | None, text_encoder: str | None, options: dict
) -> None:
    from medtl.errors import ConfigError
    from medtl.io.embeddings import read_embeddings_meta
    from medtl.pretrain.embeddings import export_embeddings

    if reports is None or text_encoder is None:
        raise ConfigError("image-text embeddings need both --reports FILE and --text-encoder DIR")
    with make_progress() as progress:
        written = export_embeddings(source, data, reports, text_encoder, out, progress=progress, **options)
    meta = read_embeddings_meta(written)
    title = (
        f"image ({meta['vision']['dim']}) and text ({meta['text']['dim']}) embeddings of {Path(data).name}"
    )
    table = Table("split", "pairs", title=title)
    for name, count in meta["splits"].items():
        table.add_row(name, str(count))
    console.print(table)
    skipped = meta["reports"]["skipped"]
    console.print(f"{skipped} samples without a report skipped; wrote {written}", highlight=False)
