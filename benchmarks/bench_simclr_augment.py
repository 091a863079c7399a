"""SimCLR input pipelines side by side: views made on the device for the whole batch (kornia) vs
per sample in DataLoader workers (torchvision v2), issue 9 section 5.

Both train the same model (backbone + MLP projector, NT-Xent, SGD) on the same phantom store with
the same batch size and worker count; only where the two views are made differs. Two figures per
pipeline: the augmentation alone (images/s through the loader and the view step, no model) and a
full training step (forward + backward of both views).

    .venv/bin/python benchmarks/bench_simclr_augment.py                   # CPU: resnet18, 64 px views
    .venv/bin/python benchmarks/bench_simclr_augment.py --device cuda --backbone resnet50 \
        --size 224 --load-size 256 --batch-size 256 --samples 4096 --amp --channels-last
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _machine import cpu_name

from medtl.data.ssl_augment import BatchViews, SampleViews, SimCLRAugment
from medtl.data.unlabelled import Source, UnlabelledImages, make_unlabelled_loader
from medtl.io.store import SampleRecord, StoreWriter
from medtl.models import create_backbone
from medtl.models.contrastive import nt_xent
from medtl.models.projection import build_projector


def phantom_rgb_store(path: Path, n: int, size: int, seed: int = 0) -> Path:
    """Smooth coloured blobs on noise, uint8 like a prepared photo store."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    with StoreWriter(path, task="classification", image_shape=(3, size, size), class_names=["a", "b"],
                     label_shape=(), dtype="uint8") as writer:  # fmt: skip
        for i in range(n):
            cx, cy = rng.uniform(0.2, 0.8, 2)
            blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 0.05)
            image = blob[None] * rng.uniform(0.3, 1.0, (3, 1, 1)) + 0.2 * rng.random((3, size, size))
            image = (np.clip(image, 0, 1) * 255).astype(np.uint8)
            writer.add(
                f"s{i}", image[None], [SampleRecord(f"P{i}", f"{i}.png", -1, "a")], labels=np.array([0])
            )
        writer.finish()
    return path


def run(mode: str, args, store: Path, train: bool) -> float:
    """Images per second of ``mode`` ("device" or "workers") over ``args.steps`` steps after warmup."""
    device = torch.device(args.device)
    augment = SimCLRAugment(size=args.size, blur=args.blur)
    views = SampleViews(augment, 3) if mode == "workers" else None
    data = UnlabelledImages([Source(store)], load_size=args.load_size, views=views)
    loader = make_unlabelled_loader(
        data, batch_size=args.batch_size, num_workers=args.workers, generator=torch.Generator().manual_seed(0)
    )
    batch_views = BatchViews(augment, 3).to(device)
    model = optimiser = None
    if train:
        torch.manual_seed(0)
        backbone = create_backbone(args.backbone)
        model = torch.nn.Sequential(backbone, build_projector("mlp", backbone.num_features, out=128)).to(
            device
        )
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp)
    done, start, step = 0, None, 0
    while step < args.warmup + args.steps:
        for batch in loader:
            if step == args.warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start, done = time.perf_counter(), 0
            if mode == "device":
                a, b = batch_views(batch["image"].to(device, non_blocking=True), seed=step)
            else:
                both = batch["views"].to(device, non_blocking=True)
                a, b = both[:, 0], both[:, 1]
            if train:
                if args.channels_last:
                    a, b = (
                        a.contiguous(memory_format=torch.channels_last),
                        b.contiguous(memory_format=torch.channels_last),
                    )
                with amp:
                    loss = nt_xent(model(a), model(b), 0.1)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
            done += a.shape[0]
            step += 1
            if step >= args.warmup + args.steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--load-size", type=int, default=96, help="stored image side")
    parser.add_argument("--size", type=int, default=64, help="view side")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--blur", action="store_true", help="add the Gaussian blur (the study left it out)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: OpenMP threads fight other processes on a shared machine)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        store = phantom_rgb_store(Path(tmp) / "store", args.samples, args.load_size)
        # Rounds alternate the two pipelines, so load from other processes on a shared machine
        # hits both alike; the median of the rounds is reported.
        rounds: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for what, train in (("augment", False), ("train", True)):
                for mode in ("device", "workers"):
                    rounds.setdefault(f"{what}_{mode}", []).append(run(mode, args, store, train))
        results = {k: float(np.median(v)) for k, v in rounds.items()}
    machine = torch.cuda.get_device_name() if args.device == "cuda" else cpu_name()
    print(json.dumps({"machine": machine, **vars(args), **results, "rounds": rounds}, indent=2))
    for what in ("augment", "train"):
        d, w = results[f"{what}_device"], results[f"{what}_workers"]
        print(
            f"{what:8s} device batch {d:8.1f} img/s   workers per sample {w:8.1f} img/s   ratio {d / w:.2f}x"
        )


if __name__ == "__main__":
    main()
