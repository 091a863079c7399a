"""The local executor: runs one after another in this process, or N worker processes at once.

Each worker process owns a slot: its GPUs (``CUDA_VISIBLE_DEVICES``, set before torch starts) or
its share of the CPU threads (``OMP_NUM_THREADS``), so N runs never fight over one device. A run's
log lines go to ``<run dir>/sweep.log``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medtl.errors import ConfigError
from medtl.sweep.job import RunRecord, error_line, record_of, run_one
from medtl.sweep.locks import LockedError
from medtl.sweep.registry import LOCAL_LOG

log = logging.getLogger("medtl")

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class Slot:
    """What one worker process may use."""

    index: int
    gpus: tuple[str, ...] = ()
    threads: int | None = None

    def environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(self.gpus)
        if self.threads:
            env.update({name: str(self.threads) for name in THREAD_VARS})
        return env


def plan_slots(
    workers: int | None, *, gpus: Sequence[str] = (), gpus_per_run: int = 1, cpus: int | None = None
) -> list[Slot]:
    """Worker slots: one GPU group each when GPUs are given, else an equal share of the CPU threads."""
    if gpus_per_run > 1 and not gpus:
        raise ConfigError("--gpus-per-run > 1 locally needs --gpus (the devices to share out)")
    if gpus:
        groups = [tuple(gpus[i : i + gpus_per_run]) for i in range(0, len(gpus), gpus_per_run)]
        groups = [g for g in groups if len(g) == gpus_per_run]
        if not groups:
            raise ConfigError(f"--gpus {','.join(gpus)} has fewer than --gpus-per-run {gpus_per_run} devices")
        workers = workers or len(groups)
        if workers > len(groups):
            raise ConfigError(
                f"{workers} workers need {workers * gpus_per_run} GPUs; --gpus gives {len(gpus)}"
            )
        return [Slot(i, groups[i]) for i in range(workers)]
    workers = workers or 1
    if workers < 1:
        raise ConfigError("--workers must be at least 1")
    cpus = cpus or os.cpu_count() or 1
    return [Slot(i, (), max(1, cpus // workers)) for i in range(workers)]


@contextmanager
def _log_to(path: Path):
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger = logging.getLogger("medtl")
    logger.addHandler(handler)
    level = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


def _run_logged(run_dir: str) -> RunRecord:
    with _log_to(Path(run_dir) / LOCAL_LOG):
        return run_one(run_dir, executor="local")


_slot: Slot | None = None


def _init_worker(slots: Any) -> None:
    global _slot
    _slot = slots.get()
    os.environ.update(_slot.environment())


def _worker_run(run_dir: str) -> RunRecord:
    record = _run_logged(run_dir)
    if _slot is not None and _slot.gpus:
        record.host = f"{record.host} (GPU {','.join(_slot.gpus)})"
    return record


Report = Callable[[RunRecord], None]


def run_local(
    run_dirs: Sequence[Path], slots: Sequence[Slot], *, report: Report | None = None
) -> list[RunRecord]:
    """Run every run directory; a failed run is recorded and the others go on."""
    report = report or (lambda record: None)
    records: list[RunRecord] = []
    if len(slots) <= 1:
        env = slots[0].environment() if slots else {}
        os.environ.update({k: v for k, v in env.items() if k == "CUDA_VISIBLE_DEVICES"})
        for run_dir in run_dirs:
            try:
                record = _run_logged(str(run_dir))
            except Exception as exc:  # recorded in status.json by run_one; the sweep goes on
                record = _failed(run_dir, exc)
            records.append(record)
            report(record)
        return records
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter per worker: env set before torch
    queue = ctx.Queue()
    for slot in slots:
        queue.put(slot)
    with ProcessPoolExecutor(len(slots), mp_context=ctx, initializer=_init_worker, initargs=(queue,)) as pool:
        futures = {pool.submit(_worker_run, str(d)): d for d in run_dirs}
        for future in as_completed(futures):
            try:
                record = future.result()
            except Exception as exc:
                record = _failed(futures[future], exc)
            records.append(record)
            report(record)
    return records


def _failed(run_dir: Path, exc: BaseException) -> RunRecord:
    record = record_of(Path(run_dir))
    if isinstance(exc, LockedError):  # another process started it meanwhile: not a failure
        record.status, record.error = "running elsewhere", str(exc)
        return record
    record.status = "failed"
    record.error = record.error or error_line(exc)
    return record
