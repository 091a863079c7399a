"""Intensity normalisation and resizing shared by the converters.

Each normalisation is fitted on a whole volume (or image) and is then an affine map, optionally
clipped, so a converter can fit it on the full volume and apply it only to the slices it keeps:

* ``study-range``: ``x / (max - min)``, exactly what the domain-adaptive-pretraining study did
  (for volumes whose minimum is 0, as in BraTS, this equals min-max);
* ``minmax``: ``(x - min) / (max - min)``;
* ``zscore``: ``(x - mean) / std`` with mean and std over brain voxels (``x > 0``);
* ``percentile``: clip to the 0.5th and 99.5th percentiles of the brain voxels, then min-max.

``to_uint8`` maps normalised values to 0..255 for stores written with ``--dtype uint8``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medtl.errors import UnknownChoiceError

NORMALISATIONS = ("study-range", "minmax", "zscore", "percentile")
PERCENTILES = (0.5, 99.5)


@dataclass(frozen=True)
class Intensity:
    """``x * scale + offset`` (after clipping to [low, high] when ``clip``), fitted on one volume.

    ``low`` and ``high`` bound the input values of the fitted volume (its min and max, or the
    percentiles it is clipped to), so ``range`` is where that volume's values land.
    """

    scale: float
    offset: float = 0.0
    low: float = 0.0
    high: float = 1.0
    clip: bool = False

    def apply(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if self.clip:
            x = np.clip(x, np.float32(self.low), np.float32(self.high))
        out = x * np.float32(self.scale)
        if self.offset:
            out += np.float32(self.offset)
        return out

    @property
    def range(self) -> tuple[float, float]:
        """Output (min, max) on the fitted volume."""
        return self.low * self.scale + self.offset, self.high * self.scale + self.offset


def check_normalisation(name: str) -> str:
    if name not in NORMALISATIONS:
        raise UnknownChoiceError("normalisation", name, NORMALISATIONS)
    return name


def fit_intensity(volume: np.ndarray, method: str, minmax: tuple[float, float] | None = None) -> Intensity:
    """Fit ``method`` on ``volume``; ``minmax`` passes a (min, max) already computed.

    Raises ValueError for a constant volume, which no method can normalise.
    """
    check_normalisation(method)
    lo, hi = minmax if minmax is not None else (float(volume.min()), float(volume.max()))
    if method in ("study-range", "minmax"):
        if hi <= lo:
            raise ValueError(f"constant intensity {lo:g}, cannot normalise")
        scale = 1.0 / (hi - lo)
        offset = 0.0 if method == "study-range" else -lo * scale
        return Intensity(scale, offset, lo, hi)
    brain = volume[volume > 0]
    values = brain if brain.size else volume.ravel()
    if method == "zscore":
        std = float(values.std(dtype=np.float64))
        if std == 0.0:
            raise ValueError(f"constant intensity {float(values.mean()):g}, cannot normalise")
        mean = float(values.mean(dtype=np.float64))
        return Intensity(1.0 / std, -mean / std, lo, hi)
    low, high = (float(v) for v in np.percentile(values, PERCENTILES))
    if high <= low:
        raise ValueError(f"constant intensity between the {PERCENTILES} percentiles, cannot normalise")
    return Intensity(1.0 / (high - low), -low / (high - low), low, high, clip=True)


def to_uint8(x: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Map ``value_range`` linearly onto 0..255 (values outside are clipped) and round."""
    lo, hi = value_range
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    out = (np.asarray(x, dtype=np.float32) - np.float32(lo)) * np.float32(scale)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def resize_images(images: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Bilinear resize of (..., H, W) float images to ``size`` = (H', W') with PIL."""
    from PIL import Image

    h, w = (int(s) for s in size)
    if images.shape[-2:] == (h, w):
        return images
    flat = np.asarray(images, dtype=np.float32).reshape(-1, *images.shape[-2:])
    out = np.empty((flat.shape[0], h, w), dtype=np.float32)
    for i, plane in enumerate(flat):
        # float32 planes become PIL mode "F" (full precision); PIL sizes are (width, height).
        out[i] = np.asarray(Image.fromarray(plane).resize((w, h), Image.BILINEAR))
    return out.reshape(*images.shape[:-2], h, w)


def resize_masks(masks: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Nearest-neighbour resize of (..., H, W) uint8 label maps, so no new labels appear."""
    from PIL import Image

    h, w = (int(s) for s in size)
    if masks.shape[-2:] == (h, w):
        return masks
    flat = np.asarray(masks, dtype=np.uint8).reshape(-1, *masks.shape[-2:])
    out = np.empty((flat.shape[0], h, w), dtype=np.uint8)
    for i, plane in enumerate(flat):
        out[i] = np.asarray(Image.fromarray(plane).resize((w, h), Image.NEAREST))
    return out.reshape(*masks.shape[:-2], h, w)
