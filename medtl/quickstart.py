"""``run_quickstart``: the whole study in minutes on a laptop CPU, from nothing to an HTML report.

phantom BraTS -> ``prepare brats`` -> patient-level split -> a sweep of strategies x seeds with a
tiny backbone, run locally in parallel -> ``medtl report``. Every step keeps what an earlier call
finished (the raw data, the store, the split, finished runs), so running it again is quick and an
interrupted quickstart continues. Only folders it made itself inside ``out`` are ever replaced.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medtl.data.splits import default_split_path, split_store
from medtl.errors import InputError
from medtl.io.converters.brats import BratsOptions, convert_brats
from medtl.io.converters.phantom import write_phantom_brats
from medtl.io.store import Store
from medtl.progress import NULL_PROGRESS, Progress
from medtl.report.build import REPORT_MARKER, ReportResult, build_report
from medtl.sweep import LocalOptions, plan_sweep, run_sweep

SWEEP_NAME = "quickstart"
SPEC_FILE = "quickstart.toml"
# The study the quickstart runs (measured on 2 CPU cores: docs/benchmarks.md). 40 phantom subjects
# give 10 test patients per fold; 32 px slices and resnet18 keep a run within a minute or two.
SUBJECTS = 40
SHAPE = (64, 64, 24)
IMAGE_SIZE = 32
STRATEGIES = ("linear", "l1sb", "progressive", "full")
SEEDS = (0, 1)
EPOCHS_SCALE = 0.1
LR = 1e-3


@dataclass
class QuickstartResult:
    out: Path
    store: Path
    sweep_dir: Path
    report: ReportResult
    started: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def spec_text(
    store: Path, split: Path, strategies: Sequence[str], seeds: Sequence[int], epochs_scale: float
) -> str:
    """The quickstart's sweep spec (TOML), written beside the study so a user can edit and rerun it."""
    quoted = ", ".join(f'"{s}"' for s in strategies)
    return f'''# The quickstart's study: which transfer strategy grades LGG vs HGG best, and at what cost?
# Edit and run it yourself: medtl sweep run {SPEC_FILE} ; medtl report runs/{SWEEP_NAME}
name = "{SWEEP_NAME}"
description = "phantom BraTS T1 grading: {len(strategies)} strategies x {len(seeds)} seeds, resnet18"
out = "runs"

[base]
data = "{store}"
split = "{split}"
backbone = "resnet18"
init = "random"
lr = {LR}
epochs_scale = {epochs_scale}
batch_size = 32
num_workers = 0
device = "cpu"
bootstrap = 1000

[base.objective]
class_weights = "balanced"   # tumour slices: more HGG than LGG

[grid]
strategy = [{quoted}]
seed = [{", ".join(str(s) for s in seeds)}]
'''


def _raw(out: Path, subjects: int, progress: Progress) -> tuple[Path, bool]:
    raw = out / "raw" / "brats"
    if raw.is_dir() and (raw / "name_mapping.csv").is_file():
        return raw, True
    write_phantom_brats(raw, subjects=subjects, shape=SHAPE, seed=0, progress=progress)
    return raw, False


def _store(out: Path, raw: Path, workers: int, progress: Progress) -> tuple[Path, bool]:
    path = out / "stores" / "brats"
    if path.is_dir():
        Store(path)  # a complete store, or a StoreError naming what is wrong
        return path, True
    options = BratsOptions(modalities=("t1",), labels="grade", size=IMAGE_SIZE)
    convert_brats(raw, path, options, workers=workers, progress=progress)
    return path, False


def _split(store: Path) -> tuple[Path, bool]:
    path = default_split_path(store)
    if path.is_file():
        return path, True
    return split_store(store, folds=4, val_fold=0, test_fold=1, seed=0)[1], False


def run_quickstart(
    out: str | Path = "quickstart",
    *,
    workers: int = 2,
    strategies: Sequence[str] = STRATEGIES,
    seeds: Sequence[int] = SEEDS,
    epochs_scale: float = EPOCHS_SCALE,
    subjects: int = SUBJECTS,
    progress: Progress = NULL_PROGRESS,
) -> QuickstartResult:
    """Run (or continue) the quickstart study in ``out``; see the module docstring."""
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    reused: list[str] = []

    t = time.monotonic()
    raw, kept = _raw(out, subjects, progress)
    reused += ["phantom data"] if kept else []
    store, kept = _store(out, raw, workers, progress)
    reused += ["store"] if kept else []
    split, kept = _split(store)
    reused += ["split"] if kept else []
    seconds["prepare"] = time.monotonic() - t

    spec = out / SPEC_FILE
    if not spec.is_file():
        spec.write_text(spec_text(store, split, strategies, seeds, epochs_scale))
    t = time.monotonic()
    plan = plan_sweep(spec)
    submission = run_sweep(plan, local=LocalOptions(workers=workers, cpus=workers))
    seconds["sweep"] = time.monotonic() - t

    t = time.monotonic()
    report_dir = plan.sweep_dir / "report"
    report = build_report(
        plan.sweep_dir,
        report_dir,
        by=["strategy"],
        baseline=("strategy", "full") if "full" in strategies else None,
        force=(report_dir / REPORT_MARKER).is_file(),
    )
    seconds["report"] = time.monotonic() - t
    return QuickstartResult(out, store, plan.sweep_dir, report, submission.started, reused, seconds)
