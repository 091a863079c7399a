"""Optimisers (LARS is timm's) and the per-phase learning-rate schedule."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.optim import Optimizer

from medtl.errors import UnknownChoiceError

OPTIMIZERS = ("adam", "adamw", "sgd", "lars")
SCHEDULERS = ("cosine", "linear", "plateau", "exponential", "none")


def lars_groups(param_groups: list[dict[str, Any]], weight_decay: float) -> list[dict[str, Any]]:
    """Split each group for ``timm.optim.Lars``: weights (ndim > 1) get the weight decay and the
    trust-ratio adaptation; biases and normalisation parameters (ndim <= 1) neither, as in the
    SimCLR and BYOL reference implementations (timm adapts a group only where ``always_adapt`` or
    its weight decay is set)."""
    out = []
    for group in param_groups:
        params = list(group["params"])
        rest = {k: v for k, v in group.items() if k != "params"}
        weights = [p for p in params if p.ndim > 1]
        flat = [p for p in params if p.ndim <= 1]
        decay = rest.pop("weight_decay", weight_decay)
        if weights:
            out.append({**rest, "params": weights, "weight_decay": decay, "always_adapt": True})
        if flat:
            out.append({**rest, "params": flat, "weight_decay": 0.0, "always_adapt": False})
    return out


def build_optimizer(
    name: str,
    param_groups: list[dict[str, Any]],
    *,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
) -> Optimizer:
    """An optimiser over ``param_groups`` (dicts with "params" and optionally "lr", "weight_decay")."""
    name = name.lower()
    if name == "adam":
        return torch.optim.Adam(param_groups, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(param_groups, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(param_groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "lars":
        from timm.optim import Lars

        return Lars(
            lars_groups(param_groups, weight_decay), lr=lr, momentum=momentum, weight_decay=weight_decay
        )
    raise UnknownChoiceError("optimizer", name, OPTIMIZERS)


class PhaseSchedule:
    """Learning rate of one phase: optional linear warmup, then cosine / linear (to 0, as the Adaptor
    and Hugging Face's ``get_linear_schedule_with_warmup``) / plateau / exponential / none.

    The lr of every parameter group is ``initial_lr x factor``, so per-group lr scales survive.
    Warmup, cosine and linear advance per optimiser step, exponential and plateau per epoch. The whole
    state is a few numbers, saved in the resume state.
    """

    def __init__(
        self,
        optimizer: Optimizer,
        kind: str,
        *,
        steps_per_epoch: int,
        epochs: int,
        warmup_epochs: float = 0.0,
        min_lr_ratio: float = 0.0,
        plateau_factor: float = 0.1,
        plateau_patience: int = 5,
        gamma: float = 0.95,
        mode: str = "max",
    ) -> None:
        if kind not in SCHEDULERS:
            raise UnknownChoiceError("scheduler", kind, SCHEDULERS)
        self.optimizer, self.kind, self.mode = optimizer, kind, mode
        self.total_steps = max(1, steps_per_epoch * epochs)
        self.warmup_steps = min(self.total_steps, round(warmup_epochs * steps_per_epoch))
        self.min_lr_ratio, self.gamma = min_lr_ratio, gamma
        self.plateau_factor, self.plateau_patience = plateau_factor, plateau_patience
        self.step_count, self.epoch, self.plateau_scale = 0, 0, 1.0
        self.best: float | None = None
        self.bad_epochs = 0
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self._apply()

    def factor(self) -> float:
        s = self.step_count
        if s < self.warmup_steps:
            return (s + 1) / self.warmup_steps
        if self.kind == "cosine":
            span = max(1, self.total_steps - self.warmup_steps)
            progress = min(1.0, (s - self.warmup_steps) / span)
            return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        if self.kind == "linear":
            span = max(1, self.total_steps - self.warmup_steps)
            return max(0.0, 1 - (s - self.warmup_steps) / span)
        if self.kind == "exponential":
            return self.gamma**self.epoch
        if self.kind == "plateau":
            return self.plateau_scale
        return 1.0

    def _apply(self) -> None:
        f = self.factor()
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] * f

    def after_step(self) -> None:
        self.step_count += 1
        self._apply()

    def after_epoch(self, monitored: float | None) -> None:
        self.epoch += 1
        if self.kind == "plateau" and monitored is not None and math.isfinite(monitored):
            better = self.best is None or (
                monitored < self.best if self.mode == "min" else monitored > self.best
            )
            if better:
                self.best, self.bad_epochs = monitored, 0
            else:
                self.bad_epochs += 1
                if self.bad_epochs > self.plateau_patience:
                    self.plateau_scale *= self.plateau_factor
                    self.bad_epochs = 0
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        keys = ("step_count", "epoch", "plateau_scale", "best", "bad_epochs")
        return {k: getattr(self, k) for k in keys}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
        self._apply()
