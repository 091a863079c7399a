"""Segmentation losses: values against their definitions, both modes, class weights, refusals."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from medtl.errors import ConfigError, UnknownChoiceError
from medtl.models.segmentation_losses import SEGMENTATION_LOSSES, make_segmentation_loss

MULTICLASS = [n for n in SEGMENTATION_LOSSES if n != "bce"]
MULTILABEL = [n for n in SEGMENTATION_LOSSES if n != "ce"]


def _multiclass(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, 3, (2, 1, 8, 8), generator=g)
    return torch.randn(2, 3, 8, 8, generator=g), target


def _multilabel(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    target = (torch.rand(2, 3, 8, 8, generator=g) < 0.4).long()
    target[:, 2] |= target[:, 1]  # overlapping regions (TC inside WT)
    return torch.randn(2, 3, 8, 8, generator=g), target


@pytest.mark.parametrize("name", MULTICLASS)
def test_multiclass_losses_prefer_the_truth(name):
    logits, target = _multiclass()
    loss = make_segmentation_loss(name, "multiclass", 3)
    perfect = 20 * F.one_hot(target[:, 0], 3).permute(0, 3, 1, 2).float() - 10
    assert torch.isfinite(loss(logits, target))
    assert loss(perfect, target) < 0.05 < loss(logits, target)


@pytest.mark.parametrize("name", MULTILABEL)
def test_multilabel_losses_prefer_the_truth(name):
    logits, target = _multilabel()
    loss = make_segmentation_loss(name, "multilabel", 3)
    perfect = 20 * target.float() - 10
    assert loss(perfect, target) < 0.05 < loss(logits, target)


def _soft_dice(probs, onehot, dims):
    inter = (probs * onehot).sum(dims)
    return (2 * inter + 1e-5) / (probs.sum(dims) + onehot.sum(dims) + 1e-5)


def test_dice_losses_match_their_definitions():
    logits, target = _multiclass()
    probs = logits.softmax(1)[:, 1:]  # background left out
    onehot = F.one_hot(target[:, 0], 3).permute(0, 3, 1, 2).float()[:, 1:]
    batch_dice = _soft_dice(probs, onehot, (0, 2, 3))
    torch.testing.assert_close(
        make_segmentation_loss("dice", "multiclass", 3)(logits, target), 1 - batch_dice.mean()
    )
    per_image = _soft_dice(probs, onehot, (2, 3))
    log_dice = make_segmentation_loss("log_dice", "multiclass", 3)(logits, target)
    torch.testing.assert_close(log_dice, -per_image.log().mean())
    squared = (2 * (probs * onehot).sum((2, 3)) + 1e-5) / ((probs**2).sum((2, 3)) + onehot.sum((2, 3)) + 1e-5)
    torch.testing.assert_close(
        make_segmentation_loss("soft_dice", "multiclass", 3)(logits, target), 1 - squared.mean()
    )


def test_class_weights_weight_ce_and_bce():
    logits, target = _multiclass()
    weights = [0.2, 1.0, 3.0]
    ce = make_segmentation_loss("ce", "multiclass", 3, class_weights=weights)(logits, target)
    torch.testing.assert_close(ce, F.cross_entropy(logits, target[:, 0], weight=torch.tensor(weights)))
    logits, target = _multilabel()
    bce = make_segmentation_loss("bce", "multilabel", 3, class_weights=weights)(logits, target)
    ref = F.binary_cross_entropy_with_logits(
        logits, target.float(), pos_weight=torch.tensor(weights).view(3, 1, 1)
    )
    torch.testing.assert_close(bce, ref)


def test_multilabel_dice_ce_uses_bce_for_overlapping_channels():
    logits, target = _multilabel()
    combined = make_segmentation_loss("dice_ce", "multilabel", 3)(logits, target)
    dice = make_segmentation_loss("dice", "multilabel", 3)
    probs = logits.sigmoid()
    per_image = _soft_dice(probs, target.float(), (2, 3))
    ref = (1 - per_image.mean()) + F.binary_cross_entropy_with_logits(logits, target.float())
    torch.testing.assert_close(combined, ref)
    assert dice(logits, target) != combined


@pytest.mark.parametrize(
    ("name", "mode", "kwargs", "message"),
    [
        ("ce", "multilabel", {}, "use 'bce' for multi-label"),
        ("bce", "multiclass", {}, "use 'ce' for multi-class"),
        ("ce", "multiclass", {"class_weights": [1.0, 2.0]}, "2 class weights for 3 output channels"),
        ("dice", "multiclass", {"class_weights": [1.0, 2.0, 3.0]}, "the 'dice' loss has none"),
    ],
)
def test_bad_loss_choices_are_one_line(name, mode, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        make_segmentation_loss(name, mode, 3, **kwargs)


def test_unknown_loss_lists_the_choices():
    with pytest.raises(UnknownChoiceError, match="dice_ce"):
        make_segmentation_loss("dice_bce", "multiclass", 3)
