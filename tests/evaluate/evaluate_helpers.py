"""Tiny stores with a learnable signal and a tiny trained run, for the evaluate tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medtl.io.store import SampleRecord, StoreWriter

CORNERS = [(2, 2), (2, 22), (22, 2), (22, 22)]


def write_store(
    out: Path,
    class_names: Sequence[str],
    *,
    signal_of: Sequence[int] | None = None,
    n: int = 30,
    size: int = 32,
    task: str = "classification",
    seed: int = 0,
) -> Path:
    """Class i shows a bright square at corner ``signal_of[i]`` (default i) on noise."""
    rng = np.random.default_rng(seed)
    signal_of = list(signal_of if signal_of is not None else range(len(class_names)))
    k = len(class_names)
    label_shape = () if task == "classification" else (k,)
    with StoreWriter(
        out, task=task, image_shape=(1, size, size), class_names=class_names, label_shape=label_shape
    ) as writer:
        for i in range(n):
            image = rng.normal(0.3, 0.1, (1, 1, size, size)).astype(np.float32)
            if task == "classification":
                shown = [i % k]
                label = np.array([i % k], dtype=np.int64)
            else:
                positive = rng.random(k) < 0.5
                positive[i % k] = True
                shown = list(np.flatnonzero(positive))
                label = positive.astype(np.float32)[None]
            for c in shown:
                r, col = CORNERS[signal_of[c] % 4]
                r, col = r * size // 32, col * size // 32
                image[0, 0, r : r + 8, col : col + 8] += 0.6
            writer.add(f"u{i}", image, [SampleRecord(f"P{i}", f"img{i}.png")], labels=label)
        return writer.finish()


def train_run(store: Path, runs: Path, task: str = "auto") -> Path:
    from medtl.engine import run
    from medtl.engine.run_config import RunConfig

    config = RunConfig(
        data=store,
        objective={"task": task},
        backbone="resnet10t",
        init="random",
        strategy="linear",
        epochs_scale=0.2,  # 20 head epochs on cached features: under a second, AUROC ~0.9
        lr=1e-2,
        batch_size=8,
        num_workers=0,
        bootstrap=0,
        device="cpu",
        seed=0,
        out=runs,
    )
    return run(config).run_dir
