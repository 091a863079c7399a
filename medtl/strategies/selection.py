"""Resolve a phase's selectors against a model and apply them: requires_grad, BatchNorm modes, optimiser.

Written once against the model's named groups (``groups()``, ``blocks()``, ``norm_layers()``), never
against an architecture. The engine's use per phase::

    resolved = apply_phase(model, phase)
    optimizer = make_optimizer(param_groups(model, phase), ...)
    for epoch in ...:
        model.train()
        apply_bn_policy(model, resolved)   # model.train() puts frozen BatchNorm layers back in train mode
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from medtl.errors import ConfigError, did_you_mean
from medtl.strategies.strategy import SELECTOR_KEYWORDS, Strategy, StrategyPhase

if TYPE_CHECKING:  # torch stays unimported until a model exists (fast `medtl strategies list`)
    from torch import nn

# Groups that are not part of the backbone.
_NON_BACKBONE_GROUPS = ("head", "module")
_STAGE = re.compile(r"^stage\d+$")


class GroupedModel(Protocol):
    """What a strategy needs from a model (``medtl.models.TransferModel`` provides it). A model may also
    define ``head_groups()``: the groups the ``head`` selector trains (a U-Net's decoder and head)."""

    def groups(self) -> dict[str, list[str]]: ...
    def blocks(self) -> list[list[str]]: ...
    def norm_layers(self) -> list[nn.Module]: ...
    def named_parameters(self, *args: Any, **kwargs: Any) -> Any: ...
    def named_modules(self, *args: Any, **kwargs: Any) -> Any: ...


@dataclass(frozen=True)
class ResolvedPhase:
    """A phase resolved against one model: what trains, the counts, which norm layers stay in eval mode."""

    phase: StrategyPhase
    trainable_names: list[str]
    num_trainable: int
    num_total: int
    eval_norm_layers: list[str] = field(default_factory=list)
    # group -> (trainable, total) parameter counts, in the model's group order
    group_counts: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def trained_groups(self) -> list[str]:
        """Groups with at least one trainable parameter, marked '(part)' when not every one trains."""
        out = []
        for name, (trainable, total) in self.group_counts.items():
            if trainable:
                out.append(name if trainable == total else f"{name} (part)")
        return out


def resolve_phases(model: GroupedModel, strategy: Strategy) -> list[ResolvedPhase]:
    """Resolve every phase of ``strategy`` on ``model`` now (nothing changes), so a bad selector in a
    late phase fails before any training; errors name the strategy file it came from."""
    try:
        return [resolve_phase(model, phase) for phase in strategy.phases]
    except ConfigError as exc:
        if strategy.source and not exc.message.startswith(strategy.source):
            raise ConfigError(f"{strategy.source}: {exc.message}", hint=exc.hint) from None
        raise


def resolve_phase(model: GroupedModel, phase: StrategyPhase) -> ResolvedPhase:
    """Which parameters train in ``phase`` on ``model`` (changes nothing; see :func:`apply_phase`)."""
    params = dict(model.named_parameters())
    groups = _group_table(model)
    norm_modules = _named_norm_layers(model)
    norm_params = {f"{m}.{p}" if m else p for m, mod in norm_modules for p, _ in mod.named_parameters()}

    selected: set[str] = set()
    for selector in phase.trainable:
        selected |= _select(selector, model, params, groups, norm_params, phase)
    if phase.bn == "frozen":
        selected -= norm_params
    names = [n for n in params if n in selected]

    eval_layers = []
    for module_name, module in norm_modules:
        own = [f"{module_name}.{p}" if module_name else p for p, _ in module.named_parameters()]
        if phase.bn == "frozen" or (own and not any(n in selected for n in own)):
            eval_layers.append(module_name)

    group_counts = {
        group: (
            sum(params[n].numel() for n in members if n in selected),
            sum(params[n].numel() for n in members),
        )
        for group, members in groups.items()
    }
    return ResolvedPhase(
        phase=phase,
        trainable_names=names,
        num_trainable=sum(params[n].numel() for n in names),
        num_total=sum(p.numel() for p in params.values()),
        eval_norm_layers=eval_layers,
        group_counts=group_counts,
    )


def apply_phase(model: GroupedModel, phase: StrategyPhase) -> ResolvedPhase:
    """Make exactly the phase's parameters trainable and apply its BatchNorm policy."""
    resolved = resolve_phase(model, phase)
    trainable = set(resolved.trainable_names)
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable)
    apply_bn_policy(model, resolved)
    return resolved


def apply_bn_policy(model: GroupedModel, resolved: ResolvedPhase) -> None:
    """Hold the phase's frozen norm layers in eval mode; call it after every ``model.train()``.

    Eval mode keeps the running statistics fixed, which ``requires_grad`` alone does not: a BatchNorm
    layer in train mode updates them on every forward pass.
    """
    frozen = set(resolved.eval_norm_layers)
    training = bool(getattr(model, "training", True))
    for name, module in _named_norm_layers(model):
        module.train(training and name not in frozen)


def param_groups(model: GroupedModel, phase: StrategyPhase) -> list[dict[str, Any]]:
    """Optimiser parameter groups for the phase's trainable parameters, at the phase's lr.

    With weight decay, biases and other 1-d parameters (norm scales and shifts, ViT tokens' scales) go
    into a group without it, as timm and most fine-tuning recipes do.
    """
    params = dict(model.named_parameters())
    names = resolve_phase(model, phase).trainable_names
    if phase.weight_decay == 0:
        groups = [{"params": [params[n] for n in names], "weight_decay": 0.0}]
    else:
        decay = [params[n] for n in names if params[n].ndim > 1 and not n.endswith(".bias")]
        no_decay = [params[n] for n in names if not (params[n].ndim > 1 and not n.endswith(".bias"))]
        groups = [
            {"params": decay, "weight_decay": phase.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
    return [{**g, "lr": phase.lr} for g in groups if g["params"]]


def count_parameters(model: GroupedModel, phase: StrategyPhase) -> tuple[int, int]:
    """(total, trainable) parameter counts of ``model`` in ``phase`` (parameters only, no BN buffers)."""
    resolved = resolve_phase(model, phase)
    return resolved.num_total, resolved.num_trainable


# --- selectors -------------------------------------------------------------------------------------


def _group_table(model: GroupedModel) -> dict[str, list[str]]:
    """The model's groups keyed by short name ("stem", not "backbone.stem")."""
    return {key.removeprefix("backbone."): list(members) for key, members in model.groups().items()}


def _head_groups(model: GroupedModel) -> list[str]:
    """What the ``head`` selector means: ``model.head_groups()`` when the model says, else ["head"]."""
    head_groups = getattr(model, "head_groups", None)
    return list(head_groups()) if callable(head_groups) else []


def _named_norm_layers(model: GroupedModel) -> list[tuple[str, nn.Module]]:
    norm_ids = {id(m) for m in model.norm_layers()}
    return [(name, m) for name, m in model.named_modules() if id(m) in norm_ids]


def _select(
    selector: str,
    model: GroupedModel,
    params: dict[str, Any],
    groups: dict[str, list[str]],
    norm_params: set[str],
    phase: StrategyPhase,
) -> set[str]:
    where = f"phase '{phase.name}'"
    if selector == "all":
        return set(params)
    if selector == "all_non_bn":
        return set(params) - norm_params
    new_groups = _head_groups(model)
    if selector == "backbone":
        outside = {*_NON_BACKBONE_GROUPS, *new_groups}
        return {n for g, members in groups.items() if g not in outside for n in members}
    if selector == "head" and new_groups:
        # A model with more new parts than a head (a U-Net's decoder) trains them all where a strategy
        # trains "the head", so one strategy file serves classification and segmentation.
        return {n for g in new_groups for n in groups.get(g, [])}
    prefix, _, arg = selector.partition(":")
    if prefix == "last_blocks":
        blocks = model.blocks()
        if int(arg) > len(blocks):
            raise ConfigError(
                f"{where}: '{selector}' asks for more blocks than the model has ({len(blocks)})"
            )
        return {n for block in blocks[-int(arg) :] for n in block}
    if prefix == "last_stages":
        stages = [g for g in groups if _STAGE.match(g)]
        if int(arg) > len(stages):
            raise ConfigError(
                f"{where}: '{selector}' asks for more stages than the model has ({len(stages)})"
            )
        return {n for g in stages[-int(arg) :] for n in groups[g]}
    if prefix == "params":
        matched = {n for n in params if fnmatch.fnmatchcase(n, arg)}
        if not matched:
            raise ConfigError(f"{where}: '{selector}' matches no parameter of the model")
        return matched
    if selector in groups:
        return set(groups[selector])
    if selector == "module":
        raise ConfigError(
            f"{where} trains 'module' but the model has none",
            hint='set module = "cdtm" in the strategy',
        )
    choices = [*groups, *SELECTOR_KEYWORDS, "last_blocks:N", "last_stages:N", "params:GLOB"]
    close = did_you_mean(selector, choices) or "; valid selectors: " + ", ".join(choices)
    raise ConfigError(f"{where}: unknown selector '{selector}'{close}")
