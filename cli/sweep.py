"""`medtl sweep`: plan, run (locally or as one SLURM array job), status, cancel and logs of a study.

`medtl sweep SPEC --slurm` is short for `medtl sweep run SPEC --slurm`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import click
import typer
from rich.table import Table
from typer.core import TyperGroup

from medtl_cli.app import console, err_console, load_cli_settings


class SweepGroup(TyperGroup):
    """Lets `medtl sweep SPEC ...` mean `medtl sweep run SPEC ...`."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and not args[0].startswith("-") and args[0] not in self.commands:
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=SweepGroup,
    help="Sweeps: a study in one spec file, run here or as one SLURM array job (`medtl sweep SPEC --slurm`).",
    no_args_is_help=True,
    add_completion=False,
)

SpecArg = Annotated[Path, typer.Argument(help="sweep spec (.toml, or .yaml)")]
SweepDirArg = Annotated[Path, typer.Argument(help="a sweep folder (OUT/<name>, holding sweep.json)")]
OutOpt = Annotated[
    Optional[Path], typer.Option("--out", "-o", help="output folder (default: spec, then settings)")
]
ShowOpt = Annotated[int, typer.Option("--show", help="runs to list (0: all)")]


def _plan(spec: Path, out: Path | None):
    from medtl.sweep import plan_sweep

    settings = load_cli_settings()
    return plan_sweep(spec, out=out, default_out=settings.train.runs_dir), settings


def _runs_table(plan, show: int) -> Table:
    varying = plan.varying
    table = Table("run id", *varying, title=f"{plan.sweep_dir} ({len(plan.runs)} runs)")
    for run in plan.runs[: show or None]:
        table.add_row(run.run_id, *(str(run.values[p]) for p in varying))
    return table


@app.command("plan")
def plan(spec: SpecArg, out: OutOpt = None, show: ShowOpt = 20) -> None:
    """Print the expanded runs (count, ids, the values that vary) without running anything."""
    result, _ = _plan(spec, out)
    console.print(_runs_table(result, show))
    more = len(result.runs) - show if show else 0
    tail = f" ({more} more not shown; --show 0 lists all)" if more > 0 else ""
    console.print(f"{len(result.runs)} runs in {result.sweep_dir}{tail}", highlight=False)


@app.command("run")
def run(
    spec: SpecArg,
    out: OutOpt = None,
    slurm: Annotated[
        bool, typer.Option("--slurm", help="submit ONE SLURM array job (default: run here)")
    ] = False,
    profile: Annotated[
        Optional[str], typer.Option("--profile", help="SLURM profile name or .toml file")
    ] = None,
    partition: Annotated[Optional[str], typer.Option("--partition", help="SLURM partition")] = None,
    account: Annotated[Optional[str], typer.Option("--account", help="SLURM account")] = None,
    qos: Annotated[Optional[str], typer.Option("--qos", help="SLURM quality of service")] = None,
    time: Annotated[Optional[str], typer.Option("--time", help="time limit of one run (HH:MM:SS)")] = None,
    cpus_per_task: Annotated[Optional[int], typer.Option("--cpus-per-task", help="CPUs of each task")] = None,
    mem_gb: Annotated[Optional[float], typer.Option("--mem-gb", help="memory of each task (GB)")] = None,
    gpus_per_run: Annotated[
        Optional[int], typer.Option("--gpus-per-run", help="GPUs of one run (> 1: DDP over SLURM tasks)")
    ] = None,
    tasks_per_run: Annotated[
        Optional[int], typer.Option("--tasks-per-run", help="processes of one run (DDP; default: its GPUs)")
    ] = None,
    parallelism: Annotated[
        Optional[int], typer.Option("--array-parallelism", help="array tasks running at once")
    ] = None,
    runs_per_task: Annotated[
        Optional[int], typer.Option("--runs-per-task", help="runs each array task trains in turn")
    ] = None,
    container: Annotated[
        Optional[str], typer.Option("--container", help="run jobs inside IMAGE (.sif, sandbox, image name)")
    ] = None,
    runtime: Annotated[
        Optional[str],
        typer.Option("--container-runtime", help="apptainer | docker | podman | charliecloud | pyxis"),
    ] = None,
    binds: Annotated[
        Optional[list[str]], typer.Option("--bind", help="more host paths to mount in the container")
    ] = None,
    container_python: Annotated[
        Optional[str], typer.Option("--container-python", help="the Python inside the image (python3)")
    ] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", "-j", help="local: runs at once")] = None,
    gpus: Annotated[
        Optional[str], typer.Option("--gpus", help="local: GPU ids to share out, e.g. 0,1,2,3")
    ] = None,
    max_retries: Annotated[
        Optional[int], typer.Option("--max-retries", help="times a failed run is tried again")
    ] = None,
) -> None:
    """Run every run that is not done: skip finished ones, resume interrupted ones, retry failed ones."""
    from medtl.sweep import LocalOptions, load_profile, run_sweep
    from medtl.sweep.slurm import container_for

    result, settings = _plan(spec, out)
    profile_values = {
        "partition": partition,
        "account": account,
        "qos": qos,
        "time": time,
        "cpus_per_task": cpus_per_task,
        "mem_gb": mem_gb,
        "gpus_per_run": gpus_per_run,
        "tasks_per_run": tasks_per_run,
        "array_parallelism": parallelism,
        "runs_per_task": runs_per_task,
    }
    slurm_profile = None
    if slurm:
        overrides = {**result.spec.slurm, **{k: v for k, v in profile_values.items() if v is not None}}
        slurm_profile = load_profile(
            profile or settings.sweep.profile, profiles_dir=settings.sweep.profiles_dir, overrides=overrides
        )
    extra: dict[str, Any] = {"binds": tuple(binds or ())}
    if container_python:
        extra["python"] = container_python
    container_spec = container_for(container, runtime, **extra)
    local = LocalOptions(
        workers=workers,
        gpus=tuple(g for g in (gpus or "").split(",") if g),
        gpus_per_run=gpus_per_run or 1,
    )
    submission = run_sweep(
        result,
        max_retries=settings.sweep.max_retries if max_retries is None else max_retries,
        slurm=slurm_profile,
        container=container_spec,
        local=local,
        report=_report,
    )
    _print_submission(submission, len(result.runs))


def _report(record) -> None:
    tail = f": {record.error}" if record.error else ""
    best = f" best {record.monitor} {record.best:.4f}" if record.best is not None else ""
    console.print(f"{record.run_id} {record.status}{best}{tail}", highlight=False)


def _print_submission(submission, total: int) -> None:
    skipped = ", ".join(f"{len(ids)} {why}" for why, ids in submission.skipped.items() if ids)
    skipped = f"; left alone: {skipped}" if skipped else ""
    if submission.job_id:
        console.print(
            f"submitted {len(submission.started)} of {total} runs as SLURM array job {submission.job_id}"
            f"{skipped}; watch with `medtl sweep status {submission.sweep_dir}`",
            highlight=False,
        )
    elif not submission.started:
        console.print(f"nothing to run{skipped}", highlight=False)
    else:
        failed = sum(r.status == "failed" for r in submission.records)
        console.print(
            f"ran {len(submission.started)} of {total} runs ({failed} failed){skipped}; "
            f"see `medtl sweep status {submission.sweep_dir}`",
            highlight=False,
        )
        if failed:
            raise typer.Exit(1)


@app.command("status")
def status(sweep_dir: SweepDirArg) -> None:
    """A table of the sweep's runs: state, attempts, host, elapsed, best metric, the error of failed ones."""
    from medtl.sweep import sweep_status

    rows = sweep_status(sweep_dir)
    varying = [k for k in (rows[0].values if rows else {}) if len({repr(r.values.get(k)) for r in rows}) > 1]
    monitor = next((r.monitor for r in rows if r.monitor), "metric")
    table = Table("run id", *varying, "state", "attempts", "host", "elapsed", "job", f"best {monitor}")
    for r in rows:
        best = f"{r.best:.4f}" if r.best is not None else "-"
        state = r.state if not r.slurm_state or r.state == "done" else f"{r.state} ({r.slurm_state.lower()})"
        table.add_row(
            r.run_id,
            *(str(r.values.get(k)) for k in varying),
            state,
            str(r.attempts),
            r.host or "-",
            r.elapsed or "-",
            r.job_id or "-",
            best,
        )
    console.print(table)
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    console.print(", ".join(f"{n} {s}" for s, n in sorted(counts.items())), highlight=False)
    for r in rows:
        if r.error:
            console.print(f"[red]{r.run_id}[/]: {r.error}", highlight=False, soft_wrap=True)


@app.command("cancel")
def cancel(sweep_dir: SweepDirArg) -> None:
    """scancel the sweep's queued and running SLURM jobs (their runs resume when the sweep runs again)."""
    from medtl.sweep import cancel_sweep

    cancelled = cancel_sweep(sweep_dir)
    if cancelled:
        console.print(f"cancelled SLURM job(s) {', '.join(cancelled)}", highlight=False)
    else:
        console.print("no queued or running SLURM jobs for this sweep", highlight=False)


@app.command("logs")
def logs(
    run: Annotated[Path, typer.Argument(help="a run directory of a sweep (OUT/<sweep>/<run id>)")],
    tail: Annotated[int, typer.Option("--tail", "-n", help="last lines of each log (0: all)")] = 50,
) -> None:
    """Print a run's logs: its latest SLURM job's stdout and stderr, or its local log."""
    from medtl.sweep import run_logs

    for path in run_logs(run):
        lines = path.read_text(errors="replace").splitlines()
        err_console.print(f"==> {path} <==", highlight=False)
        for line in lines[-tail:] if tail else lines:
            console.print(line, highlight=False, markup=False)
