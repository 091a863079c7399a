"""`medtl evaluate RUN --data STORE`: test a run on its own or an external store, optionally under
corruptions; prints the metrics and writes evaluation_<name>.json into the run directory."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.table import Table

from medtl_cli.app import console, load_cli_settings, make_progress
from medtl_cli.options import BatchSizeOpt, DataOpt, DeviceOpt, SeedOpt, WorkersOpt

if TYPE_CHECKING:
    from medtl.objectives.base import PartitionMetrics

RunArg = Annotated[Path, typer.Argument(help="run directory (runs/<run id>)")]
PartitionOpt = Annotated[
    Optional[str],
    typer.Option(
        "--split", help="train | val | test | all (default: test on the run's store, all on an external one)"
    ),
]
TtaOpt = Annotated[Optional[str], typer.Option("--tta", help="test-time augmentation: hflip | tencrop")]
ClassMapOpt = Annotated[
    Optional[Path],
    typer.Option("--class-map", help="JSON/TOML {external class: run class}; unmapped classes are dropped"),
]
RobustnessOpt = Annotated[
    bool, typer.Option("--robustness", help="also score every corruption at severities 1-5")
]
CorruptionsOpt = Annotated[
    Optional[str], typer.Option("--corruptions", help="comma-separated corruptions (default: all)")
]
BootstrapOpt = Annotated[
    int, typer.Option("--bootstrap", help="bootstrap resamples (by patient) of the 95% CIs; 0: none")
]
CheckpointOpt = Annotated[str, typer.Option("--checkpoint", help="best | last")]
VerifyOpt = Annotated[
    bool,
    typer.Option("--verify", help="hash every byte of the store first (otherwise only when new to the run)"),
]
NameOpt = Annotated[
    Optional[str], typer.Option("--name", help="evaluation_<name>.json (default: <store>-<split>[-<tta>])")
]
# Scalars shown first, in this order.
SCALARS = (
    "auroc",
    "accuracy",
    "balanced_accuracy",
    "precision",
    "recall",
    "f1",
    "sensitivity",
    "specificity",
)


def evaluate(
    run: RunArg,
    data: DataOpt,
    split: PartitionOpt = None,
    tta: TtaOpt = None,
    class_map: ClassMapOpt = None,
    robustness: RobustnessOpt = False,
    corruptions: CorruptionsOpt = None,
    bootstrap: BootstrapOpt = 1000,
    checkpoint: CheckpointOpt = "best",
    name: NameOpt = None,
    verify: VerifyOpt = False,
    batch_size: BatchSizeOpt = None,
    workers: WorkersOpt = None,
    device: DeviceOpt = None,
    seed: SeedOpt = None,
) -> None:
    """Evaluate a run on a store (its test split, or an external store with --class-map)."""
    from medtl.evaluate.evaluate import evaluate_run

    train = load_cli_settings(train={"device": device, "seed": seed}).train
    with make_progress() as progress:
        result = evaluate_run(
            run,
            data,
            split=split,
            tta=tta,
            class_map=class_map,
            robustness=robustness,
            corruptions=[c.strip() for c in corruptions.split(",") if c.strip()] if corruptions else None,
            bootstrap=bootstrap,
            checkpoint=checkpoint,
            device=train.device,
            batch_size=batch_size,
            num_workers=workers,
            seed=train.seed,
            name=name,
            verify=verify,
            progress=progress,
        )
    where = "external store" if result.external else "the run's store"
    title = f"{result.run_dir.name} on {result.store} ({where}, {result.split}, {result.num_samples} samples)"
    _print_metrics(result.metrics, title)
    _print_classes(result.metrics)
    if result.dropped:
        dropped = ", ".join(f"{c} ({n})" for c, n in result.dropped.items())
        console.print(f"dropped external classes without a run class: {dropped}", highlight=False)
    if result.robustness is not None:
        _print_robustness(result.robustness.rows, result.robustness.summary)
    console.print(f"wrote {result.path}", highlight=False)


def _fmt(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def _print_metrics(metrics: PartitionMetrics, title: str) -> None:
    ci = metrics.ci95 or {}
    table = Table("metric", "value", "95% CI", title=title)
    values = metrics.scalars()
    # The usual order first, then whatever else the objective reports.
    for name in [n for n in SCALARS if n in values] + [n for n in values if n not in SCALARS]:
        low_high = ci.get(name)
        table.add_row(
            name, _fmt(values[name]), f"{_fmt(low_high[0])} - {_fmt(low_high[1])}" if low_high else ""
        )
    console.print(table)


def _print_classes(metrics: PartitionMetrics) -> None:
    table = Table("class", "samples", "AUROC", "precision", "recall", "F1")
    for i, name in enumerate(metrics["class_names"]):
        table.add_row(
            name,
            str(metrics["support"][i]),
            _fmt(metrics["auroc_per_class"][i]),
            _fmt(metrics["precision_per_class"][i]),
            _fmt(metrics["recall_per_class"][i]),
            _fmt(metrics["f1_per_class"][i]),
        )
    console.print(table)
    if metrics["auroc_skipped"]:
        console.print(f"AUROC undefined (one target value only): {', '.join(metrics['auroc_skipped'])}")


def _print_robustness(rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    metric = summary["metric"]
    severities = sorted({r["severity"] for r in rows if r["severity"] > 0})
    title = (
        f"{metric} under corruption (clean {_fmt(summary['clean'])}, mean drop {_fmt(summary['mean_drop'])})"
    )
    table = Table(title=title, caption="columns: severity")
    table.add_column("corruption", no_wrap=True)
    for s in severities:
        table.add_column(str(s), justify="right")
    table.add_column("mean drop", justify="right", no_wrap=True)
    for name, stats in summary["per_corruption"].items():
        cells = {r["severity"]: r[metric] for r in rows if r["corruption"] == name}
        table.add_row(name, *(_fmt(cells.get(s)) for s in severities), _fmt(stats["mean_drop"]))
    console.print(table)
