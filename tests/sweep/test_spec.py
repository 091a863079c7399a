"""The spec: TOML and YAML, field paths checked against the model (nested sections too), one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

import pytest
from pydantic import BaseModel, ConfigDict, Field

from medtl.engine.run_config import RunConfig
from medtl.errors import ConfigError, InputError
from medtl.sweep.spec import check_field_path, field_is_path, load_spec, parse_spec
from tests.sweep.conftest import write_spec


def test_toml_spec_with_grid_zip_and_exclude(spec_dir):
    path = write_spec(
        spec_dir,
        base={"data": "store"},
        grid={"seed": [0, 1], "phase_epochs": {"head": [1, 2]}},
        zip=[{"lr": [0.1, 0.01], "batch_size": [4, 8]}],
        exclude=[{"seed": 1, "lr": [0.01]}],
    )
    spec = load_spec(path, RunConfig)
    assert spec.name == "study" and spec.source == path
    # a nested table in [grid] is the same axis as a dotted key
    assert list(spec.axes()) == ["seed", "phase_epochs.head", "lr", "batch_size"]
    assert spec.exclude == [{"seed": 1, "lr": [0.01]}]


def test_yaml_spec_is_read_like_toml(spec_dir):
    path = spec_dir / "study.yaml"
    path.write_text("name: study\nbase: {data: store, backbone: resnet10t}\ngrid:\n  seed: [0, 1, 2]\n")
    spec = load_spec(path, RunConfig)
    assert spec.grid == {"seed": [0, 1, 2]} and spec.base["backbone"] == "resnet10t"


def test_yaml_is_data_only(spec_dir):
    path = spec_dir / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(InputError, match=r"evil.yaml: not valid YAML"):
        load_spec(path, RunConfig)


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"grd": {"seed": [0]}}, r"unknown key 'grd', did you mean 'grid'\? \(valid keys: name, .*exclude"),
        ({"grid": {"lrr": [0.1]}}, r"grid: 'lrr' is not a field of RunConfig, did you mean 'lr'\? \(valid: "),
        ({"grid": {"lr.value": [0.1]}}, r"'lr' is a value, not a section \(lr.value\)"),
        ({"grid": {"seed": []}}, r"grid.seed has no values: the sweep would have no runs"),
        ({"grid": {"out": ["a", "b"]}}, r"'out' is set by the sweep"),
        ({"grid": {"seed": [0]}, "zip": [{"seed": [1]}]}, r"axis 'seed' is in both grid and zip\[0\]"),
        (
            {"zip": [{"lr": [0.1, 0.2], "seed": [1]}]},
            r"zipped axes need equal lengths \(lr has 2, seed has 1\)",
        ),
        (
            {"grid": {"seed": [0, 1]}, "exclude": [{"sed": 1}]},
            r"exclude\[0\]: 'sed' is not an axis, did you mean",
        ),
        (
            {"grid": {"seed": [0, 1]}, "exclude": [{"seed": 5}]},
            r"exclude\[0\]: seed = 5 is not one of the axis",
        ),
        ({"grid": {"seed": [0, 1]}, "exclude": [{}]}, r"exclude\[0\] is empty"),
        ({"grid": {"seed": 3}}, r"grid.seed: Input should be a valid list"),
    ],
)
def test_bad_specs_fail_with_one_line(spec_dir, sections, message):
    path = write_spec(spec_dir, base={"data": "store"}, **sections)
    with pytest.raises(ConfigError, match=message) as info:
        load_spec(path, RunConfig)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_unknown_base_field_names_the_valid_ones(spec_dir):
    path = write_spec(spec_dir, base={"data": "store", "backbon": "resnet18"})
    with pytest.raises(
        ConfigError, match=r"base: 'backbon' is not a field of RunConfig, did you mean 'backbone'"
    ):
        load_spec(path, RunConfig)


def test_base_run_name_is_the_sweeps(spec_dir):
    path = write_spec(spec_dir, base={"data": "store", "run_name": "x"})
    with pytest.raises(ConfigError, match=r"'run_name' is set by the sweep"):
        load_spec(path, RunConfig)


@pytest.mark.parametrize(
    ("text", "message"),
    [("name = [", r"not valid TOML"), ("grid = 3\nname = 'x'", r"grid: Input should be a valid dictionary")],
)
def test_unreadable_specs(tmp_path, text, message):
    path = tmp_path / "s.toml"
    path.write_text(text)
    with pytest.raises((InputError, ConfigError), match=message):
        load_spec(path, RunConfig)


def test_missing_and_wrongly_named_spec_files(tmp_path):
    with pytest.raises(InputError, match=r"nope.toml: sweep spec not found"):
        load_spec(tmp_path / "nope.toml", RunConfig)
    (tmp_path / "s.json").write_text("{}")
    with pytest.raises(InputError, match=r"s.json: a sweep spec is a .toml or .yaml or .yml file"):
        load_spec(tmp_path / "s.json", RunConfig)


def test_sweep_name_is_one_path_component(spec_dir):
    path = write_spec(spec_dir, name="ok")
    text = path.read_text().replace('name = "ok"', 'name = "../escaped"')
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"name: String should match pattern"):
        load_spec(path, RunConfig)


# A RunConfig with a nested, discriminated section (as the objective refactor brings): paths into it
# are checked against every member's fields, with no code that knows the section's name.
class _Classification(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["classification"] = "classification"
    label_smoothing: float = 0.0


class _Segmentation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["segmentation"] = "segmentation"
    dice_weight: float = 1.0
    weights: Path | None = None


class _NestedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    data: Path
    objective: Annotated[Union[_Classification, _Segmentation], Field(discriminator="kind")] = (
        _Classification()
    )
    phase_epochs: dict[str, int] = {}


def test_paths_into_nested_sections_are_checked_generically():
    check_field_path("objective.label_smoothing", _NestedConfig, "spec")
    check_field_path("objective.dice_weight", _NestedConfig, "spec")
    check_field_path("phase_epochs.anything", _NestedConfig, "spec")
    with pytest.raises(
        ConfigError, match=r"'objective.dice' is not a field of section 'objective', did you mean"
    ):
        check_field_path("objective.dice", _NestedConfig, "spec")
    assert field_is_path("objective.weights", _NestedConfig) and field_is_path("data", _NestedConfig)
    assert not field_is_path("objective.dice_weight", _NestedConfig)


def test_nested_base_tables_are_checked_as_sections():
    good = {"name": "n", "base": {"data": "x", "objective": {"kind": "segmentation", "dice_weight": 2}}}
    assert parse_spec(good, _NestedConfig).base["objective"]["dice_weight"] == 2
    bad = {"name": "n", "base": {"data": "x", "objective": {"kind": "segmentation", "dice": 1}}}
    with pytest.raises(ConfigError, match=r"base: 'objective.dice' is not a field of section 'objective'"):
        parse_spec(bad, _NestedConfig)
