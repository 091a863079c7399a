"""The converter driver shared by every `medtl prepare` source.

A converter lists its jobs (one per subject or file, each with a stable key) and gives a
top-level ``load(job) -> Unit`` function. ``convert`` runs the loads (in worker processes when
``workers > 1``), streams each unit into the StoreWriter in job order, skips units already
written by an interrupted run, and turns ``SkipSample`` into a report entry or, with
``strict``, into an error that leaves nothing behind. A unit whose pixels are not finite (a
normalisation that overflowed the store's dtype) is skipped and reported, never written.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from medtl.errors import InputError, SkipSample
from medtl.io.store import SampleRecord, StoreWriter
from medtl.progress import NULL_PROGRESS, Progress


@dataclass
class Unit:
    """What one job produced: ``n`` samples in store layout."""

    key: str
    images: np.ndarray  # (n, C, H, W), store dtype
    samples: list[SampleRecord]
    labels: np.ndarray | None = None
    masks: np.ndarray | None = None


@dataclass
class Job:
    key: str  # stable id (subject folder, file path): what resuming skips by
    payload: Any  # what load() needs; must pickle
    path: str = ""  # file or folder to name when the job is skipped
    files: tuple[str, ...] = ()  # the input files it reads (default: ``path``), checked on resume

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.files or ((self.path,) if self.path else ())


@dataclass
class PrepareSummary:
    store: Path
    samples: int
    units: int
    resumed_units: int
    skipped: list[dict[str, str]] = field(default_factory=list)

    def line(self) -> str:
        text = f"{self.store}: {self.samples} samples from {self.units} inputs"
        if self.resumed_units:
            text += f" ({self.resumed_units} already done by an earlier run)"
        return text + f", {len(self.skipped)} skipped (see prepare_report.json)"


def _run_load(load: Callable[[Any], Unit | None], job: Job) -> tuple[str, Any]:
    try:
        return "ok", load(job.payload)
    except SkipSample as skip:
        return "skip", (skip.path, skip.reason)


def _results(
    load: Callable[[Any], Unit | None], jobs: Sequence[Job], workers: int
) -> Iterator[tuple[str, Any]]:
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield _run_load(load, job)
        return
    # Not fork: a caller (a notebook, the test suite) may have started threads, e.g. torch's
    # OpenMP pool, and a forked child can deadlock on their locks. A fork server is clean and
    # costs one interpreter start per conversion.
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    ctx = multiprocessing.get_context(method)
    workers = min(workers, len(jobs))
    loader, todo = _Loader(load), iter(jobs)
    with ctx.Pool(workers) as pool:
        # Results are taken in job order, so the store is identical whatever the worker count.
        # At most 2 x workers jobs are in flight: Pool.imap would queue every finished unit
        # while the writer lags, so memory would grow with the dataset.
        window = deque(pool.apply_async(loader, (job,)) for job in islice(todo, 2 * workers))
        while window:
            result = window.popleft().get()
            job = next(todo, None)
            if job is not None:
                window.append(pool.apply_async(loader, (job,)))
            yield result


def _check_finite(unit: Unit, job: Job) -> tuple[str, Any]:
    """("ok", unit), or ("skip", ...) when a float image holds NaN or Inf (e.g. float16 overflow)."""
    if unit.images.dtype.kind != "f":
        return "ok", unit
    bad = unit.images.size - int(np.count_nonzero(np.isfinite(unit.images)))
    if not bad:
        return "ok", unit
    reason = (
        f"{bad} of {unit.images.size} pixels are not finite in the store's {unit.images.dtype} "
        "(values too large for it after normalisation); choose --norm minmax or another normalisation"
    )
    return "skip", (job.path or job.key, reason)


class _Loader:
    def __init__(self, load: Callable[[Any], Unit | None]) -> None:
        self.load = load

    def __call__(self, job: Job) -> tuple[str, Any]:
        return _run_load(self.load, job)


def convert(
    jobs: Sequence[Job],
    load: Callable[[Any], Unit | None],
    writer: StoreWriter,
    *,
    workers: int = 1,
    strict: bool = False,
    progress: Progress = NULL_PROGRESS,
    description: str = "converting",
) -> PrepareSummary:
    """Run every job into ``writer`` (an entered StoreWriter) and finish the store.

    ``load`` must be a module-level function (or functools.partial of one) so worker processes
    can receive it. It returns a Unit, None for a job that yields no samples, or raises SkipSample.
    """
    keys = [job.key for job in jobs]
    if len(set(keys)) != len(keys):
        raise ValueError("job keys must be unique")
    if writer.notice:
        progress.message(writer.notice)
    pending = [job for job in jobs if not writer.done(job.key)]
    task = progress.start(description, total=len(jobs))
    if len(pending) < len(jobs):
        progress.advance(task, len(jobs) - len(pending))
    results = _results(load, pending, workers)
    completed = False
    try:
        for job, (kind, result) in zip(pending, results):
            if kind == "ok" and result is not None:
                kind, result = _check_finite(result, job)
            if kind == "skip":
                path, reason = result
                if strict:
                    raise InputError(path, reason)
                progress.message(f"skipped {path}: {reason}")
                writer.skip(job.key, path, reason)
            elif result is None:
                writer.skip(job.key, job.path or job.key, "no samples selected")
            else:
                writer.add(job.key, result.images, result.samples, result.labels, result.masks)
            progress.advance(task)
        completed = True
    except InputError:
        writer.abort()
        raise
    finally:
        results.close()  # stops the worker pool now, not when the generator is collected
        progress.end(task, interrupted=not completed)
    out = writer.finish()
    summary = PrepareSummary(out, writer.rows, len(jobs), writer.resumed_units, list(writer.skipped))
    progress.message(summary.line())
    return summary
