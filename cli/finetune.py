"""`medtl finetune`: build a RunConfig from flags, run it (or resume it), print phases and metrics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from medtl_cli.app import console, load_cli_settings, make_progress
from medtl_cli.options import (
    AllowPartialOpt,
    BackboneOpt,
    BatchSizeOpt,
    DataOpt,
    DeviceOpt,
    ImageSizeOpt,
    InitOpt,
    NormaliseOpt,
    SeedOpt,
    SplitOpt,
    WorkersOpt,
)

StrategyOpt = Annotated[str, typer.Option("--strategy", help="built-in strategy or a strategy .toml file")]
RunsOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="runs directory (default: settings)")]


TaskOpt = Annotated[Optional[str], typer.Option("--task", help="auto | binary | multiclass | multilabel")]
FractionOpt = Annotated[
    Optional[float], typer.Option("--fraction", help="few-shot: fraction of each training class")
]
InChansOpt = Annotated[
    Optional[int], typer.Option("--in-chans", help="model input channels (default: the store's)")
]
EpochsScaleOpt = Annotated[
    Optional[float], typer.Option("--epochs-scale", help="multiply every phase's epochs")
]
EpochsOpt = Annotated[
    Optional[list[str]], typer.Option("--epochs", help="epochs of one phase as NAME=N (repeatable)")
]
LrOpt = Annotated[
    Optional[float], typer.Option("--lr", help="first phase's learning rate (later phases keep their ratio)")
]
GradAccumOpt = Annotated[
    Optional[int], typer.Option("--grad-accum", help="forward passes per optimiser step")
]
AugmentOpt = Annotated[
    Optional[str],
    typer.Option(
        "--augment", help="none | flip | light | default, or names: crop,hflip,vflip,rotate,intensity"
    ),
]
ClassWeightsOpt = Annotated[
    Optional[str], typer.Option("--class-weights", help="none | balanced | comma-separated weights")
]
LabelSmoothingOpt = Annotated[Optional[float], typer.Option("--label-smoothing", help="label smoothing")]
SchedulerOpt = Annotated[
    Optional[str], typer.Option("--scheduler", help="cosine | plateau | exponential | none")
]
WarmupOpt = Annotated[
    Optional[float], typer.Option("--warmup", help="warmup epochs at the start of each phase")
]
MonitorOpt = Annotated[
    Optional[str],
    typer.Option("--monitor", help="validation metric for best checkpoint and early stopping, or loss"),
]
PatienceOpt = Annotated[Optional[int], typer.Option("--patience", help="early stopping patience in epochs")]
AmpOpt = Annotated[Optional[str], typer.Option("--amp", help="none | bf16 | fp16 (CUDA)")]
ChannelsLastOpt = Annotated[bool, typer.Option("--channels-last", help="channels-last memory format (CUDA)")]
CompileOpt = Annotated[bool, typer.Option("--compile", help="torch.compile the model")]
DeterministicOpt = Annotated[
    bool, typer.Option("--deterministic", help="deterministic algorithms (exact resume)")
]
BootstrapOpt = Annotated[
    Optional[int], typer.Option("--bootstrap", help="bootstrap resamples of the test CIs")
]
RunNameOpt = Annotated[
    Optional[str], typer.Option("--run-name", help="run directory name (default: the run id)")
]


def finetune(
    data: DataOpt,
    backbone: BackboneOpt = "resnet50",
    init: InitOpt = "imagenet",
    strategy: StrategyOpt = "linear",
    split: SplitOpt = None,
    task: TaskOpt = None,
    fraction: FractionOpt = None,
    allow_partial: AllowPartialOpt = False,
    in_chans: InChansOpt = None,
    epochs_scale: EpochsScaleOpt = None,
    phase_epochs: EpochsOpt = None,
    lr: LrOpt = None,
    batch_size: BatchSizeOpt = None,
    grad_accum: GradAccumOpt = None,
    workers: WorkersOpt = None,
    image_size: ImageSizeOpt = None,
    augment: AugmentOpt = None,
    normalise: NormaliseOpt = None,
    class_weights: ClassWeightsOpt = None,
    label_smoothing: LabelSmoothingOpt = None,
    scheduler: SchedulerOpt = None,
    warmup: WarmupOpt = None,
    monitor: MonitorOpt = None,
    patience: PatienceOpt = None,
    amp: AmpOpt = None,
    channels_last: ChannelsLastOpt = False,
    compile_model: CompileOpt = False,
    deterministic: DeterministicOpt = False,
    bootstrap: BootstrapOpt = None,
    seed: SeedOpt = None,
    device: DeviceOpt = None,
    out: RunsOpt = None,
    run_name: RunNameOpt = None,
) -> None:
    """Fine-tune a backbone on a store with a strategy; rerunning the same command resumes."""
    from medtl.engine import RunConfig, run

    settings = load_cli_settings(
        train={
            "seed": seed,
            "device": device,
            "num_workers": workers,
            "batch_size": batch_size,
            "runs_dir": out,
        }
    )
    flags = {
        "task": task,
        "split": split,
        "fraction": fraction,
        "in_chans": in_chans,
        "epochs_scale": epochs_scale,
        "phase_epochs": _phase_epochs(phase_epochs),
        "lr": lr,
        "grad_accum": grad_accum,
        "image_size": image_size,
        "augment": augment,
        "normalise": normalise,
        "class_weights": _class_weights(class_weights),
        "label_smoothing": label_smoothing,
        "scheduler": scheduler,
        "warmup_epochs": warmup,
        "monitor": monitor,
        "patience": patience,
        "amp": amp,
        "bootstrap": bootstrap,
        "run_name": run_name,
    }
    config = RunConfig.parse(
        {
            "data": data,
            "backbone": backbone,
            "init": init,
            "strategy": strategy,
            "allow_partial": allow_partial,
            "channels_last": channels_last,
            "compile": compile_model,
            "deterministic": deterministic,
            "seed": settings.train.seed,
            "device": settings.train.device,
            "num_workers": settings.train.num_workers,
            "batch_size": settings.train.batch_size,
            "out": settings.train.runs_dir,
            "weights_dir": settings.paths.weights_dir,
            **{k: v for k, v in flags.items() if v is not None},
        },
        source="finetune options",
    )
    with make_progress() as progress:
        result = run(config, progress=progress)
    _print_result(result)


def _phase_epochs(values: list[str] | None) -> dict[str, int] | None:
    from medtl.errors import ConfigError

    if not values:
        return None
    out = {}
    for item in values:
        name, sep, number = item.partition("=")
        if not sep or not number.strip().isdigit():
            raise ConfigError(f"--epochs '{item}': expected PHASE=N, e.g. head=10")
        out[name.strip()] = int(number)
    return out


def _class_weights(value: str | None) -> str | list[float] | None:
    from medtl.errors import ConfigError

    if value is None or value in ("none", "balanced"):
        return value
    try:
        return [float(v) for v in value.split(",")]
    except ValueError:
        raise ConfigError(
            f"--class-weights '{value}': expected none, balanced or numbers like 1,2.5"
        ) from None


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _print_result(result: Any) -> None:
    monitor = result.metrics.get("monitor", "auroc")
    table = Table(
        "phase",
        "epochs",
        "trainable",
        "total",
        "cached",
        f"best val {monitor}",
        "kWh",
        title=str(result.run_dir),
    )
    for phase in result.phases:
        epochs = f"{phase['epochs_run']}/{phase['epochs']}" + (
            " (early stop)" if phase["stopped_early"] else ""
        )
        best = next((v for k, v in phase.items() if k.startswith("best_")), None)
        table.add_row(
            phase["name"],
            epochs,
            f"{phase['trainable_params']:,}",
            f"{phase['total_params']:,}",
            "yes" if phase["cached_features"] else "no",
            _fmt(best),
            f"{phase['kwh']:.3g}",
        )
    console.print(table)
    metrics = Table(
        "split", "AUROC", "95% CI", "accuracy", "balanced acc.", "F1 (macro)", title="metrics (best)"
    )
    for name in ("val", "test"):
        m = getattr(result, name)
        if m:
            ci = m.get("ci95", {}).get("auroc")
            ci_text = f"{_fmt(ci[0], 3)}–{_fmt(ci[1], 3)}" if ci else "-"
            metrics.add_row(
                name,
                _fmt(m["auroc"]),
                ci_text,
                _fmt(m["accuracy"]),
                _fmt(m["balanced_accuracy"]),
                _fmt(m["f1"]),
            )
    console.print(metrics)
    energy = result.metrics.get("energy", {})
    note = " (estimated)" if energy.get("estimated") else ""
    console.print(
        f"energy {energy.get('kwh', 0):.3g} kWh via {energy.get('method', '?')}{note}; run {result.run_dir}",
        highlight=False,
    )
