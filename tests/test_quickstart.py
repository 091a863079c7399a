"""`medtl quickstart`: the whole study end to end (small), and its rerun reuses everything."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from medtl_cli.main import app


@pytest.mark.slow
def test_quickstart_runs_the_study_to_a_report_and_reuses_it(tmp_path):
    from medtl.quickstart import run_quickstart

    out = tmp_path / "qs"
    first = run_quickstart(
        out, workers=2, strategies=("linear", "l1sb"), seeds=(0,), epochs_scale=0.02, subjects=12
    )
    assert len(first.started) == 2 and first.reused == []
    assert first.report.counts == {"completed": 2, "failed": 0, "running": 0, "pending": 0}
    summary = json.loads((first.report.out / "report.json").read_text())
    assert [r["key"]["strategy"] for r in summary["rows"]] == ["linear", "l1sb"]
    assert first.report.html.is_file() and (out / "quickstart.toml").is_file()
    again = run_quickstart(
        out, workers=2, strategies=("linear", "l1sb"), seeds=(0,), epochs_scale=0.02, subjects=12
    )
    assert again.started == [] and again.reused == ["phantom data", "store", "split"]
    assert again.report.html == first.report.html


def test_cli_prints_where_the_report_is(tmp_path, monkeypatch):
    from medtl.quickstart import QuickstartResult
    from medtl.report import build_report
    from tests.report.synthetic import write_sweep

    sweep = write_sweep(tmp_path / "runs" / "quickstart", strategies=("linear", "full"), seeds=(0,))
    report = build_report(sweep, bootstrap=50, figures=False)

    def fake(out, *, workers, progress):
        assert workers == 3
        return QuickstartResult(
            tmp_path, tmp_path / "store", sweep, report, ["a", "b"], ["store"], {"sweep": 12.0}
        )

    monkeypatch.setattr("medtl.quickstart.run_quickstart", fake)
    result = CliRunner().invoke(app, ["quickstart", "--out", str(tmp_path), "-j", "3"])
    assert result.exit_code == 0, result.output
    text = result.output.replace("\n", "")
    assert "test auroc by strategy" in result.output and "reused from an earlier quickstart: store" in text
    assert f"open the report: {report.html}" in text
