"""Loading throughput: the memory-mapped store vs a PNG folder read with PIL (issue 3, section 9).

The PNG loader is the 21-model benchmark's: PIL open -> convert("RGB") -> tensor -> transforms.
The store is read by ``StoreDataset`` over the same images (float16, 1 channel, repeated to 3), once
through a standard per-item DataLoader and once through ``make_loader`` (whole-batch reads). All use
the same transforms (``build_transforms``): "eval" (resize, repeat to 3 channels, ImageNet
normalisation) and "train" (adds random resized crop, flip, rotation, intensity), the same batch size
and worker count; each figure is the best of a few full passes (epochs), worker start-up included.

    .venv/bin/python benchmarks/bench_loading.py            # 2000 images of 224 x 224
    .venv/bin/python benchmarks/bench_loading.py --images 500 --workers 0

Target: store >= 5x the PNG folder's samples/s.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.v2 import functional as F

from medtl.data.allocator import keep_large_buffers_in_heap
from medtl.data.dataset import StoreDataset, make_loader
from medtl.data.transforms import build_transforms
from medtl.io.store import SampleRecord, StoreWriter

CLASSES = ("normal", "tumour")


def phantom_images(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth grayscale slices with a bright blob and noise (compress like real scans, not like noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / 0.08)
    out = np.empty((n, size, size), dtype=np.uint8)
    for i in range(n):
        cx, cy, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.03, 0.1)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / r**2) * (i % 2)
        img = 0.6 * base + 0.4 * blob + rng.normal(0, 0.03, base.shape)
        out[i] = np.clip(img * 255, 0, 255).astype(np.uint8)
    return out


def write_inputs(root: Path, images: np.ndarray) -> tuple[Path, list[tuple[Path, int]]]:
    files = []
    for c in CLASSES:
        (root / "png" / c).mkdir(parents=True)
    for i, img in enumerate(images):
        path = root / "png" / CLASSES[i % 2] / f"img{i:05d}.png"
        Image.fromarray(img).save(path)
        files.append((path, i % 2))
    size = images.shape[-1]
    with StoreWriter(
        root / "store",
        task="classification",
        image_shape=(1, size, size),
        class_names=CLASSES,
        label_shape=(),
    ) as writer:
        for start in range(0, len(images), 100):
            block = images[start : start + 100]
            idx = range(start, start + len(block))
            records = [SampleRecord(f"P{i}", f"img{i:05d}.png", -1, CLASSES[i % 2]) for i in idx]
            labels = np.array([i % 2 for i in idx], dtype=np.int64)
            writer.add(str(start), (block[:, None] / 255.0).astype(np.float16), records, labels=labels)
        writer.finish()
    return root / "store", files


class PngFolder(Dataset):
    """The 21-model benchmark's loader: PIL open -> convert("RGB") -> to tensor -> transforms."""

    def __init__(self, files: list[tuple[Path, int]], transform) -> None:
        self.files, self.transform = files, transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        path, label = self.files[i]
        with Image.open(path) as img:
            image = F.to_dtype(F.pil_to_tensor(img.convert("RGB")), torch.float32, scale=True)
        return self.transform(image), torch.tensor(label)


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def throughput(make: Callable[[], DataLoader], repeats: int) -> tuple[float, float]:
    """(samples per wall second, samples per CPU second), best of ``repeats`` full passes.

    On a shared machine the best pass is the least disturbed one, and CPU time (this process and
    its finished DataLoader workers) hardly depends on what else runs.
    """
    wall = cpu = 0.0
    for _ in range(repeats):
        start, cpu_start, seen = time.perf_counter(), _cpu_seconds(), 0
        for images, _ in make():
            seen += len(images)
        wall = max(wall, seen / (time.perf_counter() - start))
        cpu = max(cpu, seen / max(_cpu_seconds() - cpu_start, 1e-9))
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument(
        "--train-images", type=int, default=256, help="images per pass with train transforms (slow)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="passes per figure; the best is kept")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    # Both loaders run with the same allocator settings (make_loader would set them anyway).
    keep_large_buffers_in_heap()

    with tempfile.TemporaryDirectory(prefix="medtl-bench-") as tmp:
        t0 = time.perf_counter()
        store, files = write_inputs(Path(tmp), phantom_images(args.images, args.size))
        png_mb = sum(p.stat().st_size for p, _ in files) / 1e6
        print(
            f"{args.images} grayscale {args.size}x{args.size} images: PNG {png_mb:.0f} MB, store "
            f"{(store / 'images.npy').stat().st_size / 1e6:.0f} MB (float16); written in "
            f"{time.perf_counter() - t0:.1f}s"
        )
        print(
            f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}), batch {args.batch_size}, "
            "torch threads 1\n"
        )
        rows = []
        for mode in ("eval", "train"):
            transform = build_transforms(
                mode == "train", size=args.size, augment="default", normalise="imagenet", in_chans=3
            )
            n = args.images if mode == "eval" else min(args.train_images, args.images)
            dataset = StoreDataset(store, indices=np.arange(n), transform=transform)
            png_folder = PngFolder(files[:n], transform)
            for workers in args.workers:
                kwargs = {"batch_size": args.batch_size, "shuffle": True, "num_workers": workers}
                loaders = {
                    "png": partial(DataLoader, png_folder, **kwargs),
                    "per_item": partial(DataLoader, dataset, **kwargs),
                    "batched": partial(make_loader, dataset, **kwargs),
                }
                rows.append((mode, workers, {k: throughput(f, args.repeats) for k, f in loaders.items()}))

        print(
            "| transforms | workers | PNG + PIL | store, DataLoader | store, make_loader "
            "| ratio | ratio per CPU second |\n|---|---:|---:|---:|---:|---:|---:|"
        )
        for mode, workers, r in rows:
            (png, png_cpu), (item, _), (batch, batch_cpu) = r["png"], r["per_item"], r["batched"]
            print(
                f"| {mode} | {workers} | {png:,.0f} | {item:,.0f} ({item / png:.1f}x) | {batch:,.0f} "
                f"| {batch / png:.1f}x | {batch_cpu / png_cpu:.1f}x |"
            )
        print(
            f"\nsamples/s, best of {args.repeats} passes ({args.images} images for eval, {n} for train); "
            "ratio = store via make_loader / PNG; the last column compares samples per CPU second"
        )


if __name__ == "__main__":
    main()
