"""Segmentation losses, from MONAI where it has them, for softmax (multi-class) and sigmoid (multi-label).

A loss is called as ``loss(logits, target)``: logits (B, C, H, W); the target is (B, 1, H, W) class
indices for ``multiclass`` (one softmax over C classes, background included) or (B, C, H, W) 0/1 for
``multilabel`` (one sigmoid per channel: binary masks, BraTS regions that overlap).

| name | loss |
|---|---|
| ``dice`` | 1 - Dice of the probabilities, per channel over the whole batch (the 21-model benchmark's) |
| ``soft_dice`` | V-Net soft Dice: squared probabilities in the denominator, per image and channel |
| ``log_dice`` | -log(Dice), per image and channel (stronger gradients when Dice is low) |
| ``ce`` | cross-entropy (multi-class), optional class weights |
| ``bce`` | binary cross-entropy with logits (multi-label), optional per-channel positive weights |
| ``focal`` | focal loss (gamma 2), softmax or sigmoid, optional class weights |
| ``dice_ce`` | Dice per image (MONAI ``DiceLoss``) + CE (multi-class) or BCE (multi-label) |
| ``dice_focal`` | Dice per image + focal (MONAI ``FocalLoss``) |

Multi-class Dice terms leave the background channel out (as nnU-Net does): it dominates the pixels
and would make every Dice look good.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from medtl.errors import ConfigError, UnknownChoiceError

SEGMENTATION_LOSSES = ("dice", "soft_dice", "log_dice", "ce", "bce", "focal", "dice_ce", "dice_focal")
SegmentationMode = Literal["multiclass", "multilabel"]
SEGMENTATION_MODES = ("multiclass", "multilabel")


class LogDiceLoss(nn.Module):
    """-log(Dice) per image and channel, averaged (MONAI's DiceLoss gives 1 - Dice)."""

    def __init__(self, dice: nn.Module, eps: float = 1e-6) -> None:
        super().__init__()
        self.dice, self.eps = dice, eps

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        dice = 1 - self.dice(logits, target)  # (B, C, 1, 1) with reduction "none"
        return -dice.clamp_min(self.eps).log().mean()


class IndexCrossEntropy(nn.CrossEntropyLoss):
    """Cross-entropy with the (B, 1, H, W) class-index target the other losses take."""

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return super().forward(logits, target[:, 0])


class SegmentationLoss(nn.Module):
    """A loss with its target brought to one form: int64 class indices (B, 1, H, W) for multi-class,
    float 0/1 (B, C, H, W) for multi-label, so masks can come straight from the store."""

    def __init__(self, loss: nn.Module, mode: SegmentationMode) -> None:
        super().__init__()
        self.loss, self.mode = loss, mode

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        if self.mode == "multiclass":
            target = (target if target.ndim == logits.ndim else target.unsqueeze(1)).long()
        else:
            target = target.to(logits.dtype)
        return self.loss(logits, target)


class SumOfLosses(nn.Module):
    """``first + second``. MONAI's DiceCELoss uses softmax CE whenever there are several channels (wrong
    for overlapping multi-label channels) and its DiceCELoss / DiceFocalLoss disagree on whether class
    weights include the background, so the sums are put together here from MONAI's parts."""

    def __init__(self, first: nn.Module, second: nn.Module) -> None:
        super().__init__()
        self.first, self.second = first, second

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return self.first(logits, target) + self.second(logits, target)


def _dice(multiclass: bool, **kwargs: object) -> nn.Module:
    from monai.losses import DiceLoss

    return DiceLoss(
        include_background=not multiclass,
        to_onehot_y=multiclass,
        softmax=multiclass,
        sigmoid=not multiclass,
        **kwargs,
    )


def _focal(multiclass: bool, weight: Tensor | None) -> nn.Module:
    from monai.losses import FocalLoss

    return FocalLoss(to_onehot_y=multiclass, use_softmax=multiclass, weight=weight)


def _pos_weight(weight: Tensor | None) -> Tensor | None:
    return None if weight is None else weight.view(-1, 1, 1)


def make_segmentation_loss(
    name: str, mode: SegmentationMode, num_channels: int, *, class_weights: Sequence[float] | None = None
) -> SegmentationLoss:
    """The loss ``name`` for ``mode`` over ``num_channels`` logits; ``class_weights`` (one per channel)
    weight CE/BCE/focal terms."""
    if name not in SEGMENTATION_LOSSES:
        raise UnknownChoiceError("segmentation loss", name, SEGMENTATION_LOSSES)
    if mode not in SEGMENTATION_MODES:
        raise UnknownChoiceError("segmentation mode", mode, SEGMENTATION_MODES)
    multiclass = mode == "multiclass"
    if multiclass and num_channels < 2:
        raise ConfigError(
            "a multi-class (softmax) segmentation needs at least 2 channels, background included"
        )
    if name == "ce" and not multiclass:
        raise ConfigError(
            "the 'ce' loss is for multi-class (softmax) segmentation; use 'bce' for multi-label"
        )
    if name == "bce" and multiclass:
        raise ConfigError(
            "the 'bce' loss is for multi-label (sigmoid) segmentation; use 'ce' for multi-class"
        )
    weight = None
    if class_weights is not None:
        if len(class_weights) != num_channels:
            raise ConfigError(f"{len(class_weights)} class weights for {num_channels} output channels")
        if name in ("dice", "soft_dice", "log_dice"):
            raise ConfigError(f"class weights apply to CE, BCE and focal terms; the '{name}' loss has none")
        weight = torch.tensor([float(w) for w in class_weights])
    return SegmentationLoss(_loss(name, multiclass, weight), mode)


def _loss(name: str, multiclass: bool, weight: Tensor | None) -> nn.Module:
    if name == "dice":
        return _dice(multiclass, batch=True)
    if name == "soft_dice":
        return _dice(multiclass, squared_pred=True)
    if name == "log_dice":
        return LogDiceLoss(_dice(multiclass, reduction="none"))
    if name == "ce":
        return IndexCrossEntropy(weight=weight)
    if name == "bce":
        return nn.BCEWithLogitsLoss(pos_weight=_pos_weight(weight))
    if name == "focal":
        return _focal(multiclass, weight)
    if name == "dice_focal":
        return SumOfLosses(_dice(multiclass), _focal(multiclass, weight))
    second = (
        IndexCrossEntropy(weight=weight)
        if multiclass
        else nn.BCEWithLogitsLoss(pos_weight=_pos_weight(weight))
    )
    return SumOfLosses(_dice(multiclass), second)  # dice_ce
