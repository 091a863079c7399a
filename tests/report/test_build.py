import csv
import io
import json
import re

import pytest
from PIL import Image

from medtl.errors import InputError, OutputExistsError, UnknownChoiceError
from medtl.report import build_report, read_run_table
from tests.report.synthetic import write_run, write_sweep

EXPECTED_FIGURES = {
    "metric_by_group",
    "metric_vs_params",
    "metric_vs_kwh",
    "validation_curves",
    "robustness_curves",
    "dev_vs_external",
}


def test_report_folder_holds_tables_figures_and_one_self_contained_page(sweep):
    result = build_report(sweep, baseline=("strategy", "full"), bootstrap=200)
    out = sweep / "report"
    assert result.out == out and result.html == out / "index.html"
    assert {f.name for f in result.figures} == EXPECTED_FIGURES
    for f in result.figures:
        png, svg = out / "figures" / f"{f.name}.png", out / "figures" / f"{f.name}.svg"
        with Image.open(png) as image:
            width, height = image.size
        assert width >= 500 and height >= 200
        assert svg.read_text().lstrip().startswith("<?xml") and "<svg" in svg.read_text()
    page = result.html.read_text()
    assert page.count("data:image/png;base64,") == len(EXPECTED_FIGURES)
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page)  # nothing from the network
    assert "<script" not in page
    assert "TrainingError" in page and "loss is NaN" in page  # failed run with its error line
    assert "not finished yet" in page and "(running)" in page
    assert 'name = "synthetic"' in page  # the sweep spec
    assert "matplotlib" in page and "medtl" in page  # versions
    assert result.counts == {"completed": 8, "failed": 1, "running": 1, "pending": 0}
    assert not result.finished
    summary = json.loads((out / "report.json").read_text())
    assert (
        summary["metric"] == "auroc"
        and summary["by"] == ["strategy"]
        and summary["baseline"] == "strategy=full"
    )


def test_tables_agree_with_each_other(sweep):
    build_report(sweep, baseline=("strategy", "full"), bootstrap=200, figures=False)
    tables = sweep / "report" / "tables"
    rows = list(csv.DictReader(io.StringIO((tables / "results.csv").read_text())))
    md = (tables / "results.md").read_text()
    tex = (tables / "results.tex").read_text()
    assert [r["strategy"] for r in rows] == ["linear", "l1sb", "progressive", "full"]
    for r in rows:
        mean = f"{float(r['mean']):.3f}"
        assert mean in md and mean in tex
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex and "$\\pm$" in tex
    assert rows[-1]["baseline"] == "yes" and rows[0]["p_holm"]
    runs = list(csv.DictReader(io.StringIO((tables / "runs.csv").read_text())))
    assert len(runs) == 10 and {r["status"] for r in runs} == {"completed", "failed", "running"}
    assert (tables / "failed.md").read_text().count("loss is NaN") == 1


def test_few_shot_figure_when_fraction_varies(tmp_path):
    root = tmp_path / "s"
    for fraction in (0.1, 0.5, 1.0):
        for strategy in ("linear", "full"):
            for seed in (0, 1):
                write_run(root, strategy=strategy, seed=seed, fraction=fraction)
    result = build_report(root, by=["strategy", "fraction"], bootstrap=50)
    assert "few_shot_curves" in {f.name for f in result.figures}
    assert "robustness_curves" not in {f.name for f in result.figures}  # no robustness evaluation


# -- bad input -------------------------------------------------------------------------------------


def test_no_finished_runs(tmp_path):
    root = tmp_path / "s"
    write_run(root, strategy="linear", seed=0, status="running")
    write_run(root, strategy="full", seed=0, status="failed")
    with pytest.raises(InputError, match=r"no finished runs to report \(1 failed, 1 running\); first error"):
        build_report(root)
    assert not (root / "report").exists()


def test_not_a_sweep_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no run folders"):
        build_report(tmp_path / "empty")
    with pytest.raises(InputError, match="not a directory"):
        build_report(tmp_path / "missing")


def test_mixed_objectives_are_refused_unless_one_is_chosen(tmp_path):
    root = write_sweep(tmp_path / "s", strategies=("linear", "full"), seeds=(0,))
    seg = write_run(root, strategy="full", seed=5, run_id="seg-run")
    metrics = json.loads((seg / "metrics.json").read_text())
    metrics["task"], metrics["test"] = "segmentation", {"dice": 0.8}
    (seg / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(
        InputError,
        match=r"mixes runs of different objectives: classification \(2 runs\), segmentation \(1 runs\)",
    ):
        build_report(root)
    result = build_report(root, objective="classification", bootstrap=50, figures=False)
    assert result.counts["completed"] == 2
    with pytest.raises(UnknownChoiceError, match="unknown objective"):
        build_report(root, objective="simclr", force=True)


def test_a_metric_some_runs_lack_is_noted_and_one_none_has_is_an_error(tmp_path):
    root = write_sweep(tmp_path / "s", strategies=("linear", "full"))
    run = root / "brats-random-linear-f1-s0"
    metrics = json.loads((run / "metrics.json").read_text())
    del metrics["test"]["balanced_accuracy"]
    (run / "metrics.json").write_text(json.dumps(metrics))
    result = build_report(root, metric="balanced_accuracy", bootstrap=50, figures=False)
    assert any("1 finished runs lack test balanced_accuracy" in n for n in result.notes)
    linear = next(r for r in result.aggregate.rows if r.key["strategy"] == "linear")
    assert linear.metric.n == 1 and linear.missing_metric == 1
    assert "1 lack it" in (root / "report" / "tables" / "results.md").read_text()
    with pytest.raises(UnknownChoiceError, match=r"metric \(no finished run has it\) 'dice'"):
        build_report(root, metric="dice", force=True)


def test_corrupt_metrics_json_is_a_failed_run_and_the_report_is_still_written(tmp_path):
    root = write_sweep(tmp_path / "s", strategies=("linear", "full"))
    (root / "brats-random-full-f1-s1" / "metrics.json").write_text('{"test": {"auroc": 0.9')
    table = read_run_table(root)
    bad = next(r for r in table.records if r.run_id == "brats-random-full-f1-s1")
    assert bad.status == "failed" and bad.error.startswith("metrics.json: not valid JSON")
    result = build_report(root, bootstrap=50, figures=False)
    assert result.counts["failed"] == 1
    page = result.html.read_text()
    assert "brats-random-full-f1-s1" in page and "metrics.json: not valid JSON" in page


def test_by_a_field_that_does_not_vary(tmp_path):
    root = write_sweep(tmp_path / "s", strategies=("linear", "full"), seeds=(0,))
    result = build_report(root, by=["backbone", "strategy"], bootstrap=50, figures=False)
    assert "backbone does not vary (every run has 'resnet18')" in result.notes
    assert "backbone does not vary" in result.html.read_text()


def test_existing_output_needs_force_and_is_replaced_whole(tmp_path):
    root = write_sweep(tmp_path / "s", strategies=("linear", "full"), seeds=(0,))
    build_report(root, bootstrap=50, figures=False)
    (root / "report" / "stale.txt").write_text("left from an earlier report")
    with pytest.raises(OutputExistsError) as err:
        build_report(root, bootstrap=50, figures=False)
    assert err.value.hint == "pass --force to replace it"
    build_report(root, bootstrap=50, force=True, figures=False)
    assert not (root / "report" / "stale.txt").exists() and (root / "report" / "index.html").is_file()
    assert not [p for p in root.iterdir() if p.name.startswith(".report")]  # no temporary left


def test_force_never_replaces_a_folder_that_is_not_a_report(tmp_path):
    root = write_sweep(tmp_path / "s", strategies=("linear", "full"), seeds=(0,))
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "chapter1.tex").write_text("precious")
    with pytest.raises(InputError, match="is not a medtl report"):
        build_report(root, out=mine, force=True)
    assert (mine / "chapter1.tex").read_text() == "precious"


def test_a_failure_while_writing_leaves_the_previous_report(tmp_path, monkeypatch):
    root = write_sweep(tmp_path / "s", strategies=("linear", "full"), seeds=(0,))
    build_report(root, bootstrap=50, figures=False)
    before = (root / "report" / "index.html").read_text()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("medtl.report.build.render", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        build_report(root, bootstrap=50, force=True, figures=False)
    assert (root / "report" / "index.html").read_text() == before
    assert not [p for p in root.iterdir() if p.name.startswith(".report")]


def test_no_figures_writes_tables_and_page_only(tmp_path):
    root = write_sweep(tmp_path / "s", strategies=("linear", "full"), seeds=(0,))
    result = build_report(root, bootstrap=50, figures=False)
    assert result.figures == [] and not list((root / "report" / "figures").iterdir())
    assert "data:image/png" not in result.html.read_text() and (root / "report/tables/results.md").is_file()
