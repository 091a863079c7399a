"""`medtl sweep` and `medtl doctor` wiring: plan output, the short form, status with errors, logs."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from medtl_cli.main import app
from tests.sweep.conftest import write_spec

runner = CliRunner()


def test_plan_prints_count_ids_and_varying_values(spec_dir):
    path = write_spec(spec_dir, base={"data": "store"}, grid={"seed": [0, 1, 2], "lr": [0.1]})
    result = runner.invoke(app, ["sweep", "plan", str(path), "--out", str(spec_dir / "out"), "--show", "2"])
    assert result.exit_code == 0, result.output
    assert "seed" in result.output and "lr" not in result.output.split("runs in")[0].split("seed")[0]
    assert "3 runs in" in result.output and "1 more not shown" in result.output
    assert not (spec_dir / "out").exists()  # plan writes nothing


def test_short_form_runs_then_status_shows_the_failed_runs_error_and_logs(spec_dir):
    path = write_spec(spec_dir, base={"data": "store"}, grid={"lr": [1e-2, 1e30]})
    out = spec_dir / "out"
    result = runner.invoke(app, ["sweep", str(path), "--out", str(out)])
    assert result.exit_code == 1  # one run failed
    assert "ran 2 of 2 runs (1 failed)" in result.output

    status = runner.invoke(app, ["sweep", "status", str(out / "study")])
    assert status.exit_code == 0, status.output
    assert "1 done, 1 failed" in status.output
    assert "loss is not finite" in status.output

    again = runner.invoke(app, ["sweep", "run", str(path), "--out", str(out), "--max-retries", "0"])
    assert again.exit_code == 0 and "nothing to run; left alone: 1 done, 1 gave up" in again.output

    run_dir = next(p for p in (out / "study").iterdir() if (p / "metrics.json").is_file())
    logs = runner.invoke(app, ["sweep", "logs", str(run_dir), "--tail", "0"])
    assert logs.exit_code == 0 and "phase head: started" in logs.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["sweep", "status", "/nonexistent/sweep"],
            "/nonexistent/sweep: not a sweep folder (no sweep.json) (run `medtl sweep run SPEC`)",
        ),
        (["sweep", "plan", "/nonexistent/s.toml"], "/nonexistent/s.toml: sweep spec not found"),
        (["sweep", "logs", "/nonexistent/run"], "/nonexistent/run: run directory not found"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, monkeypatch):
    monkeypatch.delenv("MEDTL_DEBUG", raising=False)
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert [line for line in result.stderr.splitlines() if line.strip()] == [f"error: {message}"]


def test_missing_store_fails_before_submission(spec_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("MEDTL_DEBUG", raising=False)
    path = write_spec(spec_dir, base={"data": str(tmp_path / "gone")})
    result = runner.invoke(app, ["sweep", str(path), "--slurm", "--out", str(spec_dir / "out")])
    assert result.exit_code == 2 and "gone: not a medtl store (manifest.json missing)" in result.stderr
    assert not (spec_dir / "out").exists()


def test_doctor_reports_and_fails_on_a_required_missing_part(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # no SLURM, no container runtime
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    for row in ("PyTorch", "CUDA GPUs", "NVML", "RAPL", "SLURM", "Apptainer", "Docker", "weights folder"):
        assert row in result.output
    assert "everything required is here" in result.output
    required = runner.invoke(app, ["doctor", "--require", "slurm,apptainer", "--quiet"])
    assert required.exit_code == 1
    lines = [line for line in required.output.splitlines() if line.strip()]
    assert lines == [
        "missing: SLURM: commands not found: sbatch, srun, squeue, sacct, scontrol, scancel",
        "missing: Apptainer: apptainer not found",
    ]
    unknown = runner.invoke(app, ["doctor", "--require", "gpus"])
    assert (
        unknown.exit_code == 2 and "unknown doctor requirement 'gpus', did you mean 'gpu'" in unknown.stderr
    )
