"""One job: the status fields it records around engine.run, failures, the small record, signals."""

from __future__ import annotations

import json
import os
import pickle
import signal

import pytest

from medtl.errors import MedtlError
from medtl.sweep.api import plan_sweep
from medtl.sweep.job import RunRecord, make_signal_idempotent, run_one, slurm_job_id
from medtl.sweep.registry import SweepRegistry
from tests.sweep.conftest import write_spec


def _prepared(spec_dir, **sections):
    path = write_spec(spec_dir, **sections)
    plan = plan_sweep(path, out=spec_dir / "out")
    SweepRegistry(plan.sweep_dir).record(plan.spec, plan.runs)
    return plan


def test_a_job_records_host_attempts_and_wall_time_and_returns_a_small_record(spec_dir, monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "41")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    plan = _prepared(spec_dir, base={"data": "store"})
    [run] = plan.runs
    record = run_one(run.run_dir, executor="slurm")
    status = json.loads((run.run_dir / "status.json").read_text())
    # the engine's own fields and the sweep's side by side
    assert status["status"] == "completed" and status["attempts"] == 1
    assert status["slurm_job_id"] == "41_3" and status["executor"] == "slurm" and status["host"]
    assert status["wall_time_s"] > 0 and "pid" not in status
    assert isinstance(record, RunRecord) and record.status == "completed" and record.slurm_job_id == "41_3"
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    assert record.best == metrics["best"]["value"] and record.test["accuracy"] == metrics["test"]["accuracy"]
    assert len(pickle.dumps(record)) < 4096  # what submitit sends back: never the model


def test_running_again_returns_the_finished_run(spec_dir):
    plan = _prepared(spec_dir, base={"data": "store"})
    [run] = plan.runs
    first = run_one(run.run_dir)
    again = run_one(run.run_dir)
    assert again.best == first.best
    assert json.loads((run.run_dir / "status.json").read_text())["attempts"] == 1


def test_a_failing_run_records_its_error_and_counts_failures(spec_dir):
    plan = _prepared(spec_dir, base={"data": "store", "lr": 1e30})
    [run] = plan.runs
    for expected in (1, 2):
        with pytest.raises(MedtlError, match="loss is not finite"):
            run_one(run.run_dir)
        status = json.loads((run.run_dir / "status.json").read_text())
        assert status["status"] == "failed" and status["failures"] == expected
        assert "loss is not finite" in status["error"]


def test_slurm_job_id_prefers_the_array_task():
    assert slurm_job_id({"SLURM_JOB_ID": "9"}) == "9"
    assert slurm_job_id({"SLURM_JOB_ID": "9", "SLURM_ARRAY_JOB_ID": "7", "SLURM_ARRAY_TASK_ID": "2"}) == "7_2"
    assert slurm_job_id({}) is None


def test_a_repeated_usr2_reaches_the_handler_once():
    calls = []
    previous = signal.signal(signal.SIGUSR2, lambda sig, frame: calls.append(sig))
    try:
        make_signal_idempotent()
        make_signal_idempotent()  # wrapping twice must not stack
        os.kill(os.getpid(), signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGUSR2)
        assert calls == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)
