"""Segmentation metrics: Dice and IoU per class, per image and global, HD95, BraTS regions, bootstrap CIs.

Everything works on **channel masks** (N, C, H, W) of 0/1, one channel per structure: foreground
classes of a label map (``class_masks``), regions made of several labels (``region_masks``, BraTS
ET/TC/WT), or a multi-label store's own channels. The policy for empty masks (docs/metrics.md):

* per image: a channel empty in both prediction and truth has no Dice/IoU (NaN) and is left out of
  that channel's mean (``empty="one"`` counts it as 1 instead); empty truth with a non-empty
  prediction scores 0 — a false positive is an error (MONAI's ``ignore_empty`` would drop it);
* global: Dice/IoU of the pixel counts summed over all images (undefined only for a channel that is
  empty in every prediction and every truth);
* HD95 (MONAI, in pixels) is defined where both masks are non-empty; other images are left out;
* means over channels leave undefined channels out.

``SegmentationMetrics`` accumulates per-image counts batch by batch (no masks are kept) and
``aggregate()`` summarises them; ``bootstrap()`` resamples whole patients from the same counts.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from medtl.metrics.bootstrap import bootstrap_indices, percentile_interval, warn_if_few_groups
from medtl.metrics.classification import to_numpy

EmptyPolicy = Literal["skip", "one"]
# BraTS evaluation regions over the labels as medtl trains them: 0 background, 1 NCR/NET, 2 ED,
# 3 ET (BraTS writes ET as 4; ``brats_labels`` maps it to 3).
BRATS_REGIONS: dict[str, tuple[int, ...]] = {"ET": (3,), "TC": (1, 3), "WT": (1, 2, 3)}
BRATS_RAW_LABELS = (0, 1, 2, 4)
SCALARS = ("dice", "dice_global", "iou", "iou_global", "hd95")


# -- masks --------------------------------------------------------------------------------------
def brats_labels(raw: Any) -> np.ndarray:
    """BraTS label values 0/1/2/4 -> class indices 0/1/2/3 (4 is mapped, not dropped)."""
    raw = np.asarray(to_numpy(raw))
    out = raw.astype(np.int64, copy=True)
    out[raw == 4] = 3
    return out


def class_masks(labels: Any, num_classes: int, *, include_background: bool = False) -> np.ndarray:
    """Class-index maps (N, H, W) -> one channel per class (N, K or K-1, H, W) of bool."""
    labels = np.asarray(to_numpy(labels))
    first = 0 if include_background else 1
    return np.stack([labels == k for k in range(first, num_classes)], axis=1)


def region_masks(labels: Any, regions: Mapping[str, Sequence[int]]) -> np.ndarray:
    """Class-index maps (N, H, W) -> one channel per region (N, R, H, W): pixels whose label is in it."""
    labels = np.asarray(to_numpy(labels))
    return np.stack([np.isin(labels, list(values)) for values in regions.values()], axis=1)


def _channels(mask: Any, name: str) -> np.ndarray:
    arr = np.asarray(to_numpy(mask))
    if arr.ndim < 3:
        raise ValueError(f"{name} must be (N, C, H, W) channel masks, got shape {arr.shape}")
    return arr


# -- counts and scores --------------------------------------------------------------------------
def overlap_counts(pred: Any, true: Any, *, threshold: float = 0.5) -> np.ndarray:
    """(N, C, 3) int64: intersection, predicted and true pixel counts per image and channel."""
    pred, true = _channels(pred, "prediction") >= threshold, _channels(true, "mask") >= 0.5
    if pred.shape != true.shape:
        raise ValueError(f"prediction {pred.shape} and mask {true.shape} must both be (N, C, ...)")
    axes = tuple(range(2, pred.ndim))
    return np.stack([(pred & true).sum(axes), pred.sum(axes), true.sum(axes)], axis=-1).astype(np.int64)


def dice_from_counts(counts: np.ndarray, empty: EmptyPolicy = "skip") -> np.ndarray:
    """Dice of (..., 3) counts; both masks empty -> NaN (``skip``) or 1 (``one``)."""
    inter, pred, true = (counts[..., i].astype(np.float64) for i in range(3))
    total = pred + true
    fill = 1.0 if empty == "one" else math.nan
    return np.divide(2 * inter, total, out=np.full_like(total, fill), where=total > 0)


def iou_from_counts(counts: np.ndarray, empty: EmptyPolicy = "skip") -> np.ndarray:
    """IoU (Jaccard) of (..., 3) counts; both masks empty -> NaN (``skip``) or 1 (``one``)."""
    inter, pred, true = (counts[..., i].astype(np.float64) for i in range(3))
    union = pred + true - inter
    fill = 1.0 if empty == "one" else math.nan
    return np.divide(inter, union, out=np.full_like(union, fill), where=union > 0)


def dice_score(y_pred: Any, y_true: Any, *, threshold: float = 0.5, ignore_empty: bool = True) -> np.ndarray:
    """(N, C) Dice of each image and channel under the policy above (``ignore_empty=False``: both
    empty scores 1)."""
    return dice_from_counts(
        overlap_counts(y_pred, y_true, threshold=threshold), "skip" if ignore_empty else "one"
    )


def hd95(pred: Any, true: Any, *, threshold: float = 0.5) -> np.ndarray:
    """(N, C) 95th-percentile Hausdorff distance in pixels (MONAI); NaN where either mask is empty."""
    import torch
    from monai.metrics import compute_hausdorff_distance

    pred, true = _channels(pred, "prediction") >= threshold, _channels(true, "mask") >= 0.5
    axes = tuple(range(2, pred.ndim))
    both = pred.any(axes) & true.any(axes)
    out = np.full(both.shape, math.nan)
    if both.any():
        with warnings.catch_warnings():  # MONAI warns about the empty channels we discard anyway
            warnings.simplefilter("ignore")
            values = compute_hausdorff_distance(
                torch.from_numpy(pred), torch.from_numpy(true), include_background=True, percentile=95
            )
        out[both] = values.double().numpy()[both]
    return out


def _nanmean_columns(values: np.ndarray) -> list[float]:
    return [float(np.nanmean(col)) if np.isfinite(col).any() else math.nan for col in values.T]


def _mean(values: Sequence[float]) -> float:
    defined = [v for v in values if not math.isnan(v)]
    return float(np.mean(defined)) if defined else math.nan


def summarise(
    counts: np.ndarray, distances: np.ndarray | None = None, empty: EmptyPolicy = "skip"
) -> dict[str, Any]:
    """Scalars and per-channel lists of (N, C, 3) counts (and (N, C) HD95 values)."""
    per_image_dice, per_image_iou = dice_from_counts(counts, empty), iou_from_counts(counts, empty)
    total = counts.sum(axis=0)
    out: dict[str, Any] = {
        "dice_per_class": _nanmean_columns(per_image_dice),
        "iou_per_class": _nanmean_columns(per_image_iou),
        "dice_global_per_class": [float(v) for v in dice_from_counts(total)],
        "iou_global_per_class": [float(v) for v in iou_from_counts(total)],
    }
    if distances is not None:
        out["hd95_per_class"] = _nanmean_columns(distances)
    for name in SCALARS:
        if f"{name}_per_class" in out:
            out[name] = _mean(out[f"{name}_per_class"])
    return out


def _json_list(values: Sequence[float]) -> list[float | None]:
    return [None if math.isnan(v) else v for v in values]


class SegmentationMetrics:
    """Accumulates per-image overlap counts (and HD95) batch by batch; ``aggregate()`` summarises.

    ``update(pred, true)`` takes (N, C, H, W) channel masks (probabilities are binarised at
    ``threshold``); ``groups`` (patient ids per sample) can follow later for ``bootstrap``.
    """

    def __init__(
        self,
        channel_names: Sequence[str],
        *,
        hd95: bool = False,
        empty: EmptyPolicy = "skip",
        threshold: float = 0.5,
    ) -> None:
        if empty not in ("skip", "one"):
            raise ValueError(f"empty must be 'skip' or 'one', got {empty!r}")
        self.channel_names = list(channel_names)
        self.with_hd95, self.empty, self.threshold = hd95, empty, threshold
        self.reset()

    def reset(self) -> None:
        self._counts: list[np.ndarray] = []
        self._hd95: list[np.ndarray] = []

    def update(self, pred: Any, true: Any) -> None:
        counts = overlap_counts(pred, true, threshold=self.threshold)
        if counts.shape[1] != len(self.channel_names):
            raise ValueError(f"{counts.shape[1]} channels for {len(self.channel_names)} names")
        self._counts.append(counts)
        if self.with_hd95:
            self._hd95.append(hd95(pred, true, threshold=self.threshold))

    @property
    def counts(self) -> np.ndarray:
        """(N, C, 3) intersection / predicted / true pixels of every image so far."""
        if not self._counts:
            raise ValueError("no batches were added")
        return np.concatenate(self._counts)

    def per_image(self) -> dict[str, np.ndarray]:
        """(N, C) Dice, IoU (and HD95) of every image, under the empty-mask policy."""
        counts = self.counts
        out = {"dice": dice_from_counts(counts, self.empty), "iou": iou_from_counts(counts, self.empty)}
        if self.with_hd95:
            out["hd95"] = np.concatenate(self._hd95)
        return out

    def aggregate(self) -> dict[str, Any]:
        counts = self.counts
        distances = np.concatenate(self._hd95) if self.with_hd95 else None
        summary = summarise(counts, distances, self.empty)
        out: dict[str, Any] = {"num_samples": int(counts.shape[0]), "class_names": self.channel_names}
        for key, value in summary.items():
            out[key] = _json_list(value) if isinstance(value, list) else value
        # Images in each channel's per-image mean (the rest are empty in both masks).
        out["num_defined_per_class"] = [int(v) for v in np.isfinite(self.per_image()["dice"]).sum(axis=0)]
        return out

    def bootstrap(
        self,
        groups: Sequence[Any] | np.ndarray | None = None,
        *,
        n: int = 1000,
        seed: int = 0,
        alpha: float = 0.05,
    ) -> dict[str, Any]:
        """95% (1 - alpha) percentile intervals of the scalars and of per-class Dice, resampling whole
        ``groups`` (patients) when given, from the accumulated counts."""
        counts = self.counts
        distances = np.concatenate(self._hd95) if self.with_hd95 else None
        warn_if_few_groups(groups)
        draws: dict[str, list[Any]] = {}
        for idx in bootstrap_indices(len(counts), n, seed, groups):
            summary = summarise(counts[idx], None if distances is None else distances[idx], self.empty)
            for key in (*SCALARS, "dice_per_class"):
                if key in summary:
                    draws.setdefault(key, []).append(summary[key])
        out: dict[str, Any] = {}
        for key, values in draws.items():
            arr = np.asarray(values, dtype=np.float64)
            if arr.ndim == 1:
                out[key] = list(percentile_interval(arr, alpha, key))
            else:
                out[key] = [
                    list(percentile_interval(arr[:, c], alpha, f"dice of {name}"))
                    for c, name in enumerate(self.channel_names)
                ]
        return out


class DiceMetric(SegmentationMetrics):
    """Mean and per-channel Dice only (the first segmentation metric medtl had; kept for its callers)."""

    def __init__(self, channel_names: Sequence[str] | None = None, *, threshold: float = 0.5) -> None:
        super().__init__(channel_names or [], threshold=threshold)

    def update(self, y_pred: Any, y_true: Any) -> None:
        if not self.channel_names:
            self.channel_names = [str(i) for i in range(_channels(y_true, "mask").shape[1])]
        super().update(y_pred, y_true)

    def aggregate(self) -> dict[str, Any]:
        full = super().aggregate()
        keys = ("num_samples", "dice", "dice_per_class", "class_names")
        return {k: full[k] for k in keys}
