"""Dice against MONAI's compute_dice."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice

from medtl.metrics import DiceMetric, dice_score


def test_dice_matches_monai_including_empty_ground_truth():
    rng = np.random.default_rng(0)
    true = (rng.random((6, 3, 16, 16)) < 0.3).astype(np.uint8)
    true[0, 1] = 0  # empty ground truth: NaN under ignore_empty
    true[2, 2] = 0
    prob = np.clip(true * 0.7 + rng.random(true.shape) * 0.5, 0, 1).astype(np.float32)
    ours = dice_score(prob, true)
    ref = compute_dice(torch.from_numpy((prob >= 0.5).astype(np.float32)), torch.from_numpy(true).float())
    np.testing.assert_allclose(ours, ref.numpy(), atol=1e-6, equal_nan=True)
    assert math.isnan(ours[0, 1]) and math.isnan(ours[2, 2])


def test_dice_metric_accumulates_and_names_channels():
    true = np.zeros((2, 2, 4, 4))
    true[:, 0, :2] = 1
    pred = true.copy()
    pred[1, 0, 2] = 1  # sample 1: 8 true pixels, 12 predicted -> 2*8/20 = 0.8
    metric = DiceMetric(["tumour", "oedema"])
    metric.update(pred[:1], true[:1])
    metric.update(torch.from_numpy(pred[1:]), torch.from_numpy(true[1:]))
    out = metric.aggregate()
    assert out["dice_per_class"] == [pytest.approx(0.9), None]  # channel 1 empty everywhere
    assert out["dice"] == pytest.approx(0.9)
    assert out["class_names"] == ["tumour", "oedema"]


def test_dice_shape_mismatch():
    with pytest.raises(ValueError, match="must both be"):
        dice_score(np.zeros((1, 1, 4, 4)), np.zeros((1, 2, 4, 4)))
