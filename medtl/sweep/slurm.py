"""SLURM: cluster profiles, checks before submission, one array job per sweep, and job states.

A profile (``slurm/profiles/NAME.toml``) holds what a cluster wants: partition, account, qos,
time, CPUs, memory, GPUs, array parallelism, extra sbatch options and setup lines. Submission goes
through submitit's ``AutoExecutor.map_array``: one array job, one task per run, each task a
Checkpointable ``SweepJob`` that requeues itself on SLURM's warning signal.
"""

from __future__ import annotations

import getpass
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from medtl.errors import ConfigError, InputError, MedtlError, did_you_mean
from medtl.sweep.containers import ContainerSpec, Launch

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PROFILE_DIR = Path("slurm/profiles")


class SlurmError(MedtlError):
    """SLURM refused something (sbatch's own message is in the text)."""


def parse_time(value: str | int) -> int:
    """SLURM time (MM, HH:MM:SS, D-HH[:MM[:SS]]) in whole minutes, rounded up."""
    if isinstance(value, int):
        return value
    text = str(value).strip()
    days = 0
    if "-" in text:
        d, text = text.split("-", 1)
        days = int(d)
        parts = [int(p) for p in text.split(":")] + [0, 0]
        hours, minutes, seconds = parts[0], parts[1], parts[2]
    else:
        parts = [int(p) for p in text.split(":")]
        if len(parts) == 1:
            return parts[0]
        if len(parts) == 2:
            hours, minutes, seconds = 0, parts[0], parts[1]
        else:
            hours, minutes, seconds = parts[-3], parts[-2], parts[-1]
    return days * 1440 + hours * 60 + minutes + (1 if seconds else 0)


class SlurmProfile(BaseModel):
    """The SLURM resources of every run of a sweep (one array task per run)."""

    model_config = ConfigDict(extra="forbid")

    partition: str | None = Field(None, description="partition (sbatch --partition)")
    account: str | None = Field(None, description="account to charge (sbatch --account)")
    qos: str | None = Field(None, description="quality of service (sbatch --qos)")
    time: str = Field("04:00:00", description="time limit of one run's job (HH:MM:SS or minutes)")
    cpus_per_task: int = Field(4, ge=1, description="CPUs of each task (DataLoader workers + 1)")
    mem_gb: float | None = Field(None, gt=0, description="memory of each node's share (GB)")
    gpus_per_run: int = Field(0, ge=0, description="GPUs of one run; > 1 trains with DDP over SLURM tasks")
    tasks_per_run: int | None = Field(
        None, ge=1, description="processes of one run (default: its GPUs, or 1)"
    )
    nodes_per_run: int = Field(1, ge=1, description="nodes of one run (DDP across nodes)")
    array_parallelism: int = Field(64, ge=1, description="array tasks running at once")
    runs_per_task: int = Field(
        1, ge=1, description="runs one array task trains in turn (tiny runs: share Python and torch start-up)"
    )
    signal_delay_s: int = Field(120, ge=10, description="USR2 this long before the time limit")
    max_timeouts: int = Field(10, ge=0, description="requeues after reaching the time limit")
    constraint: str | None = Field(None, description="node features (sbatch --constraint)")
    setup: list[str] = Field(default_factory=list, description="shell lines before srun (module load ...)")
    sbatch: dict[str, Any] = Field(default_factory=dict, description="more sbatch options, name -> value")
    srun_args: list[str] = Field(default_factory=list, description="more srun arguments")

    @field_validator("time")
    @classmethod
    def _time(cls, value: str | int) -> str:
        try:
            if parse_time(value) < 1:
                raise ValueError
        except ValueError:
            raise ValueError(f"'{value}' is not a SLURM time (MM, HH:MM:SS or D-HH:MM:SS)") from None
        return str(value)

    @property
    def timeout_min(self) -> int:
        return parse_time(self.time)

    @property
    def tasks(self) -> int:
        return self.tasks_per_run or max(1, self.gpus_per_run)


def profile_files(profiles_dir: Path | None = None) -> dict[str, Path]:
    folder = Path(profiles_dir or PROFILE_DIR)
    return {p.stem: p for p in sorted(folder.glob("*.toml"))} if folder.is_dir() else {}


def load_profile(
    name: str | Path | None,
    *,
    profiles_dir: Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> SlurmProfile:
    """A profile by name (``<profiles_dir>/<name>.toml``) or path, with ``overrides`` on top."""
    values: dict[str, Any] = {}
    source = "slurm profile"
    if name is not None:
        path = Path(name)
        if path.suffix != ".toml":
            known = profile_files(profiles_dir)
            if str(name) not in known:
                where = Path(profiles_dir or PROFILE_DIR)
                raise ConfigError(
                    f"unknown SLURM profile '{name}' in {where}{did_you_mean(str(name), known)}"
                    if known
                    else f"unknown SLURM profile '{name}': {where} has no profiles"
                )
            path = known[str(name)]
        try:
            values = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise InputError(path, "SLURM profile not found") from None
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InputError(path, f"not valid TOML ({exc})") from None
        source = str(path)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return SlurmProfile.model_validate(values)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "profile"
        if err["type"] == "extra_forbidden":
            fields = list(SlurmProfile.model_fields)
            raise ConfigError(
                f"{source}: unknown key '{loc}'{did_you_mean(loc, fields)} (valid: {', '.join(fields)})"
            ) from None
        raise ConfigError(f"{source}: {loc}: {err['msg']}") from None


# -- submitit --------------------------------------------------------------------------------------
def executor_parameters(profile: SlurmProfile, name: str, launch: Launch | None = None) -> dict[str, Any]:
    """AutoExecutor.update_parameters arguments for ``profile``."""
    tasks = profile.tasks
    if tasks % profile.nodes_per_run:
        raise ConfigError(f"tasks_per_run {tasks} does not divide over nodes_per_run {profile.nodes_per_run}")
    per_node = tasks // profile.nodes_per_run
    params: dict[str, Any] = {
        "name": name,
        "timeout_min": profile.timeout_min,
        "nodes": profile.nodes_per_run,
        "tasks_per_node": per_node,
        "cpus_per_task": profile.cpus_per_task,
        "slurm_array_parallelism": profile.array_parallelism,
        "slurm_signal_delay_s": profile.signal_delay_s,
        "slurm_partition": profile.partition,
        "slurm_account": profile.account,
        "slurm_qos": profile.qos,
        "slurm_constraint": profile.constraint,
        "mem_gb": profile.mem_gb,
    }
    if profile.gpus_per_run:
        params["gpus_per_node"] = profile.gpus_per_run // profile.nodes_per_run
    setup = list(profile.setup)
    srun_args = list(profile.srun_args)
    teardown: list[str] = []
    if launch is not None:
        setup += launch.setup
        srun_args += launch.srun_args
        teardown += launch.teardown
    if setup:
        params["slurm_setup"] = setup
    if srun_args:
        params["slurm_srun_args"] = srun_args
    if teardown:
        params["slurm_teardown"] = teardown
    if profile.sbatch:
        params["slurm_additional_parameters"] = dict(profile.sbatch)
    return {k: v for k, v in params.items() if v is not None}


def make_executor(
    folder: Path, profile: SlurmProfile, name: str, *, launch: Launch | None = None, cluster: str = "slurm"
):
    """A submitit AutoExecutor for the sweep (``cluster="debug"`` runs jobs in this process)."""
    import submitit

    kwargs: dict[str, Any] = {"slurm_max_num_timeout": profile.max_timeouts}
    if launch is not None:
        kwargs["slurm_python"] = launch.python
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster, **kwargs)
    executor.update_parameters(**executor_parameters(profile, name, launch))
    return executor


# -- checks before submission ----------------------------------------------------------------------
def require_commands(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        raise SlurmError(
            f"SLURM command{'s' if len(missing) > 1 else ''} not found: {', '.join(missing)}",
            hint="run on a cluster login node, or see `medtl doctor`",
        )


def test_submission(profile: SlurmProfile) -> None:
    """Ask sbatch (--test-only) whether it would accept the job; its own message when not."""
    require_commands("sbatch", "srun")
    args = ["sbatch", "--test-only", f"--time={profile.timeout_min}", f"--nodes={profile.nodes_per_run}"]
    args += [
        f"--ntasks-per-node={profile.tasks // profile.nodes_per_run}",
        f"--cpus-per-task={profile.cpus_per_task}",
    ]
    for flag, value in (
        ("partition", profile.partition),
        ("account", profile.account),
        ("qos", profile.qos),
        ("constraint", profile.constraint),
    ):
        if value:
            args.append(f"--{flag}={value}")
    if profile.mem_gb:
        args.append(f"--mem={int(profile.mem_gb * 1024)}M")
    if profile.gpus_per_run:
        args.append(f"--gpus-per-node={profile.gpus_per_run // profile.nodes_per_run}")
    for key, value in profile.sbatch.items():
        args.append(f"--{key.replace('_', '-')}" if value is True else f"--{key.replace('_', '-')}={value}")
    result = subprocess.run([*args, "--wrap=true"], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        lines = [line.strip() for line in (result.stderr or result.stdout).splitlines() if line.strip()]
        message = " / ".join(lines) or f"sbatch exited with {result.returncode}"
        raise SlurmError(f"sbatch rejected the job: {message}")


# -- job states ------------------------------------------------------------------------------------
JOB_ID = re.compile(r"^\d+(_\d+)?$")


def queued_jobs() -> dict[str, dict[str, str]]:
    """This user's jobs in squeue (array tasks one per line): id -> state, node, elapsed."""
    if shutil.which("squeue") is None:
        return {}
    result = subprocess.run(
        ["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T|%N|%M"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    jobs = {}
    for line in result.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 4:
            jobs[parts[0]] = {"state": parts[1], "node": parts[2], "elapsed": parts[3]}
    return jobs


def accounting(job_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    """sacct's record of jobs (array ids expand to their tasks): id -> state, node, elapsed, exit code."""
    ids = sorted({str(j).split("_")[0] for j in job_ids if j})
    if not ids or shutil.which("sacct") is None:
        return {}
    result = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-j", ",".join(ids), "--format=JobID,State,NodeList,Elapsed,ExitCode"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    jobs = {}
    for line in result.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 5 and JOB_ID.match(parts[0]):
            jobs[parts[0]] = {
                "state": parts[1].split()[0],
                "node": parts[2],
                "elapsed": parts[3],
                "exit_code": parts[4],
            }
    return jobs


def cancel(job_ids: Sequence[str]) -> None:
    require_commands("scancel")
    if job_ids:
        result = subprocess.run(["scancel", *job_ids], capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise SlurmError(f"scancel failed: {result.stderr.strip()}")


def container_for(image: str | None, runtime: str | None, **fields: Any) -> ContainerSpec | None:
    from medtl.sweep.containers import detect_runtime

    if not image:
        return None
    return ContainerSpec(image=image, runtime=detect_runtime(image, runtime), **fields)
