"""Sweeps: a study in one spec file, expanded into RunConfigs and run locally or as ONE SLURM array job.

``plan_sweep`` reads and expands a spec, ``run_sweep`` runs what is not done yet (locally, or through
submitit with each run a Checkpointable array task, optionally inside a container), ``sweep_status``
reads the run registry on disk (and sacct), ``cancel_sweep`` and ``run_logs`` do what they say.
This layer uses the engine only through ``medtl.engine.run`` and the public ``RunConfig``.
"""

from medtl.sweep.api import (
    LocalOptions,
    Plan,
    RunStatus,
    Submission,
    cancel_sweep,
    plan_sweep,
    run_logs,
    run_sweep,
    sweep_status,
)
from medtl.sweep.containers import ContainerSpec
from medtl.sweep.job import RunRecord, SweepJob
from medtl.sweep.slurm import SlurmProfile, load_profile
from medtl.sweep.spec import SweepSpec, load_spec

__all__ = [
    "ContainerSpec",
    "LocalOptions",
    "Plan",
    "RunRecord",
    "RunStatus",
    "SlurmProfile",
    "Submission",
    "SweepJob",
    "SweepSpec",
    "cancel_sweep",
    "load_profile",
    "load_spec",
    "plan_sweep",
    "run_logs",
    "run_sweep",
    "sweep_status",
]
