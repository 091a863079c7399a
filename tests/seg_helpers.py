"""Small segmentation stores made by the real converters: phantom BraTS (labels or regions), `prepare seg`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from medtl.io.converters.brats import BratsOptions, convert_brats
from medtl.io.converters.phantom import write_phantom_brats
from medtl.io.converters.seg_pairs import convert_seg_pairs
from medtl.io.store import Store

PHANTOM_SHAPE = (48, 48, 20)


def brats_store(root: Path, labels: str = "mask", *, subjects: int = 6, size: int | None = 32) -> Store:
    """A phantom BraTS dataset prepared with ``--labels mask`` (0/1/2/4) or ``regions`` (ET/TC/WT)."""
    raw = root / "brats_raw"
    if not raw.exists():
        write_phantom_brats(raw, subjects=subjects, shape=PHANTOM_SHAPE, seed=0)
    out = root / f"brats_{labels}"
    convert_brats(raw, out, BratsOptions(labels=labels, modalities=("t1", "t1ce"), size=size))
    return Store(out)


def write_seg_pngs(
    root: Path, n: int = 24, size: int = 32, *, classes: int = 2, seed: int = 0
) -> tuple[Path, Path]:
    """Grayscale images with a bright disc (and a dimmer square for 3 classes) and their masks."""
    rng = np.random.default_rng(seed)
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        (cy, cx), r = rng.uniform(0.3, 0.7, 2) * size, rng.uniform(0.12, 0.2) * size
        label = (((yy - cy) ** 2 + (xx - cx) ** 2) < r**2).astype(np.uint8)
        if classes > 2:
            label[2:8, 2:8] = 2
        image = 60 + 120 * (label == 1) + 60 * (label == 2) + rng.normal(0, 8, label.shape)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(images / f"p{i // 2:02d}_{i}.png")
        Image.fromarray(label * (255 if classes == 2 else 1)).save(masks / f"p{i // 2:02d}_{i}.png")
    return images, masks


def seg_store(root: Path, *, n: int = 24, size: int = 32, classes: int = 2) -> Store:
    """`prepare seg` over ``write_seg_pngs``: binary (2 classes) or a label map (3 classes)."""
    images, masks = write_seg_pngs(root / f"seg{classes}_png", n, size, classes=classes)
    out = root / f"seg{classes}"
    names = None if classes == 2 else ["background", "disc", "square"]
    convert_seg_pairs(
        images, out, masks=[masks], binary=classes == 2, class_names=names, patient_regex=r"^(p\d+)_"
    )
    return Store(out)
