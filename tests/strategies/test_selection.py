"""Resolving and applying phases on a hand-made model with TransferModel's group interface."""

from __future__ import annotations

import pytest
import torch

from medtl.errors import ConfigError
from medtl.strategies import (
    StrategyPhase,
    apply_bn_policy,
    apply_phase,
    count_parameters,
    param_groups,
    resolve_phase,
)
from tests.strategies.toy_model import ToyModel

TOTAL = 734  # stem 116 + stage1 304 + stage2 304 + head 10
ALL_BN = ["backbone.stem.1", "backbone.stage1.0.bn", "backbone.stage1.1.bn", "backbone.stage2.0.bn"]
ALL_BN += ["backbone.stage2.1.bn"]


def phase(trainable: list[str], bn: str = "train", weight_decay: float = 0.0) -> StrategyPhase:
    return StrategyPhase(name="p", trainable=trainable, epochs=1, lr=1e-3, bn=bn, weight_decay=weight_decay)


# selectors, bn policy, trainable parameters, norm layers held in eval mode
CASES = [
    (["head"], "frozen", 10, ALL_BN),
    (["head"], "train", 10, ALL_BN),
    (["last_blocks:1", "head"], "frozen", 144 + 10, ALL_BN),
    (["last_blocks:1", "head"], "train", 152 + 10, ALL_BN[:-1]),
    (["last_blocks:2", "head"], "frozen", 288 + 10, ALL_BN),
    (["all"], "frozen", TOTAL - 40, ALL_BN),
    (["all"], "train", TOTAL, []),
    (["all_non_bn"], "train", TOTAL - 40, ALL_BN),
    (["backbone"], "train", TOTAL - 10, []),
    (["stage1"], "train", 304, [ALL_BN[0], *ALL_BN[3:]]),
    (["last_stages:1", "head"], "train", 304 + 10, ALL_BN[:3]),
    (["stem", "head"], "frozen", 108 + 10, ALL_BN),
    (["params:*.bias"], "train", 5 * 4 + 2, []),
    (["params:*.bias"], "frozen", 2, ALL_BN),
]


@pytest.mark.parametrize(("selectors", "bn", "trainable", "eval_layers"), CASES)
def test_resolve_phase_counts_and_norm_modes(toy, selectors, bn, trainable, eval_layers):
    resolved = resolve_phase(toy, phase(selectors, bn))
    assert resolved.num_total == TOTAL == sum(p.numel() for p in toy.parameters())
    assert resolved.num_trainable == trainable
    assert sorted(resolved.eval_norm_layers) == sorted(eval_layers)
    params = dict(toy.named_parameters())
    assert sum(params[n].numel() for n in resolved.trainable_names) == trainable
    # resolving changes nothing
    assert all(p.requires_grad for p in toy.parameters())


def test_resolved_phase_reports_group_counts(toy):
    resolved = resolve_phase(toy, phase(["last_blocks:1", "head"], "frozen"))
    assert resolved.group_counts == {
        "stem": (0, 116),
        "stage1": (0, 304),
        "stage2": (144, 304),
        "head": (10, 10),
    }
    assert resolved.trained_groups == ["stage2 (part)", "head"]


def test_group_keys_prefixed_with_backbone_are_selected_by_short_name():
    model = ToyModel(prefixed_keys=True)
    assert resolve_phase(model, phase(["stem"])).num_trainable == 116
    assert resolve_phase(model, phase(["backbone"])).num_trainable == TOTAL - 10


def test_count_parameters_excludes_batchnorm_buffers(toy):
    total, trainable = count_parameters(toy, phase(["head"], "frozen"))
    assert (total, trainable) == (TOTAL, 10)
    buffers = sum(b.numel() for b in toy.buffers())
    assert buffers > 0 and total + buffers != total


def test_apply_phase_sets_requires_grad_and_only_trainable_parameters_get_gradients(toy):
    resolved = apply_phase(toy, phase(["last_blocks:1", "head"], "frozen"))
    trainable = {n for n, p in toy.named_parameters() if p.requires_grad}
    assert (
        trainable
        == set(resolved.trainable_names)
        == {
            "backbone.stage2.1.conv.weight",
            "head.weight",
            "head.bias",
        }
    )
    toy.train()
    apply_bn_policy(toy, resolved)
    toy(torch.randn(2, 3, 8, 8)).sum().backward()
    with_grad = {n for n, p in toy.named_parameters() if p.grad is not None}
    assert with_grad == trainable


def test_frozen_bn_keeps_running_statistics_fixed_in_train_mode(toy):
    resolved = apply_phase(toy, phase(["all"], "frozen"))
    toy.train()  # the engine's epoch start puts every module in train mode ...
    apply_bn_policy(toy, resolved)  # ... and this puts the frozen BN layers back
    before = {k: v.clone() for k, v in toy.state_dict().items() if "running" in k}
    toy(torch.randn(4, 3, 8, 8) * 3 + 1)
    after = {k: v for k, v in toy.state_dict().items() if "running" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not m.training for m in toy.norm_layers())
    assert toy.head.training and toy.backbone.stage1.training


def test_bn_train_updates_only_the_selected_layers_statistics(toy):
    resolved = apply_phase(toy, phase(["last_blocks:1", "head"], "train"))
    toy.train()
    apply_bn_policy(toy, resolved)
    before = {k: v.clone() for k, v in toy.state_dict().items() if k.endswith("running_mean")}
    toy(torch.randn(4, 3, 8, 8) * 3 + 1)
    changed = {k for k, v in toy.state_dict().items() if k in before and not torch.equal(v, before[k])}
    assert changed == {"backbone.stage2.1.bn.running_mean"}
    assert toy.backbone.stage2[1].bn.weight.requires_grad


def test_bn_policy_follows_eval_mode_and_the_next_phase(toy):
    frozen = apply_phase(toy, phase(["head"], "frozen"))
    toy.eval()
    apply_bn_policy(toy, frozen)
    assert not any(m.training for m in toy.norm_layers())
    toy.train()
    later = apply_phase(toy, phase(["all"], "train"))  # the next phase unfreezes without a train() call
    assert later.eval_norm_layers == []
    assert all(m.training for m in toy.norm_layers())
    assert all(p.requires_grad for p in toy.parameters())


def test_param_groups_without_weight_decay_is_one_group_at_phase_lr(toy):
    groups = param_groups(toy, phase(["last_blocks:1", "head"], "train"))
    assert len(groups) == 1
    assert groups[0]["lr"] == 1e-3 and groups[0]["weight_decay"] == 0.0
    assert sum(p.numel() for p in groups[0]["params"]) == 162


def test_param_groups_exempt_biases_and_norms_from_weight_decay(toy):
    groups = param_groups(toy, phase(["last_blocks:1", "head"], "train", weight_decay=0.05))
    decay, no_decay = groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert {p.numel() for p in decay["params"]} == {144, 8}  # conv weight, head weight
    assert sum(p.numel() for p in no_decay["params"]) == 4 + 4 + 2  # bn weight + bias, head bias
    optimizer = torch.optim.AdamW(groups)
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == 162


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("haed", "phase 'p': unknown selector 'haed', did you mean 'head'?"),
        ("stage7", "phase 'p': unknown selector 'stage7', did you mean"),
        ("last_blocks:5", "phase 'p': 'last_blocks:5' asks for more blocks than the model has (4)"),
        ("last_stages:3", "phase 'p': 'last_stages:3' asks for more stages than the model has (2)"),
        ("params:encoder.*", "phase 'p': 'params:encoder.*' matches no parameter of the model"),
        ("module", "phase 'p' trains 'module' but the model has none"),
    ],
)
def test_selectors_that_do_not_fit_the_model(toy, selector, message):
    with pytest.raises(ConfigError) as info:
        resolve_phase(toy, phase([selector]))
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_module_selector_on_a_model_with_a_module():
    model = ToyModel(module=True)
    resolved = resolve_phase(model, phase(["module", "head"], "frozen"))
    assert resolved.num_trainable == 20 + 10
    assert resolved.group_counts["module"] == (20, 20)
