"""Executors: worker slots, local sequential and parallel sweeps, the SLURM path through submitit's
in-process debug executor, and the checks made before anything is submitted."""

from __future__ import annotations

import json

import pytest

from medtl.errors import ConfigError, InputError, StoreError
from medtl.sweep import LocalOptions, SlurmProfile, plan_sweep, run_sweep, sweep_status
from medtl.sweep.containers import ContainerSpec
from medtl.sweep.local import Slot, plan_slots
from medtl.sweep.registry import SweepRegistry, update_run_status
from tests.sweep.conftest import write_spec

TIMING = {"time_s", "wall_time_s", "energy_j", "kwh", "last_session_wall_time_s", "energy"}


def without_timing(value):
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def metrics_of(sweep_dir) -> dict[str, dict]:
    return {
        p.parent.name: without_timing(json.loads(p.read_text()))
        for p in sorted(sweep_dir.glob("*/metrics.json"))
    }


def test_slots_share_out_gpus_or_cpu_threads():
    assert plan_slots(None, gpus=["0", "1", "2", "3"], gpus_per_run=2) == [
        Slot(0, ("0", "1")),
        Slot(1, ("2", "3")),
    ]
    assert plan_slots(2, cpus=8) == [Slot(0, (), 4), Slot(1, (), 4)]
    assert plan_slots(3, cpus=2)[2].threads == 1
    assert Slot(0, ("3",), None).environment() == {"CUDA_VISIBLE_DEVICES": "3"}
    assert Slot(0, (), 2).environment()["OMP_NUM_THREADS"] == "2"
    with pytest.raises(ConfigError, match=r"3 workers need 3 GPUs; --gpus gives 2"):
        plan_slots(3, gpus=["0", "1"])
    with pytest.raises(ConfigError, match=r"--gpus-per-run > 1 locally needs --gpus"):
        plan_slots(1, gpus_per_run=2)


def test_local_sweep_then_a_rerun_skips_done_runs_and_retries_failed_ones(spec_dir):
    path = write_spec(spec_dir, base={"data": "store"}, grid={"seed": [0, 1], "lr": [1e-2, 1e30]})
    plan = plan_sweep(path, out=spec_dir / "out")
    first = run_sweep(plan, max_retries=1)
    by_status = sorted(r.status for r in first.records)
    assert by_status == ["completed", "completed", "failed", "failed"]
    assert all((plan.sweep_dir / r.run_id / "sweep.log").is_file() for r in first.records)

    again = run_sweep(plan, max_retries=1)
    assert sorted(again.skipped["done"]) == sorted(r.run_id for r in first.records if r.status == "completed")
    assert len(again.started) == 2  # the failed ones, retried once
    last = run_sweep(plan, max_retries=1)
    assert last.started == [] and len(last.skipped["gave up"]) == 2

    rows = {r.run_id: r for r in sweep_status(plan.sweep_dir)}
    failed = [r for r in rows.values() if r.state == "failed"]
    assert len(failed) == 2 and all("loss is not finite" in r.error for r in failed)
    assert all(r.attempts == 1 for r in rows.values() if r.state == "done")


def test_interrupted_run_resumes_on_rerun(spec_dir):
    path = write_spec(spec_dir, base={"data": "store"}, grid={"seed": [0]})
    plan = plan_sweep(path, out=spec_dir / "out")
    run_sweep(plan)
    [run] = plan.runs
    update_run_status(run.run_dir, status="running")  # as a killed job leaves it
    (run.run_dir / "metrics.json").unlink()
    again = run_sweep(plan)
    assert again.started == [run.run_id] and again.records[0].status == "completed"


@pytest.mark.slow
def test_parallel_workers_give_the_metrics_of_a_sequential_sweep(spec_dir):
    path = write_spec(spec_dir, base={"data": "store"}, grid={"seed": [0, 1], "lr": [0.01, 0.001]})
    run_sweep(plan_sweep(path, out=spec_dir / "seq"))
    parallel = run_sweep(
        plan_sweep(path, out=spec_dir / "par"), local=LocalOptions(workers=2, gpus=("0", "1"))
    )
    assert {r.status for r in parallel.records} == {"completed"}
    # each worker owned one (pretend) GPU: CUDA_VISIBLE_DEVICES was set in its process
    assert sorted({r.host.split("(GPU ")[1] for r in parallel.records}) == ["0)", "1)"]
    assert metrics_of(spec_dir / "seq" / "study") == metrics_of(spec_dir / "par" / "study")


PROFILE = SlurmProfile(partition="debug", time="00:10:00", cpus_per_task=1)


def test_slurm_path_runs_one_array_through_submitit_debug(spec_dir):
    path = write_spec(spec_dir, base={"data": "store"}, grid={"seed": [0, 1, 2]})
    plan = plan_sweep(path, out=spec_dir / "out")
    submission = run_sweep(plan, slurm=PROFILE, cluster="debug")
    assert len(submission.started) == 3 and submission.job_id
    assert [r.status for r in submission.records] == ["completed"] * 3
    [entry] = SweepRegistry(plan.sweep_dir).manifest()["submissions"]
    assert entry["job_id"] == submission.job_id and entry["run_ids"] == submission.started
    assert entry["profile"]["partition"] == "debug"
    again = run_sweep(plan, slurm=PROFILE, cluster="debug")
    assert again.started == [] and len(again.skipped["done"]) == 3


def test_missing_store_split_and_image_are_reported_before_anything_is_written(spec_dir, tmp_path):
    path = write_spec(spec_dir, base={"data": str(tmp_path / "nostore")}, grid={"seed": [0, 1]})
    plan = plan_sweep(path, out=spec_dir / "out")
    with pytest.raises(StoreError, match=r"nostore: not a medtl store \(manifest.json missing\)"):
        run_sweep(plan, slurm=PROFILE, cluster="debug")
    assert not plan.sweep_dir.exists()

    path = write_spec(spec_dir, base={"data": "store", "split": "missing.json"})
    with pytest.raises(InputError, match=r"missing.json: split file not found \(run \(the base config\)\)"):
        run_sweep(plan_sweep(path, out=spec_dir / "out"))

    path = write_spec(spec_dir, base={"data": "store"})
    image = ContainerSpec(image=str(tmp_path / "medtl.sif"), runtime="apptainer")
    with pytest.raises(InputError, match=r"medtl.sif: container image not found \(apptainer\)"):
        run_sweep(plan_sweep(path, out=spec_dir / "out"), slurm=PROFILE, container=image, cluster="debug")
    with pytest.raises(ConfigError, match=r"--container runs SLURM jobs inside a container: add --slurm"):
        run_sweep(plan_sweep(path, out=spec_dir / "out"), container=image)


def test_several_runs_per_array_task_share_one_task_and_a_failure_spares_the_others(spec_dir):
    path = write_spec(spec_dir, base={"data": "store"}, zip=[{"seed": [0, 1, 2], "lr": [1e30, 1e-2, 1e-2]}])
    plan = plan_sweep(path, out=spec_dir / "out")
    profile = PROFILE.model_copy(update={"runs_per_task": 2})
    submission = run_sweep(plan, slurm=profile, cluster="debug")
    assert sorted(r.status for r in submission.records) == ["completed", "completed", "failed"]
    jobs = {r.values["seed"]: r.job_id for r in sweep_status(plan.sweep_dir)}
    assert jobs[0] == jobs[1] != jobs[2]  # runs 0 and 1 shared the first task
