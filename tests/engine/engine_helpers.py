"""Tiny stores with a learnable signal (a bright square whose position is the class).

Every sample is its own patient, so the generated 70/10/20 split stays balanced.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medtl.io.store import SampleRecord, Store, StoreWriter

# Small and fast: timm's resnet10t has ~5M parameters and handles 1-channel 32 px input.
TINY_BACKBONE = "resnet10t"


def write_signal_store(
    out: Path,
    *,
    task: str = "classification",
    n: int = 40,
    classes: int = 3,
    size: int = 32,
    channels: int = 1,
    seed: int = 0,
) -> Store:
    """Class k: a bright 8x8 square at the k-th corner, on noise. Multilabel: one square per positive."""
    rng = np.random.default_rng(seed)
    corners = [(2, 2), (2, size - 10), (size - 10, 2), (size - 10, size - 10)]
    names = [f"class{k}" for k in range(classes)]
    kwargs: dict = {}
    if task == "classification":
        kwargs["label_shape"] = ()
    elif task == "multilabel":
        kwargs["label_shape"] = (classes,)
    else:
        kwargs["mask_shape"] = (1, size, size)
    with StoreWriter(
        out, task=task, image_shape=(channels, size, size), class_names=names, dtype="float16", **kwargs
    ) as writer:
        for i in range(n):
            image = rng.normal(0.3, 0.1, (1, channels, size, size)).astype(np.float32)
            if task == "multilabel":
                positive = rng.random(classes) < 0.5
                positive[i % classes] = True
                label: np.ndarray | None = positive.astype(np.float32)[None]
                shown = np.flatnonzero(positive)
                text = "|".join(names[k] for k in shown)
            else:
                k = i % classes
                label = np.array([k], dtype=np.int64)
                shown, text = [k], names[k]
            for k in shown:
                r, c = corners[k % 4]
                image[0, :, r : r + 8, c : c + 8] += 0.6
            masks = None
            if task == "segmentation":
                masks = (image[:, :1] > 0.6).astype(np.uint8)
                label = None
            writer.add(
                f"s{i}",
                image,
                [SampleRecord(f"P{i:03d}", f"img{i}.png", -1, text)],
                labels=label,
                masks=masks,
            )
        writer.finish()
    return Store(out)
