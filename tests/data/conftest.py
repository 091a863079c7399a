"""Tiny stores written with StoreWriter: a few patients, several samples each, 2-3 classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medtl.io.store import SampleRecord, Store, StoreWriter


def write_store(
    out: Path,
    *,
    task: str = "classification",
    patients: int = 10,
    per_patient: int = 3,
    classes: int = 3,
    size: int = 8,
    channels: int = 1,
    dtype: str = "float16",
    seed: int = 0,
) -> Store:
    """A store with random images; a patient's samples share its class (as BraTS grades do)."""
    rng = np.random.default_rng(seed)
    class_names = [f"c{k}" for k in range(classes)]
    kwargs: dict = {}
    if task == "classification":
        kwargs["label_shape"] = ()
    elif task == "multilabel":
        kwargs["label_shape"] = (classes,)
    else:
        kwargs["mask_shape"] = (1, size, size)
    with StoreWriter(
        out, task=task, image_shape=(channels, size, size), class_names=class_names, dtype=dtype, **kwargs
    ) as writer:
        for p in range(patients):
            if dtype == "uint8":
                images = rng.integers(1, 255, (per_patient, channels, size, size)).astype(np.uint8)
            else:
                images = rng.random((per_patient, channels, size, size), dtype=np.float32)
            labels = masks = None
            names = [""] * per_patient
            if task == "classification":
                labels = np.full(per_patient, p % classes, dtype=np.int64)
                names = [class_names[p % classes]] * per_patient
            elif task == "multilabel":
                labels = (rng.random((per_patient, classes)) < [0.6, 0.3, 0.2][:classes]).astype(np.float32)
            else:
                masks = np.zeros((per_patient, 1, size, size), dtype=np.uint8)
                masks[::2, :, 1:4, 2:6] = 1  # every other slice has foreground
            records = [SampleRecord(f"P{p:03d}", f"p{p}/img{s}.png", s, names[s]) for s in range(per_patient)]
            writer.add(f"P{p:03d}", images, records, labels=labels, masks=masks)
        writer.finish()
    return Store(out)


@pytest.fixture
def make_store(tmp_path):
    """``make_store(name="store", **kwargs)`` writes a store under tmp_path and opens it."""

    def make(name: str = "store", **kwargs) -> Store:
        return write_store(tmp_path / name, **kwargs)

    return make


@pytest.fixture
def store(make_store) -> Store:
    return make_store()
