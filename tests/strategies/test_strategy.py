"""The strategy schema: user TOML files, one-line errors, epoch and lr overrides."""

from __future__ import annotations

import textwrap

import pytest

from medtl.errors import ConfigError, InputError
from medtl.strategies import (
    Strategy,
    get_strategy,
    list_strategies,
    load_strategy_file,
    override_epochs,
    scale_epochs,
    strategy_to_toml,
    with_base_lr,
)

GOOD = """
description = "head, then the last block"
[[phases]]
name = "head"
trainable = ["head"]
epochs = 10
optimizer = "adam"
lr = 1e-3
bn = "frozen"
[[phases]]
name = "blocks"
trainable = ["last_blocks:1", "head"]
epochs = 5
lr_scale = 0.1
"""


def write(tmp_path, text: str, name: str = "mine.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_load_user_strategy_file(tmp_path):
    strategy = load_strategy_file(write(tmp_path, GOOD))
    assert strategy.name == "mine"  # defaults to the file name
    assert [p.name for p in strategy.phases] == ["head", "blocks"]
    head, blocks = strategy.phases
    assert (head.optimizer, head.lr, head.bn, head.epochs) == ("adam", 1e-3, "frozen", 10)
    # defaults, and lr derived from lr_scale
    assert (blocks.optimizer, blocks.bn, blocks.weight_decay) == ("adamw", "train", 0.0)
    assert blocks.lr == pytest.approx(1e-4) and blocks.lr_scale == 0.1
    assert strategy.total_epochs == 15 and strategy.truncate is None and strategy.module is None


def test_get_strategy_accepts_a_file_path(tmp_path):
    path = write(tmp_path, 'name = "custom"\n' + GOOD)
    assert get_strategy(str(path)).name == "custom"
    assert get_strategy(path).phases[1].name == "blocks"


BAD = [
    # (file text, expected message after "<path>: ")
    (
        GOOD.replace("epochs = 10", "epoch = 10"),
        "unknown key 'epoch' in phase 1 ('head'), did you mean 'epochs'?",
    ),
    (GOOD.replace('description = "', 'descripton = "'), "unknown key 'descripton' in strategy, did you mean"),
    (GOOD.replace("lr = 1e-3", "lr = -1"), "phase 1 ('head') lr: Input should be greater than 0"),
    (
        GOOD.replace("epochs = 5", "epochs = 0"),
        "phase 2 ('blocks') epochs: Input should be greater than or equal to 1",
    ),
    (GOOD.replace("epochs = 10\n", ""), "phase 1 ('head') epochs: missing"),
    (
        GOOD.replace('"adam"', '"adm"'),
        "phase 1 ('head') optimizer: Input should be 'adam', 'adamw', 'sgd' or 'lars'",
    ),
    (GOOD.replace('"frozen"', '"freeze"'), "phase 1 ('head') bn: Input should be 'frozen' or 'train'"),
    (
        GOOD.replace('"last_blocks:1"', '"last_block:1"'),
        "unknown selector 'last_block:1', did you mean 'last_blocks'?",
    ),
    (GOOD.replace('"last_blocks:1"', '"last_blocks:x"'), "needs a whole number >= 1 after 'last_blocks:'"),
    (
        GOOD.replace('"head"]\nepochs = 5', '"head stage"]\nepochs = 5'),
        "selector 'head stage' is not a group name",
    ),
    (GOOD.replace('name = "blocks"', 'name = "head"'), "phase names must be unique; repeated: head"),
    (GOOD.replace("lr_scale = 0.1", "lr_scale = 0.1\nlr = 0.5"), "gives lr = 0.5 and lr_scale = 0.1"),
    (GOOD.replace("lr = 1e-3", "lr_scale = 2.0"), "phase 1 ('head') needs lr; lr_scale is for later phases"),
    (GOOD.replace("lr_scale = 0.1", ""), "phase 2 ('blocks') lr: missing"),
    ('description = "no phases"\n', "phases: missing"),
    ("truncate = 0\n" + GOOD, "truncate: Input should be greater than or equal to 1"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_strategy_file_gives_one_line_naming_file_and_problem(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_strategy_file(path)
    line = str(info.value)
    assert line.startswith(f"{path}: "), line
    assert message in line, line
    assert "\n" not in line


def test_unknown_key_lists_valid_keys(tmp_path):
    path = write(tmp_path, GOOD.replace("bn = ", "batchnorm = "))
    with pytest.raises(ConfigError, match="valid keys: bn, epochs, lr, lr_scale, momentum, name, optimizer"):
        load_strategy_file(path)


def test_unreadable_strategy_files(tmp_path):
    with pytest.raises(InputError, match=r"nope\.toml: strategy file not found"):
        load_strategy_file(tmp_path / "nope.toml")
    path = write(tmp_path, "[[phases]\nname=", "broken.toml")
    with pytest.raises(InputError) as info:
        load_strategy_file(path)
    assert str(info.value).startswith(f"{path}: not valid TOML")


@pytest.mark.parametrize("name", list_strategies())
def test_builtin_strategies_round_trip_through_toml(tmp_path, name):
    strategy = get_strategy(name)
    path = write(tmp_path, strategy_to_toml(strategy), "copy.toml")
    loaded = load_strategy_file(path)
    assert loaded.model_dump() == strategy.model_dump() and loaded.source == str(path)


def test_scale_epochs_rounds_and_never_goes_below_one():
    da = get_strategy("DA_L1SB_PFT")
    assert [p.epochs for p in scale_epochs(da, 0.5).phases] == [500, 50, 25]
    assert [p.epochs for p in scale_epochs(da, 0.001).phases] == [1, 1, 1]
    assert [p.epochs for p in scale_epochs(da, 2).phases] == [2000, 200, 100]
    assert da.phases[0].epochs == 1000  # strategies are immutable values


@pytest.mark.parametrize("factor", [0, -1, float("nan"), "2"])
def test_scale_epochs_rejects_non_positive_factors(factor):
    with pytest.raises(ConfigError, match="epochs scale must be a positive number"):
        scale_epochs(get_strategy("DA"), factor)


@pytest.mark.parametrize("key", ["phase2", "last_blocks", 2, "2", "Phase2"])
def test_override_epochs_by_phase_name_or_position(key):
    strategy = override_epochs(get_strategy("DA_L2SB"), {key: 3})
    assert [p.epochs for p in strategy.phases] == [1000, 3]


def test_override_epochs_errors():
    da = get_strategy("DA_L2SB")
    with pytest.raises(ConfigError, match="strategy 'DA_L2SB' has no phase 'phase3', did you mean"):
        override_epochs(da, {"phase3": 3})
    with pytest.raises(ConfigError, match="epochs for phase 'head' must be a whole number >= 1, got 0"):
        override_epochs(da, {"head": 0})


def test_with_base_lr_keeps_ratios_between_phases():
    staged = with_base_lr(get_strategy("staged"), 1e-3)
    assert staged.phases[0].lr == 1e-3
    assert staged.phases[1].lr == pytest.approx(1e-4)
    with pytest.raises(ConfigError, match="learning rate must be a positive number"):
        with_base_lr(staged, 0)


def test_strategy_phase_lookup():
    pft = get_strategy("DA_L2SB_PFT")
    assert pft.phase("phase3") is pft.phases[2]
    assert pft.phase("last_blocks") is pft.phases[1]
    assert isinstance(pft, Strategy)
