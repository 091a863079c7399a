"""`medtl data`: what a store holds, patient-level splits, and leakage checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from medtl_cli.app import console, err_console, load_cli_settings, make_progress, new_app
from medtl_cli.options import OverwriteOpt, SeedOpt, SplitOpt, StorePath

app = new_app("Inspect a prepared store, split it by patient, check splits for leakage.")

SplitOutOpt = Annotated[
    Optional[Path], typer.Option("--out", "-o", help="split file to write (default: <store>.split.json)")
]
FoldsOpt = Annotated[Optional[int], typer.Option("--folds", "-k", help="k of the patient-level k-fold")]
ValFoldOpt = Annotated[int, typer.Option("--val-fold", help="fold used for validation (-1: none)")]
TestFoldOpt = Annotated[int, typer.Option("--test-fold", help="fold used for testing (-1: none)")]
ValOpt = Annotated[
    Optional[float], typer.Option("--val", help="validation fraction (fraction split instead of k-fold)")
]
TestOpt = Annotated[
    Optional[float], typer.Option("--test", help="test fraction (fraction split instead of k-fold)")
]
FractionOpt = Annotated[
    Optional[float],
    typer.Option(
        "--fraction", help="keep this share of each class of the training part (few-shot), in (0, 1]"
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the result as JSON")]
_MAX_ROWS = 20


@app.command("info")
def info(path: StorePath, split: SplitOpt = None, as_json: JsonOpt = False) -> None:
    """Counts per class and per split, patients, shape, dtype and normalisation of a store."""
    from medtl.data.info import store_info

    summary = store_info(path, split)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    _print_info(summary)


@app.command("split")
def split(
    path: StorePath,
    folds: FoldsOpt = None,
    val_fold: ValFoldOpt = 0,
    test_fold: TestFoldOpt = 1,
    val: ValOpt = None,
    test: TestOpt = None,
    fraction: FractionOpt = None,
    seed: SeedOpt = None,
    out: SplitOutOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Split a store by patient: stratified k-fold, or train/val/test fractions with --val/--test."""
    from medtl.data.info import store_info
    from medtl.data.splits import split_store
    from medtl.errors import ConfigError

    if folds is not None and (val is not None or test is not None):
        raise ConfigError("choose a k-fold split (--folds) or fractions (--val/--test), not both")
    settings = load_cli_settings(data={"folds": folds, "seed": seed}).data
    _, written = split_store(
        path,
        folds=settings.folds,
        val_fold=val_fold,
        test_fold=test_fold,
        val=val,
        test=test,
        fraction=fraction,
        seed=settings.seed,
        out=out,
        overwrite=overwrite,
    )
    _print_info(store_info(path, written), header=False)
    console.print(f"wrote {written}", highlight=False, soft_wrap=True)


@app.command("check")
def check(path: StorePath, split: SplitOpt = None) -> None:
    """Verify every file against the manifest; report non-finite pixels, patients in more than one
    partition and duplicated images; exit code 2 on any of them."""
    from medtl.data.info import check_store

    with make_progress() as progress:
        report = check_store(path, split, progress=progress)
    console.print(f"[bold]{report.store}[/]: {report.num_samples} images", highlight=False, soft_wrap=True)
    console.print(
        f"checksums match the manifest: {', '.join(report.verified)}", highlight=False, soft_wrap=True
    )
    if report.uncovered:
        console.print(
            f"[yellow]not covered by any checksum[/] (a store from an older medtl; prepare it again): "
            f"{', '.join(report.uncovered)}",
            highlight=False,
            soft_wrap=True,
        )
    split_text = report.split or "none (only duplicates are checked)"
    console.print(f"split: {split_text}", highlight=False, soft_wrap=True)
    _print_leaks(report)
    console.print(
        f"{len(report.patient_leaks)} leaking patients, {len(report.duplicates)} groups of identical images "
        f"({len(report.cross_partition_duplicates)} across partitions), "
        f"{report.blank_images} blank images not compared, "
        f"{len(report.nonfinite_images)} images with non-finite pixels",
        highlight=False,
    )
    if report.nonfinite_images:
        err_console.print(
            f"[bold red]error:[/] {report.store}/images.npy: {report.nonfinite_pixels} pixels in "
            f"{len(report.nonfinite_images)} images are NaN or infinite (first: image "
            f"{report.nonfinite_images[0]}); prepare the store again with another normalisation",
            highlight=False,
            soft_wrap=True,
        )
    if report.leakage:
        err_console.print(
            f"[bold red]error:[/] {report.split}: leakage between partitions "
            f"({len(report.patient_leaks)} patients, {len(report.cross_partition_duplicates)} image groups)",
            highlight=False,
            soft_wrap=True,
        )
    if report.problems:
        raise typer.Exit(2)
    console.print("[green]no leakage[/]")


def _print_leaks(report: Any) -> None:
    if report.patient_leaks:
        table = Table("patient", "partitions (samples)", title="patients in more than one partition")
        for leak in report.patient_leaks[:_MAX_ROWS]:
            table.add_row(leak["patient"], ", ".join(f"{p} ({n})" for p, n in leak["partitions"].items()))
        console.print(table)
        _more(len(report.patient_leaks))
    if report.duplicates:
        table = Table("images", "patients", "partitions", "leak", title="identical images")
        for dup in report.duplicates[:_MAX_ROWS]:
            table.add_row(
                _short(dup["indices"]),
                _short(dup["patients"]),
                ", ".join(dup["partitions"]) or "-",
                "yes" if dup["cross_partition"] else "",
            )
        console.print(table)
        _more(len(report.duplicates))


def _print_info(summary: dict[str, Any], header: bool = True) -> None:
    if header:
        overview = Table("store", str(summary["path"]), show_header=True)
        rows = [
            ("task", summary["task"]),
            ("samples", f"{summary['num_samples']:,}"),
            ("patients", f"{summary['num_patients']:,}"),
            ("shape (C, H, W)", " x ".join(str(s) for s in summary["shape"])),
            ("dtype", str(summary["dtype"])),
            ("normalisation", str(summary["normalisation"])),
        ]
        if summary.get("skipped"):
            rows.append(("skipped at prepare", str(summary["skipped"])))
        for row in rows:
            overview.add_row(*row)
        console.print(overview)

    split = summary["split"]
    parts = split["partitions"] if split else {}
    counts = Table("class", "all", *parts, title="samples per class")
    for name, total in summary["counts"].items():
        counts.add_row(name, f"{total:,}", *(f"{p['counts'].get(name, 0):,}" for p in parts.values()))
    if summary["counts"]:
        console.print(counts)
    if split:
        params = ", ".join(f"{k}={v}" for k, v in split["params"].items() if v is not None)
        few = split.get("few_shot")
        line = f"split {split['path']}: {split['method']} ({params}), seed {split['seed']}"
        if few:
            line += f", few-shot fraction {few['fraction']} of {few['train_before']:,} training samples"
        table = Table("partition", "samples", "patients")
        for name, p in parts.items():
            table.add_row(name, f"{p['samples']:,}", f"{p['patients']:,}")
        console.print(line, highlight=False, soft_wrap=True)
        console.print(table)
    elif header:
        console.print("no split file (make one with `medtl data split`)", highlight=False)


def _short(items: list[Any], n: int = 6) -> str:
    text = ", ".join(str(i) for i in items[:n])
    return text + (f" (+{len(items) - n})" if len(items) > n else "")


def _more(total: int) -> None:
    if total > _MAX_ROWS:
        console.print(f"... and {total - _MAX_ROWS} more", highlight=False)
