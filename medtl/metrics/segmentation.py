"""Segmentation metrics: Dice per sample and channel, and an accumulating ``DiceMetric``.

Masks are (N, C, H, W) with one channel per structure (one-hot or independent labels);
predictions are probabilities or 0/1 and are binarised at ``threshold``. Following MONAI's
``compute_dice(ignore_empty=True)``, a channel whose ground truth is empty has no Dice (NaN) and
is left out of the means; mean Dice is the mean over samples per channel, then over channels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from medtl.metrics.classification import to_numpy


def dice_score(y_pred: Any, y_true: Any, *, threshold: float = 0.5, ignore_empty: bool = True) -> np.ndarray:
    """(N, C) Dice of each sample and channel; NaN where the ground truth is empty and ``ignore_empty``."""
    pred, true = to_numpy(y_pred) >= threshold, to_numpy(y_true) >= 0.5
    if pred.shape != true.shape or pred.ndim < 3:
        raise ValueError(f"prediction {pred.shape} and mask {true.shape} must both be (N, C, ...)")
    axes = tuple(range(2, pred.ndim))
    intersection = (pred & true).sum(axes).astype(np.float64)
    total = pred.sum(axes).astype(np.float64) + true.sum(axes)
    empty_true = true.sum(axes) == 0
    dice = np.divide(2 * intersection, total, out=np.ones_like(intersection), where=total > 0)
    if ignore_empty:
        dice[empty_true] = np.nan
    return dice


class DiceMetric:
    """Accumulates per-sample Dice batch by batch; ``aggregate()`` gives mean and per-channel Dice."""

    def __init__(self, channel_names: Sequence[str] | None = None, *, threshold: float = 0.5) -> None:
        self.channel_names = None if channel_names is None else list(channel_names)
        self.threshold = threshold
        self.reset()

    def reset(self) -> None:
        self._scores: list[np.ndarray] = []

    def update(self, y_pred: Any, y_true: Any) -> None:
        self._scores.append(dice_score(y_pred, y_true, threshold=self.threshold))

    def aggregate(self) -> dict[str, Any]:
        if not self._scores:
            raise ValueError("no batches were added")
        scores = np.concatenate(self._scores)
        per_channel = [float(np.nanmean(col)) if np.isfinite(col).any() else math.nan for col in scores.T]
        defined = [v for v in per_channel if not math.isnan(v)]
        names = self.channel_names or [str(i) for i in range(scores.shape[1])]
        return {
            "num_samples": int(scores.shape[0]),
            "dice": float(np.mean(defined)) if defined else math.nan,
            "dice_per_class": [None if math.isnan(v) else v for v in per_channel],
            "class_names": names,
        }
