"""Expansion: grid x zip minus exclusions, validated RunConfigs, relative paths, collisions."""

from __future__ import annotations

import os

import pytest

from medtl.engine.run_config import RunConfig
from medtl.errors import ConfigError
from medtl.sweep.api import plan_sweep
from medtl.sweep.expand import expand
from medtl.sweep.spec import load_spec, parse_spec
from tests.sweep.conftest import write_spec


def test_grid_times_zip_minus_excluded(spec_dir, sweep_store):
    path = write_spec(
        spec_dir,
        base={"data": "store"},
        grid={"seed": [0, 1, 2], "strategy": ["linear", "l1sb"]},
        zip=[{"lr": [0.1, 0.01], "phase_epochs.head": [1, 3]}],
        exclude=[{"strategy": "l1sb", "seed": [1, 2]}],
    )
    runs = expand(load_spec(path, RunConfig), RunConfig, spec_dir / "out")
    assert len(runs) == (3 * 2 - 2) * 2
    first = runs[0]
    assert first.values == {"seed": 0, "strategy": "linear", "lr": 0.1, "phase_epochs.head": 1}
    assert first.config.phase_epochs == {"head": 1} and first.config.lr == 0.1
    assert all(not (r.values["strategy"] == "l1sb" and r.values["seed"] > 0) for r in runs)
    assert first.run_dir == (spec_dir / "out" / "study" / first.run_id).resolve()
    assert first.config.data == sweep_store.resolve()
    assert len({r.run_id for r in runs}) == len(runs)


def test_relative_paths_are_relative_to_the_spec_folder(spec_dir, tmp_path_factory, monkeypatch):
    path = write_spec(spec_dir, base={"data": "store"}, grid={"seed": [0]})
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    before = os.getcwd()
    [run] = expand(load_spec(path, RunConfig), RunConfig, spec_dir / "out")
    assert run.config.data == (spec_dir / "store").resolve()
    assert os.getcwd() == before


def test_spec_out_is_relative_to_the_spec_and_flag_wins(spec_dir, monkeypatch, tmp_path_factory):
    path = write_spec(spec_dir, base={"data": "store"}, out="results")
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    assert plan_sweep(path).sweep_dir == (spec_dir / "results" / "study").resolve()
    assert str(plan_sweep(path, out="flag").sweep_dir) == os.path.abspath("flag") + "/study"


def test_axis_over_a_field_that_does_not_change_results_collides(spec_dir):
    path = write_spec(spec_dir, base={"data": "store"}, grid={"num_workers": [0, 2]})
    with pytest.raises(
        ConfigError, match=r"runs num_workers=0 and num_workers=2 are the same run \(id \w+\)"
    ):
        expand(load_spec(path, RunConfig), RunConfig, spec_dir / "out")


def test_a_value_the_model_rejects_names_the_run(spec_dir):
    path = write_spec(spec_dir, base={"data": "store"}, grid={"seed": [0], "lr": [0.1, -1.0]})
    with pytest.raises(ConfigError, match=r"run seed=0, lr=-1.0: lr: Input should be greater than 0"):
        expand(load_spec(path, RunConfig), RunConfig, spec_dir / "out")


def test_everything_excluded_is_an_empty_sweep(spec_dir):
    path = write_spec(spec_dir, base={"data": "store"}, grid={"seed": [0, 1]}, exclude=[{"seed": [0, 1]}])
    with pytest.raises(ConfigError, match=r"the sweep has no runs \(every combination is excluded\)"):
        expand(load_spec(path, RunConfig), RunConfig, spec_dir / "out")


def test_a_spec_without_axes_is_one_run(spec_dir):
    spec = parse_spec({"name": "one", "base": {"data": str(spec_dir / "store")}}, RunConfig)
    [run] = expand(spec, RunConfig, spec_dir)
    assert run.values == {}


def test_list_valued_axes_and_exclusions(spec_dir):
    path = write_spec(
        spec_dir,
        base={"data": "store"},
        grid={"augment": ["none", ["hflip", "vflip"]]},
        exclude=[{"augment": ["hflip", "vflip"]}],  # one value of the axis, not "any of"
    )
    [run] = expand(load_spec(path, RunConfig), RunConfig, spec_dir / "out")
    assert run.config.augment == "none"


def test_ids_do_not_depend_on_the_order_of_axes(spec_dir):
    a = write_spec(spec_dir, "a", base={"data": "store"}, grid={"seed": [0, 1], "lr": [0.1]})
    b = write_spec(spec_dir, "b", base={"data": "store"}, grid={"lr": [0.1], "seed": [1, 0]})
    ids_a = {r.run_id for r in expand(load_spec(a, RunConfig), RunConfig, spec_dir / "o")}
    ids_b = {r.run_id for r in expand(load_spec(b, RunConfig), RunConfig, spec_dir / "o")}
    assert ids_a == ids_b
