"""One run of a sweep, wherever it executes: load its config.toml, call ``engine.run``, record.

A job returns a small ``RunRecord`` (the run directory and its headline figures), never the model:
submitit pickles the return value back to the submitter. ``SweepJob`` is submitit-Checkpointable:
on SLURM's warning signal (preemption or time limit) submitit requeues it with the same run
directory, and ``engine.run`` resumes the run from its last checkpoint.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import submitit
from pydantic import BaseModel

from medtl.errors import MedtlError
from medtl.progress import Progress
from medtl.sweep.locks import exclusive
from medtl.sweep.registry import (
    CONFIG_FILE,
    DONE,
    METRICS_FILE,
    read_json,
    read_run_status,
    update_run_status,
)

log = logging.getLogger("medtl")


class RunRecord(BaseModel):
    """What a job hands back: where the run is and how it ended (a few numbers, no tensors)."""

    run_id: str
    run_dir: str
    status: str
    attempts: int = 0
    host: str | None = None
    slurm_job_id: str | None = None
    wall_time_s: float = 0.0
    monitor: str | None = None
    best: float | None = None
    test: dict[str, float] = {}
    error: str | None = None


def record_of(run_dir: Path) -> RunRecord:
    status = read_run_status(run_dir)
    metrics = read_json(run_dir / METRICS_FILE) or {}
    best = metrics.get("best") or {}
    monitor = metrics.get("monitor")
    test = {k: float(v) for k, v in (metrics.get("test") or {}).items() if isinstance(v, (int, float))}
    return RunRecord(
        run_id=status.get("run_id", run_dir.name),
        run_dir=str(run_dir),
        status=status.get("status", "pending"),
        attempts=int(status.get("attempts", 0)),
        host=status.get("host"),
        slurm_job_id=status.get("slurm_job_id"),
        wall_time_s=float(status.get("wall_time_s", 0.0)),
        monitor=monitor,
        best=_best_value(best, monitor),
        test=test,
        error=status.get("error"),
    )


def _best_value(best: dict[str, Any], monitor: str | None) -> float | None:
    for key in (f"val_{monitor}", monitor, "value"):
        if key and isinstance(best.get(key), (int, float)):
            return float(best[key])
    return None


def slurm_job_id(env: dict[str, str] | None = None) -> str | None:
    env = os.environ if env is None else env
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def global_rank(env: dict[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    return int(env.get("RANK") or env.get("SLURM_PROCID") or 0)


def container_kind(env: dict[str, str] | None = None) -> str | None:
    """The container runtime this process runs in, as far as it can tell (None: none)."""
    env = os.environ if env is None else env
    if env.get("APPTAINER_CONTAINER") or env.get("SINGULARITY_CONTAINER"):
        return "apptainer"
    if env.get("CH_RUNNING"):
        return "charliecloud"
    if env.get("MEDTL_IN_CONTAINER") == "1" or Path("/.dockerenv").exists():
        return "docker"  # medtl's image (docker, podman, pyxis/enroot)
    return None


def error_line(exc: BaseException) -> str:
    if isinstance(exc, MedtlError):
        return exc.message + (f" ({exc.hint})" if exc.hint else "")
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


class LogProgress(Progress):
    """Progress as plain log lines (SLURM logs): messages, task starts and ends, and a line a minute."""

    def __init__(self, every: float = 60.0) -> None:
        self.every = every
        self._tasks: dict[int, tuple[str, float, float]] = {}

    def start(self, description: str, total: int | None = None) -> int:
        task = len(self._tasks) + 1
        self._tasks[task] = (description, time.monotonic(), time.monotonic())
        log.info("%s: started%s", description, f" ({total} steps)" if total else "")
        return task

    def advance(self, task: int, n: int = 1, **info: Any) -> None:
        desc, t0, last = self._tasks.get(task, ("task", time.monotonic(), 0.0))
        if time.monotonic() - last >= self.every:
            self._tasks[task] = (desc, t0, time.monotonic())
            log.info("%s: %s", desc, " ".join(f"{k}={v}" for k, v in info.items()))

    def end(self, task: int, *, interrupted: bool = False) -> None:
        desc, t0, _ = self._tasks.get(task, ("task", time.monotonic(), 0.0))
        how = "interrupted after" if interrupted else "done in"
        log.info("%s: %s %.1fs", desc, how, time.monotonic() - t0)

    def message(self, text: str) -> None:
        log.info("%s", text)


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)


def run_one(run_dir: str | Path, *, executor: str = "local") -> RunRecord:
    """Run (or resume, or return) the run in ``run_dir``; raises what the run raised, after recording it."""
    from medtl.engine import RunConfig, run  # torch: only in the process that trains

    run_dir = Path(run_dir)
    config = RunConfig.load(run_dir / CONFIG_FILE)
    if global_rank() != 0:  # DDP: rank 0 owns the run directory
        run(config)
        return record_of(run_dir)
    with exclusive(run_dir, "run"):
        job = slurm_job_id()
        if job is None and executor == "slurm":  # submitit's debug executor: keep the submitted id
            job = read_run_status(run_dir).get("slurm_job_id")
        update_run_status(
            run_dir,
            host=socket.gethostname(),
            pid=os.getpid(),
            executor=executor,
            slurm_job_id=job,
            python=sys.executable,
            container=container_kind(),
            error=None,
        )
        t0 = time.monotonic()
        try:
            run(config, progress=LogProgress())
        except (KeyboardInterrupt, SystemExit) as exc:
            # SystemExit is submitit's exit after requeueing on SLURM's signal: the next attempt resumes.
            _record_end(run_dir, t0, "interrupted", note=f"stopped by {type(exc).__name__}; rerun resumes")
            raise
        except BaseException as exc:
            failures = int(read_run_status(run_dir).get("failures", 0)) + 1
            _record_end(run_dir, t0, "failed", error=error_line(exc), failures=failures)
            raise
        _record_end(run_dir, t0, DONE)
    return record_of(run_dir)


def _record_end(run_dir: Path, t0: float, status: str, **fields: Any) -> None:
    previous = read_run_status(run_dir)
    wall = float(previous.get("wall_time_s", 0.0)) + (time.monotonic() - t0)
    update_run_status(run_dir, status=status, wall_time_s=round(wall, 3), pid=None, **fields)


# -- SLURM ---------------------------------------------------------------------------------------
def make_signal_idempotent(signum: int = signal.SIGUSR2) -> None:
    """Let the first ``signum`` run the installed handler and ignore repeats.

    Apptainer forwards SLURM's USR2 to the job a second time; submitit's handler, run twice, fails
    with "A temporary saved file already exists" while the first one is still saving the job.
    """
    handler = signal.getsignal(signum)
    if not callable(handler) or getattr(handler, "_medtl_once", False):
        return
    fired = False

    def once(sig: int, frame: Any) -> None:
        nonlocal fired
        if fired:
            log.warning("ignoring repeated signal %s", signal.Signals(sig).name)
            return
        fired = True
        handler(sig, frame)

    once._medtl_once = True  # type: ignore[attr-defined]
    signal.signal(signum, once)


# What submitit's TorchDistributedEnvironment.export sets from SLURM's variables.
RENDEZVOUS_VARIABLES = ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")


class SweepJob(submitit.helpers.Checkpointable):
    """The callable submitit runs in each array task: ``SweepJob()(run_dirs)``, one or more runs.

    Several runs per task (``runs_per_task``) share one Python start and torch import. ``checkpoint``
    (inherited) resubmits the same call: the run directories are the whole state, and runs already
    done return at once.
    """

    def __call__(self, run_dirs: str | list[str]) -> list[RunRecord]:
        _setup_logging()
        make_signal_idempotent()
        if int(os.environ.get("SLURM_NTASKS", "1")) > 1:
            # One run on several tasks (--gpus-per-run / --tasks-per-run): torch.distributed from SLURM.
            # sbatch exports the submitter's environment: a rendezvous set there (another tool, a
            # shell that ran DDP before) is not this job's, and submitit refuses to overwrite it.
            for key in RENDEZVOUS_VARIABLES:
                os.environ.pop(key, None)
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        run_dirs = [run_dirs] if isinstance(run_dirs, str) else list(run_dirs)
        if len(run_dirs) == 1:
            return [run_one(run_dirs[0], executor="slurm")]  # its own error ends the task
        records, failed = [], []
        for run_dir in run_dirs:
            try:
                records.append(run_one(run_dir, executor="slurm"))
            except Exception as exc:  # recorded in its status.json; the task's other runs go on
                failed.append(f"{Path(run_dir).name}: {error_line(exc)}")
                records.append(record_of(Path(run_dir)))
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(run_dirs)} runs failed: " + "; ".join(failed))
        return records
