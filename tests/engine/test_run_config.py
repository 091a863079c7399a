"""RunConfig: stable run id over result-deciding fields, TOML round trip, one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtl.engine.run_config import RunConfig
from medtl.errors import ConfigError, InputError


def base(**fields) -> RunConfig:
    return RunConfig(**{"data": Path("stores/brats"), "backbone": "resnet18", **fields})


def test_run_id_is_stable_and_short():
    assert base().run_id() == base().run_id()
    assert len(base().run_id()) == 12
    # A pinned value: the id must not drift between medtl sessions or machines.
    assert base().run_id() == RunConfig.parse(base().model_dump(mode="json")).run_id()


@pytest.mark.parametrize(
    ("field", "value", "changes"),
    [
        ("seed", 1, True),
        ("strategy", "full", True),
        ("phase_epochs", {"head": 3}, True),
        ("amp", "bf16", True),
        ("num_workers", 7, False),
        ("out", Path("elsewhere"), False),
        ("run_name", "mine", False),
        ("weights_dir", Path("/w"), False),
    ],
)
def test_run_id_depends_only_on_result_fields(field, value, changes):
    assert (base().run_id() != base(**{field: value}).run_id()) is changes


def test_run_dir_defaults_to_run_id_under_out():
    config = base(out=Path("runs"))
    assert config.run_dir == Path.cwd() / "runs" / config.run_id()
    assert base(run_name="exp1").run_dir == Path.cwd() / "runs/exp1"


def test_paths_are_absolute_so_the_run_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "project" / "sub").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "project")
    here = base(split=Path("stores/brats.split.json"), init="ckpt/moco.pth", strategy="my.toml")
    monkeypatch.chdir(tmp_path / "project" / "sub")
    there = base(
        data=Path("../stores/brats"),
        split=Path("../stores/brats.split.json"),
        init="../ckpt/moco.pth",
        strategy="../my.toml",
        out=Path("../runs"),
    )
    assert here.run_id() == there.run_id()
    assert here.run_dir == there.run_dir == tmp_path / "project" / "runs" / here.run_id()
    assert here.data == tmp_path / "project" / "stores" / "brats"
    assert here.init == str(tmp_path / "project" / "ckpt" / "moco.pth")
    assert base(init="imagenet").init == "imagenet"  # names stay names
    assert base(strategy="DA_L1SB").strategy == "DA_L1SB"


def test_toml_round_trip(tmp_path):
    config = base(
        split=Path("s.json"),
        phase_epochs={"head": 3, "blocks": 2},
        augment=["hflip", "rotate"],
        class_weights=[1.0, 2.0],
        patience=4,
        lr=3e-4,
    )
    config.save(tmp_path / "config.toml")
    loaded = RunConfig.load(tmp_path)
    assert loaded == config
    assert loaded.run_id() == config.run_id()
    assert 'backbone = "resnet18"' in (tmp_path / "config.toml").read_text()


def test_differing_keys_lists_result_fields_only():
    assert base(seed=2, lr=0.1, num_workers=9).differing_keys(base()) == ["lr", "seed"]


def test_unknown_field_is_one_line_config_error():
    with pytest.raises(ConfigError, match=r"run config: epochz: Extra inputs are not permitted"):
        RunConfig.parse({"data": "x", "epochz": 3})


def test_bad_value_names_file_and_field(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text('data = "x"\namp = "fp8"\n')
    with pytest.raises(ConfigError, match=r"config.toml: amp: Input should be 'none', 'bf16' or 'fp16'"):
        RunConfig.load(path)


def test_malformed_toml_names_file(tmp_path):
    path = tmp_path / "config.toml"
    path.write_text("data = \n")
    with pytest.raises(InputError, match=r"config.toml: not valid TOML"):
        RunConfig.load(path)
