import json

import pytest

from medtl.errors import InputError
from medtl.report import read_run, read_run_table
from medtl.report.aggregate import level_order
from tests.report.synthetic import write_run, write_sweep


def test_a_completed_run_becomes_a_typed_record(tmp_path):
    run = write_run(tmp_path, strategy="l1sb", seed=3, robustness=True, external=True)
    r = read_run(run)
    assert r.status == "completed" and r.objective == "classification" and r.task == "binary"
    assert r.factors["strategy"] == "l1sb" and r.factors["seed"] == "3" and r.factors["store"] == "brats"
    assert r.params_trained == 2_360_321 and r.kwh > 0 and r.wall_s > 0
    assert 0.5 < r.test["auroc"] <= 1 and r.test_ci["auroc"][0] <= r.test["auroc"]
    assert [p.epoch for p in r.history] == list(range(6)) and "auroc" in r.history[0].values
    assert r.external == {"ce_mri-all": {"auroc": pytest.approx(r.test["auroc"] - 0.08)}}
    assert r.robustness["brats-test"][0]["corruption"] == "clean"
    assert r.predictions().index.shape == (96,)


@pytest.mark.parametrize(
    ("status", "expected"),
    [("done", "completed"), ("interrupted", "pending"), ("cancelled", "failed"), ("running", "running")],
)
def test_sweep_status_words(tmp_path, status, expected):
    run = write_run(tmp_path, strategy="linear", seed=0)
    (run / "status.json").write_text(json.dumps({"status": status}))
    r = read_run(run)
    assert r.status == expected
    if status == "cancelled":
        assert r.error == "cancelled"


def test_unreadable_files_make_a_failed_run_with_the_file_named(tmp_path):
    bad_config = write_run(tmp_path, strategy="linear", seed=0)
    (bad_config / "config.toml").write_text("strategy = [")
    assert read_run(bad_config).error.startswith("config.toml: not valid TOML")
    no_metrics = write_run(tmp_path, strategy="full", seed=0)
    (no_metrics / "metrics.json").unlink()
    assert read_run(no_metrics).error == "metrics.json: missing although status.json says completed"
    no_test = write_run(tmp_path, strategy="l1sb", seed=0)
    (no_test / "metrics.json").write_text("{}")
    assert read_run(no_test).error == "metrics.json: has no test section"
    # A broken evaluation is extra: the run stays usable.
    ok = write_run(tmp_path, strategy="progressive", seed=0, external=True)
    (ok / "evaluation_ce_mri-all.json").write_text("{")
    assert read_run(ok).status == "completed" and read_run(ok).external == {}


def test_sweep_json_gives_planned_runs_axis_values_and_the_spec(tmp_path):
    root = write_sweep(tmp_path / "s", strategies=("full", "linear"), seeds=(0,))
    (root / "sweep.toml").unlink()
    spec = tmp_path / "study.toml"
    spec.write_text('name = "study"\n[grid]\nstrategy = ["full", "linear"]\n')
    fold = "/s/brats.fold3.json"
    runs = [
        {"id": "brats-random-full-f1-s0", "values": {"strategy": "full", "split": fold}},
        {"id": "brats-random-linear-f1-s0", "values": {"strategy": "linear", "split": fold}},
        {"id": "never-started", "values": {"strategy": "l1sb"}},
    ]
    manifest = {
        "name": "study",
        "spec_file": str(spec),
        "spec": {"grid": {"strategy": ["full", "linear", "l1sb"]}},
    }
    (root / "sweep.json").write_text(json.dumps({**manifest, "runs": runs}))
    table = read_run_table(root)
    assert table.sweep.name == "study" and table.sweep.planned == 3
    assert table.counts() == {"completed": 2, "failed": 0, "running": 0, "pending": 1}
    assert {r.factors["fold"] for r in table.records} == {"brats.fold3"}
    assert table.sweep.spec_text.startswith('name = "study"')
    # the spec's order of levels, not the alphabet or parameter counts
    assert level_order(table, "strategy") == ["full", "linear"]


def test_a_folder_without_runs_or_a_file_is_refused(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "notes.txt").write_text("")
    with pytest.raises(InputError, match="holds no run folders"):
        read_run_table(tmp_path / "x")
    with pytest.raises(InputError, match="not a directory"):
        read_run_table(tmp_path / "x" / "notes.txt")
