"""What the CLI calls: plan, run (locally or on SLURM), status, cancel and logs of a sweep."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medtl.errors import ConfigError, InputError
from medtl.sweep.containers import ContainerSpec, check_image, check_mount_points, prepare_launch
from medtl.sweep.expand import PlannedRun, describe, expand
from medtl.sweep.job import RunRecord, SweepJob, record_of
from medtl.sweep.local import plan_slots, run_local
from medtl.sweep.registry import (
    DONE,
    LOCAL_LOG,
    RunState,
    SweepRegistry,
    read_json,
    select_runs,
    update_run_status,
)
from medtl.sweep.slurm import (
    SlurmProfile,
    accounting,
    cancel,
    make_executor,
    queued_jobs,
    test_submission,
)
from medtl.sweep.spec import SweepSpec, load_spec

log = logging.getLogger("medtl")


def run_config_model():
    """The RunConfig model runs are validated against (imported late: the engine is heavy)."""
    from medtl.engine.run_config import RunConfig

    return RunConfig


@dataclass
class Plan:
    """A spec expanded: where the sweep lives and its runs."""

    spec: SweepSpec
    sweep_dir: Path
    runs: list[PlannedRun]

    @property
    def varying(self) -> list[str]:
        """Axis paths whose value differs between runs."""
        paths = list(self.runs[0].values) if self.runs else []
        return [p for p in paths if len({repr(r.values[p]) for r in self.runs}) > 1]


def plan_sweep(
    spec_path: str | Path, *, out: str | Path | None = None, default_out: Path = Path("runs")
) -> Plan:
    """Read, check and expand a spec; nothing is written."""
    spec = load_spec(spec_path, run_config_model())
    out_dir = Path(out) if out is not None else (spec.out if spec.out is not None else default_out)
    if spec.out is not None and out is None and not spec.out.is_absolute() and spec.source:
        out_dir = spec.source.parent / spec.out
    runs = expand(spec, run_config_model(), out_dir)
    return Plan(spec, Path(out_dir).expanduser().resolve() / spec.name, runs)


# -- checks before anything runs -------------------------------------------------------------------
def check_inputs(runs: Sequence[PlannedRun]) -> None:
    """The stores, split files and checkpoint/strategy files every run reads exist (one line if not)."""
    from medtl.io.store import Store

    seen: set[str] = set()
    for run in runs:
        config = run.config
        data = getattr(config, "data", None)
        if data is not None and str(data) not in seen:
            seen.add(str(data))
            Store(data)  # StoreError naming the folder when it is not a prepared store
        for name in ("split", "init", "strategy"):
            value = getattr(config, name, None)
            if value is None or str(value) in seen:
                continue
            seen.add(str(value))
            path = Path(str(value))
            if (name == "split" or path.is_absolute()) and not path.is_file():
                raise InputError(path, f"{name} file not found (run {describe(run.values)})")


def mounts_for(plan: Plan) -> tuple[list[str], list[str]]:
    """Host paths a containerised job needs at the same place: (read-write, read-only).

    The sweep folder is written; stores, split files, checkpoints, strategy files and the weights
    folder are only read.
    """
    ro: set[str] = set()
    for run in plan.runs:
        for name in ("data", "split", "init", "strategy", "weights_dir"):
            value = getattr(run.config, name, None)
            if value is not None and Path(str(value)).is_absolute() and Path(str(value)).exists():
                ro.add(str(value))
    return [str(plan.sweep_dir)], sorted(ro)


# -- running -------------------------------------------------------------------------------------
@dataclass
class Submission:
    """What ``run_sweep`` did: which runs it started (and where), which it left alone and why."""

    sweep_dir: Path
    started: list[str]
    skipped: dict[str, list[str]]
    executor: str
    job_id: str | None = None
    records: list[RunRecord] = field(default_factory=list)


@dataclass
class LocalOptions:
    workers: int | None = None
    gpus: Sequence[str] = ()
    gpus_per_run: int = 1
    cpus: int | None = None


def _todo(registry: SweepRegistry, plan: Plan, max_retries: int) -> tuple[list[RunState], dict]:
    wanted = {r.run_id for r in plan.runs}
    states = [s for s in registry.states() if s.run_id in wanted]
    # runs once submitted to SLURM may still be queued there, whichever executor runs the rest
    queued = set(queued_jobs()) if any(s.record.get("slurm_job_id") for s in states) else set()
    return select_runs(states, max_retries=max_retries, queued_jobs=queued)


def run_sweep(
    plan: Plan,
    *,
    max_retries: int = 2,
    slurm: SlurmProfile | None = None,
    container: ContainerSpec | None = None,
    local: LocalOptions | None = None,
    cluster: str = "slurm",
    report: Callable[[RunRecord], None] | None = None,
) -> Submission:
    """Run the plan's pending, interrupted and retryable runs: locally, or as ONE SLURM array job.

    Everything that can be checked is checked before anything is written or submitted.
    """
    check_inputs(plan.runs)
    if container is not None:
        if slurm is None:
            raise ConfigError("--container runs SLURM jobs inside a container: add --slurm")
        check_image(container)
        rw, ro = mounts_for(plan)
        check_mount_points(container, [*rw, *ro, *container.binds])
    if slurm is not None and cluster == "slurm":
        test_submission(slurm)
    slots = None
    if slurm is None:
        local = local or LocalOptions()
        slots = plan_slots(local.workers, gpus=local.gpus, gpus_per_run=local.gpus_per_run, cpus=local.cpus)

    registry = SweepRegistry(plan.sweep_dir)
    with registry.lock():
        registry.record(plan.spec, plan.runs)
        todo, skipped = _todo(registry, plan, max_retries)
        run_dirs = [s.run_dir for s in todo]
        if not run_dirs:
            return Submission(plan.sweep_dir, [], skipped, "slurm" if slurm else "local")
        if slurm is not None:
            return _submit(registry, plan, todo, skipped, slurm, container, cluster)
    # Local runs go on without the sweep lock (each holds its run's lock), so `status` can read meanwhile.
    registry.add_submission({"executor": "local", "run_ids": [s.run_id for s in todo]})
    records = run_local(run_dirs, slots or [], report=report)
    return Submission(plan.sweep_dir, [s.run_id for s in todo], skipped, "local", records=records)


def _submit(
    registry: SweepRegistry,
    plan: Plan,
    todo: list[RunState],
    skipped: dict,
    profile: SlurmProfile,
    container: ContainerSpec | None,
    cluster: str,
) -> Submission:
    launch = None
    if container is not None:
        rw, ro = mounts_for(plan)
        spec = container.model_copy(update={"gpus": container.gpus or profile.gpus_per_run > 0})
        launch = prepare_launch(spec, registry.slurm_dir / "bin", rw, ro)
    executor = make_executor(
        registry.slurm_dir, profile, f"medtl-{plan.spec.name}", launch=launch, cluster=cluster
    )
    size = profile.runs_per_task
    chunks = [[str(s.run_dir) for s in todo[i : i + size]] for i in range(0, len(todo), size)]
    jobs = executor.map_array(SweepJob(), chunks)
    array_id = str(jobs[0].job_id).split("_")[0]
    for chunk, job in zip(chunks, jobs):
        for run_dir in chunk:
            update_run_status(Path(run_dir), status="pending", slurm_job_id=str(job.job_id), error=None)
    registry.add_submission(
        {
            "executor": "slurm" if cluster == "slurm" else cluster,
            "job_id": array_id,
            "run_ids": [s.run_id for s in todo],
            "container": container.model_dump(mode="json") if container else None,
            "profile": profile.model_dump(mode="json"),
        }
    )
    submission = Submission(plan.sweep_dir, [s.run_id for s in todo], skipped, cluster, job_id=array_id)
    if cluster == "debug":  # in-process: run them now (tests)
        for chunk, job in zip(chunks, jobs):
            try:
                submission.records.extend(job.result())
            except Exception:
                submission.records.extend(record_of(Path(d)) for d in chunk)
    return submission


# -- status, cancel, logs ----------------------------------------------------------------------------
@dataclass
class RunStatus:
    """One row of `medtl sweep status`."""

    run_id: str
    values: dict[str, Any]
    state: str
    attempts: int
    host: str | None
    elapsed: str | None
    job_id: str | None
    slurm_state: str | None
    monitor: str | None
    best: float | None
    error: str | None


ENDED_BADLY = ("FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL")


def sweep_status(sweep_dir: str | Path) -> list[RunStatus]:
    """Every run of the sweep from its run directory, merged with squeue/sacct for SLURM jobs."""
    registry = SweepRegistry.open(sweep_dir)
    values = registry.run_values()
    states = registry.states()
    job_ids = [str(s.record.get("slurm_job_id")) for s in states if s.record.get("slurm_job_id")]
    # squeue is current; sacct lags it by seconds but remembers finished jobs
    jobs = {**accounting(job_ids), **queued_jobs()} if job_ids else {}
    return [_row(registry, state, values.get(state.run_id, {}), jobs) for state in states]


def _row(registry: SweepRegistry, state: RunState, values: dict[str, Any], jobs: dict) -> RunStatus:
    rec = state.record
    job = str(rec.get("slurm_job_id") or "")
    info = jobs.get(job, {})
    metrics = read_json(state.run_dir / "metrics.json") or {}
    best = (metrics.get("best") or {}).get("value")
    status, error, slurm_state = state.status, rec.get("error"), info.get("state")
    if status == "pending" and slurm_state == "RUNNING":
        status = "starting"
    if status in ("pending", "interrupted") and slurm_state in (*ENDED_BADLY, "COMPLETED"):
        # the job ended before the run could say why (import error, out of memory, cancelled)
        status = "cancelled" if slurm_state == "CANCELLED" else "failed"
        error = error or _job_error(registry, job) or f"SLURM job {job} ended {slurm_state}"
    return RunStatus(
        run_id=state.run_id,
        values=values,
        state="done" if status == DONE else status,
        attempts=int(rec.get("attempts", 0)),
        host=rec.get("host") or info.get("node") or None,
        elapsed=info.get("elapsed") or _seconds(rec.get("wall_time_s")),
        job_id=job or None,
        slurm_state=slurm_state,
        monitor=metrics.get("monitor"),
        best=best if isinstance(best, (int, float)) else None,
        error=error if status != DONE else None,
    )


def _seconds(value: Any) -> str | None:
    if not isinstance(value, (int, float)):
        return None
    minutes, seconds = divmod(round(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}"


def job_logs(registry: SweepRegistry, job_id: str) -> list[Path]:
    """submitit's stdout and stderr files of one array task (``<array>_<task>``)."""
    folder = registry.slurm_dir
    return [p for p in (folder / f"{job_id}_0_log.out", folder / f"{job_id}_0_log.err") if p.is_file()]


def _job_error(registry: SweepRegistry, job_id: str) -> str | None:
    """The last error-looking line of a job's stderr (for jobs that died before the run could say)."""
    for path in job_logs(registry, job_id):
        if path.suffix != ".err":
            continue
        lines = [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]
        for line in reversed(lines):
            if "Error" in line or "error" in line:
                return line[-300:]
    return None


def cancel_sweep(sweep_dir: str | Path) -> list[str]:
    """scancel the sweep's SLURM jobs that are still queued or running; returns their ids."""
    registry = SweepRegistry.open(sweep_dir)
    arrays = [s["job_id"] for s in registry.manifest().get("submissions", []) if s.get("job_id")]
    live = queued_jobs()
    active = sorted({j for j in arrays if any(k == j or k.startswith(f"{j}_") for k in live)})
    cancel(active)
    if active:
        registry.update_submissions(active, cancelled=True)
    for state in registry.states():
        job = str(state.record.get("slurm_job_id", ""))
        if state.status == "pending" and job.split("_")[0] in active and not state.locked:
            update_run_status(state.run_dir, status="cancelled")
    return active


def run_logs(run: str | Path) -> list[Path]:
    """The log files of a run (its latest SLURM job's stdout/stderr, or its local log)."""
    run_dir = Path(run).expanduser().resolve()
    if not run_dir.is_dir():
        raise InputError(run_dir, "run directory not found")
    registry = SweepRegistry(run_dir.parent)
    status = read_json(run_dir / "status.json") or {}
    paths: list[Path] = []
    job = status.get("slurm_job_id")
    if job:
        paths += job_logs(registry, str(job))
    if (run_dir / LOCAL_LOG).is_file():
        paths.append(run_dir / LOCAL_LOG)
    if not paths:
        raise InputError(run_dir, "no logs yet (the run has not started)")
    return paths
