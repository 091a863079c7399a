"""What SimCLR's k-NN monitor costs (issue 9 §1): epochs that measure it vs epochs that do not.

One SimCLR run with ``knn_every = 2``: every second epoch the engine computes the bank (the pooled
features of every labelled training image, unaugmented, one forward pass) and the validation images
query it; the other epochs train and compute the validation loss only. Their wall times (training +
validation, ``metrics.json``'s ``time_s``) are compared within the same run, so the machine's load
affects both alike; the figure is the median of each kind and their ratio.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_knn_monitor.py
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _machine import cpu_name

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from medtl.io.store import SampleRecord, StoreWriter
from medtl.pretrain.simclr import pretrain_simclr, simclr_config


def labelled_store(path: Path, n: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    with StoreWriter(path, task="classification", image_shape=(3, size, size), class_names=["a", "b"],
                     label_shape=(), dtype="uint8") as writer:  # fmt: skip
        for i in range(n):
            image = rng.integers(0, 255, (1, 3, size, size)).astype(np.uint8)
            writer.add(f"s{i}", image, [SampleRecord(f"P{i}", f"{i}.png", -1, "a")], labels=np.array([i % 2]))
        writer.finish()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        store = labelled_store(Path(tmp) / "store", args.samples, args.size)
        base = {"batch_size": args.batch_size, "num_workers": 0, "device": "cpu", "seed": 0,
                "checkpoint_interval": 0, "out": Path(tmp) / "runs"}  # fmt: skip
        config = simclr_config(
            [str(store)], backbone=args.backbone, epochs=args.epochs, lr=0.1, base=base,
            objective={"knn_every": 2, "knn_bank": None, "view_size": args.size - 8},
        )  # fmt: skip
        start = time.perf_counter()
        result, _ = pretrain_simclr(config)
        total = time.perf_counter() - start
        history = json.loads((result.run_dir / "metrics.json").read_text())["history"]
        train = result.metrics.data.counts["train"]
    with_knn = [h["time_s"] for h in history if "val_knn_accuracy" in h]
    without = [h["time_s"] for h in history if "val_knn_accuracy" not in h]
    a, b = statistics.median(with_knn), statistics.median(without)
    print(f"machine: {cpu_name()}, {args.threads} torch thread(s), torch {torch.__version__}")
    print(f"{args.backbone} at {args.size} px, {train} training images in the bank, batch {args.batch_size}")
    print(f"epoch with the k-NN monitor: {a:.1f} s (median of {[round(t, 1) for t in with_knn]})")
    print(f"epoch without it:            {b:.1f} s (median of {[round(t, 1) for t in without]})")
    print(f"ratio {a / b:.2f}x (+{100 * (a / b - 1):.0f}% on a measured epoch); whole run {total:.0f} s")


if __name__ == "__main__":
    main()
