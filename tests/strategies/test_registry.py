"""The built-in strategies: names, lookup, and the domain-adaptive study's protocol as data."""

from __future__ import annotations

import pytest

from medtl.errors import UnknownChoiceError
from medtl.strategies import get_strategy, list_strategies

GENERIC = ["linear", "full", "l1sb", "l2sb", "progressive", "staged", "tf_f1b", "tf_f2b", "frt", "adaptor"]
STUDY = ["DA", "DA_L1SB", "DA_L2SB", "DA_L1SB_PFT", "DA_L2SB_PFT", "DA_TF_F1B", "DA_TF_F2B"]


def test_list_strategies_in_definition_order():
    assert list_strategies() == GENERIC + STUDY


@pytest.mark.parametrize("name", GENERIC + STUDY)
def test_every_builtin_has_a_description(name):
    strategy = get_strategy(name)
    assert strategy.name == name and len(strategy.description) > 20


HEAD = (["head"], 1000, "adam", 1e-4, "frozen")
# The domain-adaptive study's protocol (README table): (trainable, epochs, optimizer, lr, bn) per phase
DA_PROTOCOL = {
    "DA": (None, [HEAD, (["all_non_bn"], 150, "adam", 1e-5, "frozen")]),
    "DA_L1SB": (None, [HEAD, (["last_blocks:1", "head"], 150, "adam", 1e-5, "frozen")]),
    "DA_L2SB": (None, [HEAD, (["last_blocks:2", "head"], 150, "adam", 1e-5, "frozen")]),
    "DA_L1SB_PFT": (
        None,
        [
            HEAD,
            (["last_blocks:1", "head"], 100, "adam", 1e-5, "frozen"),
            (["all_non_bn"], 50, "adam", 1e-5, "frozen"),
        ],
    ),
    "DA_L2SB_PFT": (
        None,
        [
            HEAD,
            (["last_blocks:2", "head"], 100, "adam", 1e-5, "frozen"),
            (["all_non_bn"], 50, "adam", 1e-5, "frozen"),
        ],
    ),
    "DA_TF_F1B": (1, [HEAD, (["all_non_bn"], 150, "adam", 1e-5, "frozen")]),
    "DA_TF_F2B": (2, [HEAD, (["all_non_bn"], 150, "adam", 1e-5, "frozen")]),
}


@pytest.mark.parametrize("name", STUDY)
def test_domain_adaptive_presets_follow_the_study(name):
    truncate, phases = DA_PROTOCOL[name]
    strategy = get_strategy(name)
    assert strategy.truncate == truncate and strategy.module is None
    got = [(p.trainable, p.epochs, p.optimizer, p.lr, p.bn) for p in strategy.phases]
    assert got == phases


@pytest.mark.parametrize(
    ("name", "truncate", "module", "first_phase"),
    [
        ("linear", None, None, ["head"]),
        ("full", None, None, ["all"]),
        ("l1sb", None, None, ["last_blocks:1", "head"]),
        ("l2sb", None, None, ["last_blocks:2", "head"]),
        ("progressive", None, None, ["head"]),
        ("staged", None, "cdtm", ["module", "head"]),
        ("tf_f1b", 1, None, ["all"]),
        ("tf_f2b", 2, None, ["all"]),
        ("frt", None, "cdtm", ["module", "head"]),
    ],
)
def test_generic_strategies(name, truncate, module, first_phase):
    strategy = get_strategy(name)
    assert (strategy.truncate, strategy.module) == (truncate, module)
    assert strategy.phases[0].trainable == first_phase


def test_progressive_and_staged_lower_the_lr_tenfold():
    progressive = get_strategy("progressive")
    assert [p.trainable for p in progressive.phases] == [["head"], ["last_blocks:2", "head"], ["all_non_bn"]]
    assert [p.lr for p in progressive.phases] == pytest.approx([1e-4, 1e-5, 1e-5])
    staged = get_strategy("staged")
    assert staged.phases[1].trainable == ["all"]
    assert staged.phases[1].lr == pytest.approx(staged.phases[0].lr / 10)


def test_lookup_is_case_insensitive():
    assert get_strategy("da_l1sb").name == "DA_L1SB"
    assert get_strategy("LINEAR").name == "linear"


def test_unknown_strategy_suggests_close_names():
    with pytest.raises(UnknownChoiceError) as info:
        get_strategy("DA_L3SB")
    assert str(info.value).startswith("unknown strategy 'DA_L3SB', did you mean 'DA_L2SB', 'DA_L1SB'")
    assert ".toml" in info.value.hint
