"""`medtl finetune`: build a RunConfig from flags, run it (or resume it), print phases and metrics.

Each flag sets one RunConfig field (``FIELDS``); its help text and default come from that field's
model (RunConfig, or the objective's config for --task, --class-weights, --label-smoothing and
--monitor), filled in only when `medtl finetune --help` is shown, so `medtl --help` stays light.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import click
import typer
from rich.table import Table
from typer.core import TyperCommand

from medtl_cli.app import console, load_cli_settings, make_progress
from medtl_cli.options import (
    AllowPartialOpt,
    BackboneOpt,
    BatchSizeOpt,
    DataOpt,
    DeviceOpt,
    ImageSizeOpt,
    InitOpt,
    MinLoadedFractionOpt,
    NormaliseOpt,
    SeedOpt,
    SplitOpt,
    WorkersOpt,
)

if TYPE_CHECKING:
    from medtl.engine import RunResult

# flag parameter -> RunConfig field ("objective.<key>": a key of the objective's section)
FIELDS = {
    "data": "data",
    "backbone": "backbone",
    "init": "init",
    "strategy": "strategy",
    "split": "split",
    "task": "objective.task",
    "fraction": "fraction",
    "allow_partial": "allow_partial",
    "min_loaded_fraction": "min_loaded_fraction",
    "in_chans": "in_chans",
    "epochs_scale": "epochs_scale",
    "phase_epochs": "phase_epochs",
    "lr": "lr",
    "batch_size": "batch_size",
    "grad_accum": "grad_accum",
    "workers": "num_workers",
    "image_size": "image_size",
    "augment": "augment",
    "normalise": "normalise",
    "class_weights": "objective.class_weights",
    "label_smoothing": "objective.label_smoothing",
    "scheduler": "scheduler",
    "warmup": "warmup_epochs",
    "monitor": "objective.monitor",
    "patience": "patience",
    "amp": "amp",
    "channels_last": "channels_last",
    "compile_model": "compile",
    "deterministic": "deterministic",
    "bootstrap": "bootstrap",
    "seed": "seed",
    "device": "device",
    "out": "out",
    "run_name": "run_name",
    "allow_leakage": "allow_leakage",
    "verify": "verify",
    "wait": "wait",
}
# Fields whose flag value passes through the user settings (flag > env MEDTL_TRAIN__* > file > default).
SETTINGS = {"seed": "seed", "device": "device", "num_workers": "num_workers", "batch_size": "batch_size"}
# Flags that only the classification objective has: giving one chooses it.
CLASSIFICATION_FLAGS = ("task", "class_weights", "label_smoothing")


class FinetuneCommand(TyperCommand):
    """Fills each option's help from its model field when help is shown (see the module docstring)."""

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        describe_flags(self.params)
        super().format_help(ctx, formatter)


def describe_flags(params: list[click.Parameter]) -> None:
    from pydantic_core import PydanticUndefined

    from medtl.engine import RunConfig
    from medtl.objectives import ClassificationConfig

    for param in params:
        path = FIELDS.get(param.name or "")
        if path is None:
            continue
        section, _, key = path.rpartition(".")
        info = (ClassificationConfig if section else RunConfig).model_fields[key]
        text = info.description or ""
        if info.default not in (None, PydanticUndefined) and not isinstance(info.default, bool):
            text += f" (default: {info.default})"
        param.help = text  # type: ignore[attr-defined]


StrategyOpt = Annotated[Optional[str], typer.Option("--strategy")]
RunsOpt = Annotated[Optional[Path], typer.Option("--out", "-o")]
TaskOpt = Annotated[Optional[str], typer.Option("--task")]
FractionOpt = Annotated[Optional[float], typer.Option("--fraction")]
InChansOpt = Annotated[Optional[int], typer.Option("--in-chans")]
EpochsScaleOpt = Annotated[Optional[float], typer.Option("--epochs-scale")]
EpochsOpt = Annotated[
    Optional[list[str]], typer.Option("--epochs", metavar="PHASE=N", help="epochs of one phase (repeatable)")
]
LrOpt = Annotated[Optional[float], typer.Option("--lr")]
GradAccumOpt = Annotated[Optional[int], typer.Option("--grad-accum")]
AugmentOpt = Annotated[Optional[str], typer.Option("--augment")]
ClassWeightsOpt = Annotated[Optional[str], typer.Option("--class-weights")]
LabelSmoothingOpt = Annotated[Optional[float], typer.Option("--label-smoothing")]
SchedulerOpt = Annotated[Optional[str], typer.Option("--scheduler")]
WarmupOpt = Annotated[Optional[float], typer.Option("--warmup")]
MonitorOpt = Annotated[Optional[str], typer.Option("--monitor")]
PatienceOpt = Annotated[Optional[int], typer.Option("--patience")]
AmpOpt = Annotated[Optional[str], typer.Option("--amp")]
ChannelsLastOpt = Annotated[bool, typer.Option("--channels-last")]
CompileOpt = Annotated[bool, typer.Option("--compile")]
DeterministicOpt = Annotated[bool, typer.Option("--deterministic")]
BootstrapOpt = Annotated[Optional[int], typer.Option("--bootstrap")]
RunNameOpt = Annotated[Optional[str], typer.Option("--run-name")]
AllowLeakageOpt = Annotated[bool, typer.Option("--allow-leakage")]
VerifyOpt = Annotated[bool, typer.Option("--verify")]
FinetuneWaitOpt = Annotated[bool, typer.Option("--wait")]


def finetune(
    data: DataOpt,
    backbone: BackboneOpt = None,  # type: ignore[assignment]
    init: InitOpt = None,  # type: ignore[assignment]
    strategy: StrategyOpt = None,
    split: SplitOpt = None,
    task: TaskOpt = None,
    fraction: FractionOpt = None,
    allow_partial: AllowPartialOpt = False,
    min_loaded_fraction: MinLoadedFractionOpt = None,
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
    allow_leakage: AllowLeakageOpt = False,
    verify: VerifyOpt = False,
    wait: FinetuneWaitOpt = False,
) -> None:
    """Fine-tune a backbone on a store with a strategy; rerunning the same command resumes."""
    flags = dict(locals())
    from medtl.engine import RunConfig, run

    flags.update(phase_epochs=_phase_epochs(phase_epochs), class_weights=_class_weights(class_weights))
    config = RunConfig.parse(config_values(flags), source="finetune options")
    with make_progress() as progress:
        result = run(config, progress=progress)
    _print_result(result)


def config_values(flags: dict[str, Any]) -> dict[str, Any]:
    """RunConfig values of the flags given (others fall to settings and the models' defaults)."""
    values: dict[str, Any] = {}
    objective: dict[str, Any] = {}
    for name, value in flags.items():
        path = FIELDS.get(name)
        if path is None or value is None or value is False:
            continue
        section, _, key = path.rpartition(".")
        (objective if section else values)[key] = value
    train = {setting: values.pop(field, None) for field, setting in SETTINGS.items()}
    settings = load_cli_settings(train={**train, "runs_dir": values.pop("out", None)})
    values.update({field: getattr(settings.train, setting) for field, setting in SETTINGS.items()})
    values.update(out=settings.train.runs_dir, weights_dir=settings.paths.weights_dir)
    if any(flags.get(name) is not None for name in CLASSIFICATION_FLAGS):
        objective["kind"] = "classification"
    if objective:
        values["objective"] = objective
    return values


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


def _print_result(result: RunResult) -> None:
    record = result.metrics
    table = Table(
        "phase",
        "epochs",
        "trainable",
        "total",
        "cached",
        f"best val {record.monitor}",
        "kWh",
        title=str(result.run_dir),
    )
    for phase in record.phases:
        epochs = f"{phase.epochs_run}/{phase.epochs}" + (" (early stop)" if phase.stopped_early else "")
        table.add_row(
            phase.name,
            epochs,
            f"{phase.trainable_params:,}",
            f"{phase.total_params:,}",
            "yes" if phase.cached_features else "no",
            _fmt(phase.best_monitor),
            f"{phase.kwh:.3g}",
        )
    console.print(table)
    _print_partitions(result)
    energy = record.energy
    note = " (estimated)" if energy.estimated else ""
    console.print(
        f"energy {energy.kwh:.3g} kWh via {energy.method}{note}; run {result.run_dir}", highlight=False
    )


def _print_partitions(result: RunResult) -> None:
    """Validation and test scalars (the first four the objective reports), with the test CIs."""
    record = result.metrics
    parts = {name: p for name, p in (("val", record.val), ("test", record.test)) if p is not None}
    if not parts:
        return
    names = list(next(iter(parts.values())).scalars())
    shown = [n for n in ("auroc", "accuracy", "balanced_accuracy", "f1") if n in names] or names[:4]
    if not shown:  # an objective whose partitions have a loss only (SimCLR without labels, the Adaptor)
        table = Table("split", "samples", "loss", title="metrics (best)")
        for name, part in parts.items():
            table.add_row(name, str(part.num_samples), _fmt(part.loss))
        console.print(table)
        return
    titles = {"auroc": "AUROC", "balanced_accuracy": "balanced acc.", "f1": "F1 (macro)"}
    headers = [titles.get(shown[0], shown[0]), "95% CI", *(titles.get(n, n) for n in shown[1:])]
    table = Table("split", *headers, title="metrics (best)")
    for name, part in parts.items():
        ci = (part.ci95 or {}).get(shown[0])
        ci_text = f"{_fmt(ci[0], 3)}–{_fmt(ci[1], 3)}" if ci else "-"
        table.add_row(name, _fmt(part.get(shown[0])), ci_text, *(_fmt(part.get(n)) for n in shown[1:]))
    console.print(table)
