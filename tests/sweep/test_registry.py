"""The run registry on disk, run selection, and the folder locks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from medtl.engine.run_config import RunConfig
from medtl.sweep.api import plan_sweep
from medtl.sweep.locks import LockedError, exclusive, is_locked
from medtl.sweep.registry import SweepRegistry, select_runs, update_run_status
from tests.sweep.conftest import write_spec


@pytest.fixture
def recorded(spec_dir):
    path = write_spec(spec_dir, base={"data": "store"}, grid={"seed": [0, 1, 2, 3]}, description="four seeds")
    plan = plan_sweep(path, out=spec_dir / "out")
    registry = SweepRegistry(plan.sweep_dir)
    registry.record(plan.spec, plan.runs)
    return plan, registry


def test_record_writes_sweep_json_and_pending_runs(recorded):
    plan, _ = recorded
    manifest = json.loads((plan.sweep_dir / "sweep.json").read_text())
    assert manifest["name"] == "study" and manifest["spec"]["description"] == "four seeds"
    assert manifest["spec"]["grid"] == {"seed": [0, 1, 2, 3]}
    assert [r["id"] for r in manifest["runs"]] == [r.run_id for r in plan.runs]
    assert manifest["runs"][1]["values"] == {"seed": 1}
    env = manifest["environment"]
    assert env["medtl"] and env["torch"] and env["python"] == sys.version.split()[0]
    assert env["git"]["medtl"] is None or len(env["git"]["medtl"]["commit"]) == 40
    for run in plan.runs:
        status = json.loads((run.run_dir / "status.json").read_text())
        assert status["status"] == "pending" and status["attempts"] == 0 and status["sweep"] == "study"
        assert RunConfig.load(run.run_dir) == run.config


def test_record_keeps_existing_runs_as_they_are(recorded):
    plan, registry = recorded
    run_dir = plan.runs[0].run_dir
    update_run_status(run_dir, status="completed")
    (run_dir / "metrics.json").write_text("{}")
    registry.record(plan.spec, plan.runs)
    assert json.loads((run_dir / "status.json").read_text())["status"] == "completed"


def test_select_skips_done_running_and_given_up_runs(recorded):
    plan, registry = recorded
    done, failed, crashed, fresh = (r.run_dir for r in plan.runs)
    update_run_status(done, status="completed")
    (done / "metrics.json").write_text("{}")
    update_run_status(failed, status="failed", failures=3, error="boom")
    update_run_status(crashed, status="running")  # its process died: nobody holds the lock
    todo, skipped = select_runs(registry.states(), max_retries=2)
    assert [s.run_dir for s in todo] == [crashed, fresh]
    assert todo[0].status == "interrupted"
    assert skipped["done"] == [done.name] and skipped["gave up"] == [failed.name]
    todo, _ = select_runs(registry.states(), max_retries=3)
    assert failed in [s.run_dir for s in todo]


def test_a_run_held_by_a_live_process_is_not_started_twice(recorded):
    plan, registry = recorded
    run_dir = plan.runs[1].run_dir
    with exclusive(run_dir, "run"):
        update_run_status(run_dir, status="running")
        todo, skipped = select_runs(registry.states(), max_retries=2)
        assert skipped["running"] == [run_dir.name] and run_dir not in [s.run_dir for s in todo]
    assert registry.state(run_dir.name).status == "interrupted"


def test_a_queued_slurm_run_is_not_submitted_again(recorded):
    plan, registry = recorded
    update_run_status(plan.runs[0].run_dir, slurm_job_id="77_0")
    _, skipped = select_runs(registry.states(), max_retries=2, queued_jobs={"77_0"})
    assert skipped["queued"] == [plan.runs[0].run_id]


def test_completed_without_metrics_is_not_trusted(recorded):
    plan, registry = recorded
    update_run_status(plan.runs[0].run_dir, status="completed")
    assert registry.state(plan.runs[0].run_id).status == "interrupted"


def test_changed_settings_outside_the_id_reach_idle_runs(recorded, spec_dir):
    plan, registry = recorded
    path = write_spec(spec_dir, base={"data": "store", "num_workers": 1}, grid={"seed": [0, 1, 2, 3]})
    again = plan_sweep(path, out=spec_dir / "out")
    assert [r.run_id for r in again.runs] == [r.run_id for r in plan.runs]
    registry.record(again.spec, again.runs)
    assert RunConfig.load(plan.runs[0].run_dir).num_workers == 1


def test_second_writer_is_refused_with_the_holder(tmp_path):
    with exclusive(tmp_path, "sweep"):
        assert is_locked(tmp_path)
        refused = rf"{tmp_path}: this sweep is in use by pid {os.getpid()} on "
        with pytest.raises(LockedError, match=refused), exclusive(tmp_path, "sweep"):
            pass
    assert not is_locked(tmp_path)


def test_a_lock_dies_with_its_process(tmp_path):
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom medtl.sweep.locks import exclusive\n"
        "with exclusive(Path(sys.argv[1]), 'run'):\n    print('held', flush=True)\n    time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert is_locked(tmp_path)
        with pytest.raises(LockedError, match=f"pid {holder.pid}"), exclusive(tmp_path, "run"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    deadline = time.monotonic() + 5
    while is_locked(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    with exclusive(tmp_path, "run"):
        pass
