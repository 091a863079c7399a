"""`medtl pretrain simclr|dapt|adaptor`: the pretraining routes; each run exports what `--init` loads."""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from medtl_cli import finetune as finetune_cmd
from medtl_cli.app import console, make_progress, new_app
from medtl_cli.options import (
    AllowPartialOpt,
    BackboneOpt,
    BatchSizeOpt,
    DeviceOpt,
    InitOpt,
    SeedOpt,
    WorkersOpt,
)

app = new_app("Pretrain backbones: SimCLR, domain-adaptive (DAPT), the vision-language Adaptor.")

StoresOpt = Annotated[
    list[str],
    typer.Option("--data", "-d", help="store to pretrain on; repeat to mix stores, STORE:WEIGHT weighs one"),
]
EpochsOpt = Annotated[Optional[int], typer.Option("--epochs", help="epochs of pretraining")]
LrOpt = Annotated[Optional[float], typer.Option("--lr", help="learning rate (SimCLR: of LARS)")]
RunsOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="runs directory (default: settings)")]
RunNameOpt = Annotated[Optional[str], typer.Option("--run-name", help="run directory name (default: the id)")]
TemperatureOpt = Annotated[Optional[float], typer.Option("--temperature", help="NT-Xent temperature")]
ProjectorOpt = Annotated[Optional[str], typer.Option("--projector", help="mlp | study")]
ProjectionDimOpt = Annotated[Optional[int], typer.Option("--projection-dim", help="projector output size")]
AugmentOnOpt = Annotated[Optional[str], typer.Option("--augment-on", help="device | workers")]
ViewSizeOpt = Annotated[Optional[int], typer.Option("--view-size", help="side of each view")]
BlurOpt = Annotated[bool, typer.Option("--blur", help="add Gaussian blur (the study left it out)")]
LocalOpt = Annotated[bool, typer.Option("--local-negatives", help="negatives of this rank only (DDP)")]
MonitorOpt = Annotated[Optional[str], typer.Option("--monitor", help="loss | knn_accuracy | knn_auroc | ...")]
PatienceOpt = Annotated[Optional[int], typer.Option("--patience", help="early stopping patience in epochs")]
KnnEveryOpt = Annotated[
    Optional[int], typer.Option("--knn-every", help="k-NN monitor every N epochs (default 5; and at the end)")
]
WarmupOpt = Annotated[Optional[float], typer.Option("--warmup", help="warmup epochs")]
EmbeddingsOpt = Annotated[Path, typer.Option("--embeddings", help="directory of `medtl extract --reports`")]


def _run_options(values: dict[str, Any]) -> dict[str, Any]:
    """Settings-backed fields (seed, device, workers, batch size, runs dir) as finetune resolves them."""
    return finetune_cmd.config_values(values)


@app.command("simclr")
def simclr(
    data: StoresOpt,
    backbone: BackboneOpt = "resnet50",
    init: InitOpt = "random",
    allow_partial: AllowPartialOpt = False,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    warmup: WarmupOpt = None,
    batch_size: BatchSizeOpt = None,
    temperature: TemperatureOpt = None,
    projector: ProjectorOpt = None,
    projection_dim: ProjectionDimOpt = None,
    augment_on: AugmentOnOpt = None,
    view_size: ViewSizeOpt = None,
    blur: BlurOpt = False,
    local_negatives: LocalOpt = False,
    monitor: MonitorOpt = None,
    knn_every: KnnEveryOpt = None,
    patience: PatienceOpt = None,
    workers: WorkersOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    out: RunsOpt = None,
    run_name: RunNameOpt = None,
) -> None:
    """SimCLR on one store or several mixed; writes <run>/export/backbone.safetensors and projector."""
    from medtl.pretrain.simclr import pretrain_simclr, simclr_config

    section = {
        "temperature": temperature,
        "projector": projector,
        "projection_dim": projection_dim,
        "augment_on": augment_on,
        "view_size": view_size,
        "blur": blur or None,
        "gather": False if local_negatives else None,
        "monitor": monitor,
        "knn_every": knn_every,
    }
    base = _run_options(
        {"batch_size": batch_size, "workers": workers, "seed": seed, "device": device, "out": out}
    )
    config = simclr_config(
        data,
        backbone=backbone,
        init=init,
        allow_partial=allow_partial,
        epochs=epochs,
        lr=lr,
        warmup=warmup,
        patience=patience,
        run_name=run_name,
        objective={k: v for k, v in section.items() if v is not None},
        base=base,
    )
    with make_progress() as progress:
        result, exported = pretrain_simclr(config, progress=progress)
    finetune_cmd._print_result(result)
    console.print(f"backbone for --init: {exported}", highlight=False)


@app.command("adaptor")
def adaptor(
    embeddings: EmbeddingsOpt,
    epochs: EpochsOpt = None,
    lr: LrOpt = None,
    batch_size: BatchSizeOpt = None,
    patience: PatienceOpt = None,
    monitor: MonitorOpt = None,
    workers: WorkersOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    out: RunsOpt = None,
    run_name: RunNameOpt = None,
) -> None:
    """Train the Adaptor on cached image and text embeddings (no encoder runs); early stopping on
    validation loss. Writes <run>/export/adaptor.safetensors."""
    from medtl.pretrain.adaptor import adaptor_config, pretrain_adaptor

    base = _run_options(
        {"batch_size": batch_size, "workers": workers, "seed": seed, "device": device, "out": out}
    )
    config = adaptor_config(
        embeddings, epochs=epochs, lr=lr, patience=patience, monitor=monitor, run_name=run_name, base=base
    )
    with make_progress() as progress:
        result, exported = pretrain_adaptor(config, progress=progress)
    finetune_cmd._print_result(result)
    console.print(f"adaptor: {exported}", highlight=False)


def dapt(**flags: Any) -> None:
    """Domain-adaptive pretraining: a supervised run with a DA preset (DA, DA_L1SB, ..., DA_TF_F2B) on a
    source store, then its backbone (truncated where the strategy truncates) for --init."""
    from medtl.engine import RunConfig
    from medtl.pretrain.dapt import pretrain_dapt

    flags.update(
        phase_epochs=finetune_cmd._phase_epochs(flags.get("phase_epochs")),
        class_weights=finetune_cmd._class_weights(flags.get("class_weights")),
    )
    config = RunConfig.parse(finetune_cmd.config_values(flags), source="pretrain dapt options")
    with make_progress() as progress:
        result, exported = pretrain_dapt(config, progress=progress)
    finetune_cmd._print_result(result)
    console.print(f"backbone for --init: {exported}", highlight=False)


# `pretrain dapt` takes every `finetune` flag (resolved annotations: Typer reads them from the
# function); its strategy defaults to the study's DA preset.
_hints = typing.get_type_hints(finetune_cmd.finetune, include_extras=True)
_signature = inspect.signature(finetune_cmd.finetune)
dapt.__signature__ = _signature.replace(  # type: ignore[attr-defined]
    parameters=[
        p.replace(annotation=_hints[p.name], default="DA" if p.name == "strategy" else p.default)
        for p in _signature.parameters.values()
    ],
    return_annotation=None,
)
dapt.__annotations__ = {**_hints, "return": None}
app.command("dapt", cls=finetune_cmd.FinetuneCommand)(dapt)
