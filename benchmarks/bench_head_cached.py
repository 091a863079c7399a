"""Head-only phase on cached features vs through the frozen backbone (issue 3, section 9).

Both runs go through ``medtl.engine.run`` with the same config except ``cache_features``: the
``linear`` strategy (head only, BatchNorm frozen), no augmentation, the same seed, optimiser, batch
size and sample order. The figure is the head phase's wall time from ``metrics.json`` (feature
extraction, validation every epoch and checkpoints included), and the test AUROC of each.

    .venv/bin/python benchmarks/bench_head_cached.py              # resnet18, 64 px, 400 images: < 3 min
    .venv/bin/python benchmarks/bench_head_cached.py --samples 400 --epochs 100 --backbone resnet50

Target: >= 50x faster with AUROC equal within 0.01. The backbone is randomly initialised (nothing is
downloaded); both paths see the same features, so the comparison does not depend on the weights.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _machine import cpu_name

from medtl.engine import RunConfig, run
from medtl.io.store import SampleRecord, StoreWriter


def phantom_store(path: Path, n: int, size: int, seed: int = 0) -> Path:
    """Two classes: a bright blob (class 1) or none on a smooth background, one sample per patient."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    with StoreWriter(path, task="classification", image_shape=(1, size, size), class_names=["no", "yes"],
                     label_shape=()) as writer:  # fmt: skip
        for i in range(n):
            cx, cy, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.05, 0.15)
            blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / r**2) * (i % 2)
            image = 0.5 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / 0.1) + 0.15 * blob
            image += rng.normal(0, 0.1, image.shape)
            writer.add(
                f"s{i}",
                image[None, None].astype(np.float32),
                [SampleRecord(f"P{i:04d}", f"img{i}.png", -1, "yes" if i % 2 else "no")],
                labels=np.array([i % 2]),
            )
        writer.finish()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = phantom_store(root / "store", args.samples, args.size)
        results = {}
        for cached in (True, False):
            config = RunConfig(
                data=store,
                backbone=args.backbone,
                init="random",
                strategy="linear",
                phase_epochs={"head": args.epochs},
                lr=1e-3,
                batch_size=args.batch_size,
                num_workers=0,
                normalise="imagenet",
                in_chans=3,
                cache_features=cached,
                bootstrap=0,
                device="cpu",
                out=root / "runs",
            )
            t0 = time.monotonic()
            record = run(config).metrics
            phase = record.phases[0]
            assert phase.cached_features is cached
            results["cached" if cached else "through_backbone"] = {
                "head_phase_s": phase.wall_time_s,
                "run_s": time.monotonic() - t0,
                "test_auroc": record.test["auroc"],
                "val_auroc_last_epoch": record.history[-1].val["auroc"],
            }
            print(f"{'cached' if cached else 'through backbone'}: {results[list(results)[-1]]}", flush=True)

    cached, through = results["cached"], results["through_backbone"]
    summary = {
        "device": f"cpu ({cpu_name()}, {args.threads} threads)",
        "backbone": args.backbone,
        "image_size": args.size,
        "samples": args.samples,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        **results,
        "speedup": through["head_phase_s"] / cached["head_phase_s"],
        "auroc_difference": abs(through["test_auroc"] - cached["test_auroc"]),
    }
    print(json.dumps(summary, indent=2))
    print(
        f"head-only phase, {args.epochs} epochs: cached {cached['head_phase_s']:.1f} s, through the frozen "
        f"backbone {through['head_phase_s']:.1f} s -> {summary['speedup']:.0f}x; "
        f"test AUROC {cached['test_auroc']:.4f} vs {through['test_auroc']:.4f}"
    )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
