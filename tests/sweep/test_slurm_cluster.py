"""Sweeps on a real SLURM cluster (slurm/local-cluster.sh start; CI starts it): one array job per
sweep, the same metrics as a local sweep, requeue and resume after preemption and time-out, errors
in `sweep status`, cancel, and re-running a sweep submitting only what is not done."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medtl.engine.run_config import RunConfig
from medtl.sweep import plan_sweep, run_sweep, sweep_status
from medtl.sweep.registry import SweepRegistry
from medtl_cli.main import app
from tests.sweep.conftest import write_spec
from tests.sweep.test_executors import metrics_of, without_timing

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(1800)]

PROFILE = Path(__file__).parents[2] / "slurm" / "profiles" / "local.toml"
runner = CliRunner()


LOCAL_CONF = Path(os.environ.get("MEDTL_SLURM_DIR", "/tmp/medtl-slurm")) / "etc" / "slurm.conf"


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """The cluster SLURM_CONF names, else the one slurm/local-cluster.sh started."""
    if shutil.which("sinfo") is None:
        pytest.skip("SLURM is not installed (slurm/local-cluster.sh start)")
    before = os.environ.get("SLURM_CONF")
    if before is None and LOCAL_CONF.is_file():
        os.environ["SLURM_CONF"] = str(LOCAL_CONF)
    state = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30)
    if state.returncode != 0 or not state.stdout.strip():
        last = (state.stderr.strip().splitlines() or ["no partitions"])[-1]
        pytest.skip(f"no SLURM controller answers (slurm/local-cluster.sh start): {last}")
    yield
    if before is None:
        os.environ.pop("SLURM_CONF", None)


SUBMITTED: list[str] = []


@pytest.fixture(autouse=True)
def cancel_leftover_jobs():
    """A failed test must not leave its jobs running (they would slow every test after it)."""
    yield
    if SUBMITTED:
        subprocess.run(["scancel", *SUBMITTED], capture_output=True)
        SUBMITTED.clear()


def submit(spec: Path, out: Path, *extra: str) -> str:
    """`medtl sweep SPEC --slurm` (the short form users were promised); returns the array job id."""
    result = runner.invoke(
        app, ["sweep", str(spec), "--slurm", "--profile", str(PROFILE), "--out", str(out), *extra]
    )
    assert result.exit_code == 0, result.output
    assert "as SLURM array job" in result.output, result.output
    job = result.output.split("SLURM array job ")[1].split(";")[0].strip()
    SUBMITTED.append(job)
    return job


def wait_until(sweep_dir: Path, done, timeout: float = 300, what: str = "the sweep"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = sweep_status(sweep_dir)
        if done(rows):
            return rows
        time.sleep(2)
    raise AssertionError(
        f"{what} did not finish in {timeout} s: {[(r.run_id, r.state, r.slurm_state) for r in rows]}"
    )


def settled(rows) -> bool:
    return all(r.state in ("done", "failed", "cancelled") for r in rows)


def sacct_states(job_id: str) -> dict[str, str]:
    for _ in range(30):  # sacct lags squeue by a few seconds
        out = subprocess.run(
            ["sacct", "-n", "-P", "-X", "-j", job_id, "--format=JobID,State"], capture_output=True, text=True
        ).stdout
        rows = [line.split("|", 1) for line in out.splitlines() if "|" in line]
        states = {job: state.split()[0] for job, state in rows}
        if states and all(s not in ("RUNNING", "PENDING", "REQUEUED") for s in states.values()):
            return states
        time.sleep(1)
    return states


def test_array_sweep_has_the_metrics_of_the_same_sweep_run_locally(spec_dir):
    path = write_spec(spec_dir, base={"data": "store"}, grid={"seed": [0, 1, 2]})
    run_sweep(plan_sweep(path, out=spec_dir / "local"))
    job = submit(path, spec_dir / "slurm")
    sweep_dir = spec_dir / "slurm" / "study"
    rows = wait_until(sweep_dir, settled)
    assert [r.state for r in rows] == ["done"] * 3
    assert sorted(r.job_id for r in rows) == [f"{job}_0", f"{job}_1", f"{job}_2"]  # ONE array job
    assert sacct_states(job) == {f"{job}_{i}": "COMPLETED" for i in range(3)}
    assert metrics_of(sweep_dir) == metrics_of(spec_dir / "local" / "study")
    status = json.loads((sweep_dir / rows[0].run_id / "status.json").read_text())
    assert status["executor"] == "slurm" and status["slurm_job_id"] == rows[0].job_id and status["host"]


# Full fine-tuning (~1 s an epoch on an idle core), deterministic, so a resumed run must end exactly
# as an uninterrupted one. The timed-out run takes longer than the 90 s within which SLURM signals a
# job with a 2-minute limit, even alone on an idle machine (110 epochs: ~2 min); the preempted one
# only needs a checkpoint before its signal.
LONG = {
    "data": "store",
    "strategy": "full",
    "phase_epochs": {"all": 110},
    "lr": 1e-3,
    "augment": "flip",
    "deterministic": True,
    "checkpoint_interval": 0,
}
SHORT = {**LONG, "phase_epochs": {"all": 12}}


def test_preempted_and_timed_out_jobs_requeue_and_resume_to_the_same_metrics(spec_dir):
    out = spec_dir / "out"
    preempt_job = submit(write_spec(spec_dir, "preempt", base=SHORT), out)
    # A 2-minute limit: USR2 is due 30 s before it (local.toml's signal_delay_s), and SLURM sends it
    # up to 60 s early (it checks about every 30 s), so 30-90 s after the start; every leg trains some
    # epochs, requeues, and the next one resumes, until the run is done.
    timeout_job = submit(write_spec(spec_dir, "timeout", base=LONG), out, "--time", "2")
    # the uninterrupted references of both, computed meanwhile by a local sweep in another process
    reference = write_spec(spec_dir, "reference", base=SHORT, zip=[{"phase_epochs.all": [12, 110]}])
    reference_log = (spec_dir / "reference.log").open("w")
    medtl = Path(sys.executable).parent / "medtl"
    local = subprocess.Popen(
        [str(medtl), "sweep", str(reference), "--out", str(out)],
        stdout=reference_log,
        stderr=subprocess.STDOUT,
    )

    [run_id] = SweepRegistry(out / "preempt").run_ids()
    resume = out / "preempt" / run_id / "checkpoints" / "resume.pt"
    deadline = time.monotonic() + 600
    while not resume.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert resume.exists(), "the preempted run never saved a checkpoint"
    # Preemption: SLURM's warning signal, delivered twice in a row (as Apptainer does): handled once.
    subprocess.run(["scancel", "--signal=USR2", preempt_job], check=True)
    subprocess.run(["scancel", "--signal=USR2", preempt_job], check=False)  # may find it requeued
    assert local.wait(timeout=1500) == 0, (spec_dir / "reference.log").read_text()[-2000:]

    expected = {  # epochs -> the uninterrupted run's metrics
        RunConfig.load(path.parent).phase_epochs["all"]: json.loads(path.read_text())
        for path in (out / "reference").glob("*/metrics.json")
    }
    for name, job, epochs in (("preempt", preempt_job, 12), ("timeout", timeout_job, 110)):
        [row] = wait_until(out / name, settled, timeout=1500, what=name)
        assert row.state == "done", row
        assert row.attempts >= 2, f"{name}: not requeued ({row.attempts} attempt)"
        [got] = metrics_of(out / name).values()
        assert got == without_timing(expected[epochs]), (
            f"{name}: resumed metrics differ from an uninterrupted run"
        )
        logs = "".join(p.read_text() for p in (out / name / ".slurm").glob(f"{job}_*_log.*"))
        case = "preempted" if name == "preempt" else "timed-out"
        assert f"this job is {case}" in logs and "Requeued job" in logs and "resuming" in logs
        assert "A temporary saved file already exists" not in logs


def test_failed_run_shows_its_error_and_rerun_submits_only_the_rest(spec_dir):
    out = spec_dir / "out"
    first = write_spec(spec_dir, base={"data": "store"}, zip=[{"seed": [0], "lr": [1e-2]}])
    run_sweep(plan_sweep(first, out=out))  # seed 0 done locally
    full = write_spec(spec_dir, base={"data": "store"}, zip=[{"seed": [0, 1, 2], "lr": [1e-2, 1e-2, 1e30]}])
    job = submit(full, out)
    manifest = SweepRegistry(out / "study").manifest()
    assert len(manifest["submissions"][-1]["run_ids"]) == 2  # seed 0 was done: not submitted
    rows = {r.values["seed"]: r for r in wait_until(out / "study", settled)}
    assert rows[0].state == "done" and rows[0].job_id is None and rows[0].attempts == 1
    assert rows[1].state == "done" and rows[1].job_id.startswith(f"{job}_")
    assert rows[2].state == "failed" and "loss is not finite" in rows[2].error
    status = runner.invoke(app, ["sweep", "status", str(out / "study")])
    assert "loss is not finite" in status.output and "2 done, 1 failed" in status.output
    # re-running: the failed run is retried (max retries 2), the done ones are left alone
    again = runner.invoke(app, ["sweep", str(full), "--slurm", "--profile", str(PROFILE), "--out", str(out)])
    assert "submitted 1 of 3 runs" in again.output and "2 done" in again.output


def test_cancel_stops_the_sweeps_jobs(spec_dir):
    path = write_spec(spec_dir, base={**LONG, "phase_epochs": {"all": 500}})
    job = submit(path, spec_dir / "out")
    sweep_dir = spec_dir / "out" / "study"
    wait_until(sweep_dir, lambda rows: rows[0].slurm_state == "RUNNING", timeout=120, what="start")
    result = runner.invoke(app, ["sweep", "cancel", str(sweep_dir)])
    assert result.exit_code == 0 and f"cancelled SLURM job(s) {job}" in result.output
    assert set(sacct_states(job).values()) == {"CANCELLED"}
    [row] = wait_until(sweep_dir, lambda rows: rows[0].slurm_state == "CANCELLED", timeout=60, what="cancel")
    assert row.state == "cancelled"  # and `medtl sweep` resumes it when run again
    again = runner.invoke(app, ["sweep", "cancel", str(sweep_dir)])
    assert "no queued or running SLURM jobs" in again.output


def test_one_run_over_two_slurm_tasks_trains_with_ddp(spec_dir, monkeypatch):
    # A rendezvous left in the submitter's environment (sbatch exports it) is not the job's: seen
    # when an earlier DDP test had set MASTER_ADDR, submitit refused to start the run.
    monkeypatch.setenv("MASTER_ADDR", "192.0.2.1")
    monkeypatch.setenv("MASTER_PORT", "1")
    path = write_spec(spec_dir, base={"data": "store", "batch_size": 4})
    job = submit(path, spec_dir / "out", "--tasks-per-run", "2")
    sweep_dir = spec_dir / "out" / "study"
    [row] = wait_until(sweep_dir, settled)
    assert row.state == "done", row
    logs = {p.name: p.read_text() for p in (sweep_dir / ".slurm").glob(f"{job}*_log.err")}
    assert sorted(logs) == [f"{job}_0_log.err", f"{job}_1_log.err"]  # one log per task (rank)
    assert all("Job completed successfully" in text for text in logs.values())
    submission = (sweep_dir / ".slurm" / f"{job}_submission.sh").read_text()
    assert "#SBATCH --ntasks-per-node=2" in submission


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("--partition=nope", "invalid partition specified: nope"),
        ("--account=nope", "Invalid account or account/partition combination specified"),
    ],
)
def test_unknown_partition_or_account_is_refused_before_submission_with_sbatchs_message(
    spec_dir, flag, message, monkeypatch
):
    monkeypatch.delenv("MEDTL_DEBUG", raising=False)
    path = write_spec(spec_dir, base={"data": "store"})
    args = ["sweep", str(path), "--slurm", "--profile", str(PROFILE), "--out", str(spec_dir / "out"), flag]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("error: sbatch rejected the job: ") and message in line
    assert not (spec_dir / "out").exists()  # nothing written, nothing submitted
