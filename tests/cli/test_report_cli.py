"""`medtl report`: wiring, the printed table, --force, --watch, and one line with exit 2 for bad input."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from medtl_cli.main import app
from tests.report.synthetic import write_run, write_sweep

runner = CliRunner()


def test_report_prints_the_table_and_where_the_page_is(tmp_path):
    root = write_sweep(tmp_path / "s", strategies=("linear", "full"))
    result = runner.invoke(
        app, ["report", str(root), "--baseline", "strategy=full", "--bootstrap", "100", "--no-figures"]
    )
    assert result.exit_code == 0, result.output
    assert "test auroc by strategy" in result.output and "baseline" in result.output
    assert f"report: {root / 'report' / 'index.html'}" in result.output.replace("\n", "")
    summary = json.loads((root / "report" / "report.json").read_text())
    assert summary["baseline"] == "strategy=full" and len(summary["rows"]) == 2


def test_existing_report_needs_force(tmp_path):
    root = write_sweep(tmp_path / "s", strategies=("linear", "full"), seeds=(0,))
    assert runner.invoke(app, ["report", str(root), "--bootstrap", "50", "--no-figures"]).exit_code == 0
    again = runner.invoke(app, ["report", str(root), "--bootstrap", "50", "--no-figures"])
    assert again.exit_code == 2 and "output already exists (pass --force to replace it)" in again.output
    assert (
        runner.invoke(app, ["report", str(root), "--bootstrap", "50", "--force", "--no-figures"]).exit_code
        == 0
    )


def test_bad_inputs_are_one_line_with_exit_2(tmp_path):
    root = write_sweep(tmp_path / "s", strategies=("linear", "full"), seeds=(0,))
    cases = {
        ("--by", "stratgy"): "unknown --by factor 'stratgy'",
        ("--baseline", "full"): "--baseline must be FACTOR=LEVEL",
        ("--metric", "dice"): "no finished run has it",
        ("--test", "ttest"): "unknown test 'ttest'",
    }
    for args, message in cases.items():
        result = runner.invoke(app, ["report", str(root), *args, "--out", str(tmp_path / "r")])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output
    empty = tmp_path / "pending"
    write_run(empty, strategy="linear", seed=0, status="running")
    result = runner.invoke(app, ["report", str(empty)])
    assert result.exit_code == 2 and "no finished runs to report (1 running)" in result.output


def test_watch_rebuilds_until_every_run_ended(tmp_path, monkeypatch):
    root = write_sweep(tmp_path / "s", strategies=("linear", "full"), seeds=(0,))
    write_run(root, strategy="full", seed=1, status="running", run_id="late")
    sleeps = []

    def finish_the_run(seconds):
        # While the CLI sleeps, the running run completes (rewritten as a completed run).
        sleeps.append(seconds)
        import shutil

        shutil.rmtree(root / "late")
        write_run(root, strategy="full", seed=1, run_id="late")

    monkeypatch.setattr("medtl_cli.report.time.sleep", finish_the_run)
    result = runner.invoke(
        app, ["report", str(root), "--watch", "--interval", "5", "--bootstrap", "50", "--no-figures"]
    )
    assert result.exit_code == 0, result.output
    assert sleeps == [5.0]
    assert "1 running" in result.output and "3 completed; report" in result.output.replace("\n", "")
