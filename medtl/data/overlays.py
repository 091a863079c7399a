"""PNG overlays of segmentations: image | truth over the image | prediction over the image.

Masks are channel masks (C, H, W) of 0/1, one colour per channel; overlapping channels (BraTS
regions ET inside TC inside WT) are painted from the last channel to the first, so the first stays
visible on top. The image panel shows the first image channel, rescaled to its own range, or the
three channels as RGB when there are exactly three. Files are written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# Distinct colours (tab10 without grey), one per channel, cycling.
PALETTE = np.array(
    [
        (214, 39, 40),
        (31, 119, 180),
        (44, 160, 44),
        (255, 127, 14),
        (148, 103, 189),
        (23, 190, 207),
        (227, 119, 194),
        (188, 189, 34),
        (140, 86, 75),
    ],
    dtype=np.float32,
)
ALPHA = 0.45
GAP = 4  # pixels between panels
TITLE_HEIGHT = 14
MIN_SIDE = 128  # smaller images are enlarged (nearest neighbour) so that the panels can be read


def _grey(image: np.ndarray) -> np.ndarray:
    """(C, H, W) float -> (H, W, 3) uint8."""
    shown = image[:3] if image.shape[0] == 3 else image[:1]
    lo, hi = float(shown.min()), float(shown.max())
    scaled = (shown - lo) / (hi - lo) if hi > lo else np.zeros_like(shown)
    rgb = np.repeat(scaled, 3, axis=0) if shown.shape[0] == 1 else scaled
    return (np.moveaxis(rgb, 0, -1) * 255).round().astype(np.uint8)


def _paint(base: np.ndarray, masks: np.ndarray) -> np.ndarray:
    out = base.astype(np.float32)
    for c in reversed(range(masks.shape[0])):
        on = masks[c] > 0
        out[on] = (1 - ALPHA) * out[on] + ALPHA * PALETTE[c % len(PALETTE)]
    return out.round().astype(np.uint8)


def overlay_panels(image: np.ndarray, truth: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """(H, 3W + gaps, 3) uint8: the image, the truth over it, the prediction over it."""
    if truth.shape != prediction.shape or truth.shape[-2:] != image.shape[-2:]:
        raise ValueError(f"image {image.shape}, truth {truth.shape} and prediction {prediction.shape} differ")
    base = _grey(np.asarray(image, dtype=np.float32))
    gap = np.full((base.shape[0], GAP, 3), 255, np.uint8)
    return np.concatenate([base, gap, _paint(base, truth), gap, _paint(base, prediction)], axis=1)


def save_overlay(
    path: str | Path,
    image: np.ndarray,
    truth: np.ndarray,
    prediction: np.ndarray,
    *,
    titles: Sequence[str] = ("image", "truth", "prediction"),
) -> Path:
    """Write ``overlay_panels`` with a title row as a PNG at ``path`` (atomically); images smaller
    than ``MIN_SIDE`` pixels are enlarged by a whole factor first."""
    from PIL import Image, ImageDraw

    factor = max(1, -(-MIN_SIDE // max(1, min(image.shape[-2:]))))
    if factor > 1:
        image, truth, prediction = (np.kron(a, np.ones((factor, factor))) for a in (image, truth, prediction))
    panels = overlay_panels(image, truth, prediction)
    width = (panels.shape[1] - 2 * GAP) // 3
    canvas = Image.new("RGB", (panels.shape[1], panels.shape[0] + TITLE_HEIGHT), "white")
    canvas.paste(Image.fromarray(panels), (0, TITLE_HEIGHT))
    draw = ImageDraw.Draw(canvas)
    for i, title in enumerate(titles):
        draw.text((i * (width + GAP) + 2, 1), title, fill=(0, 0, 0))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    canvas.save(tmp, format="PNG")
    os.replace(tmp, path)
    return path
