"""Built-in strategies on real backbones: the study's ResNet-50 counts, and every built-in on tiny models."""

from __future__ import annotations

import functools

import pytest

from medtl.models.transfer_model import build_model
from medtl.strategies import describe_strategy, get_strategy, list_strategies, resolve_phase

# (strategy, phase index, total parameters, trainable parameters): torchvision ResNet-50, 1 output, BN frozen
RESNET50_COUNTS = [
    ("DA", 0, 23_510_081, 2_049),  # head only
    ("DA", 1, 23_510_081, 23_456_961),  # all non-BN
    ("DA_L1SB", 1, 23_510_081, 4_458_497),
    ("DA_L2SB", 1, 23_510_081, 8_914_945),
    ("DA_L1SB_PFT", 2, 23_510_081, 23_456_961),
    ("DA_L2SB_PFT", 1, 23_510_081, 8_914_945),
    ("DA_TF_F1B", 0, 225_601, 257),
    ("DA_TF_F1B", 1, 225_601, 222_657),
    ("DA_TF_F2B", 0, 1_445_441, 513),
    ("DA_TF_F2B", 1, 1_445_441, 1_435_329),
    ("linear", 0, 23_510_081, 2_049),
    ("full", 0, 23_510_081, 23_510_081),
]


@functools.cache
def _model(backbone: str, num_outputs: int, module: str | None, truncate: int | None):
    return build_model(backbone, num_outputs, module=module, truncate=truncate)


def model_for(backbone: str, strategy, num_outputs: int = 2):
    return _model(backbone, num_outputs, strategy.module, strategy.truncate)


@pytest.mark.parametrize(("name", "index", "total", "trainable"), RESNET50_COUNTS)
def test_resnet50_counts_match_the_domain_adaptive_study(name, index, total, trainable):
    strategy = get_strategy(name)
    resolved = resolve_phase(model_for("resnet50", strategy, 1), strategy.phases[index])
    assert (resolved.num_total, resolved.num_trainable) == (total, trainable)


def test_describe_strategy_counts_every_phase():
    summary = describe_strategy(get_strategy("DA_L2SB_PFT"), "resnet50", 1)
    assert summary.num_total == 23_510_081
    assert [p.num_trainable for p in summary.phases] == [2_049, 8_914_945, 23_456_961]
    assert summary.phases[1].trained_groups == ["stage4 (part)", "head"]


TINY = ["resnet18", "resnet10t", "vit_tiny_patch16_224", "convnext_atto"]


@pytest.mark.parametrize("backbone", TINY)
def test_groups_cover_every_parameter_once(backbone):
    model = _model(backbone, 2, None, None)
    members = [n for names in model.groups().values() for n in names]
    assert sorted(members) == sorted(n for n, _ in model.named_parameters())
    blocks = [n for block in model.blocks() for n in block]
    assert len(blocks) == len(set(blocks)) and set(blocks) <= set(members)


@pytest.mark.parametrize("name", list_strategies())
@pytest.mark.parametrize("backbone", TINY)
def test_every_builtin_resolves_on_tiny_backbones(backbone, name):
    strategy = get_strategy(name)
    model = model_for(backbone, strategy)
    total = sum(p.numel() for p in model.parameters())
    head = sum(p.numel() for p in model.head.parameters())
    previous = 0
    for phase in strategy.phases:
        resolved = resolve_phase(model, phase)
        assert resolved.num_total == total
        assert head <= resolved.num_trainable <= total
        assert all(n.startswith("head.") for n in model.groups()["head"])
        if phase.trainable == ["head"]:
            assert resolved.num_trainable == head
        # phases open up more of the network, never less
        assert resolved.num_trainable >= previous
        previous = resolved.num_trainable
