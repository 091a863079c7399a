"""What the store's safety costs: the resume record per committed unit, and verification.

    .venv/bin/python benchmarks/bench_store_safety.py [--units 2000 20000] [--store-mib 512]

* commits: ``StoreWriter.add`` of tiny units (one 1x8x8 image each), so the time is the bookkeeping
  (rows flushed, one progress-log line with the input signature); measured at two unit counts side
  by side to show the cost per commit does not grow with the number of units done;
* verification: ``Store.verify(quick=True)`` (sizes, headers, labels and samples.csv in full,
  sampled blocks of the images) against ``Store.verify()`` (every byte), on one store of about
  ``--store-mib`` MiB of images, the file cache dropped where possible (root) before each full pass.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _machine import cpu_name

from medtl.io.store import SampleRecord, Store, StoreWriter


def commits(root: Path, units: int) -> float:
    """Seconds per committed unit."""
    inputs = {f"u{i}": [str(root / "input.png")] for i in range(units)}
    (root / "input.png").write_bytes(b"x")
    image = np.zeros((1, 1, 8, 8), np.float32)
    label = np.zeros(1, np.int64)
    out = root / f"commits-{units}"
    start = time.perf_counter()
    with StoreWriter(
        out, task="classification", image_shape=(1, 8, 8), class_names=["a", "b"], label_shape=(),
        inputs=inputs,
    ) as writer:  # fmt: skip
        for i in range(units):
            writer.add(f"u{i}", image, [SampleRecord(f"p{i}", "input.png")], labels=label)
        elapsed = time.perf_counter() - start
        writer.abort()
    return elapsed / units


def big_store(root: Path, mib: int) -> Store:
    rng = np.random.default_rng(0)
    rows = max(1, mib * 2**20 // (3 * 224 * 224 * 2))
    out = root / "big"
    with StoreWriter(
        out, task="classification", image_shape=(3, 224, 224), class_names=["a", "b"], label_shape=()
    ) as writer:
        for i in range(0, rows, 64):
            n = min(64, rows - i)
            images = rng.random((n, 3, 224, 224), dtype=np.float32)
            records = [SampleRecord(f"p{i + k}", f"{i + k}.png") for k in range(n)]
            writer.add(f"b{i}", images, records, labels=np.arange(n, dtype=np.int64) % 2)
        writer.finish()
    return Store(out)


def drop_caches() -> str:
    if os.geteuid() != 0:
        return "warm cache"
    subprocess.run(["sync"], check=False)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return "cold cache"
    except OSError:
        return "warm cache"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--units", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--store-mib", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, {cpu_name()}")
    with tempfile.TemporaryDirectory(prefix="medtl-bench-") as tmp:
        root = Path(tmp)
        for units in args.units:
            best = min(commits(root, units) for _ in range(args.repeat))
            print(f"commit, {units:>6} units: {best * 1e6:7.1f} us per unit")
        store = big_store(root, args.store_mib)
        size = sum(p.stat().st_size for p in store.path.iterdir()) / 2**20
        quick = min(_timed(lambda: store.verify(quick=True)) for _ in range(args.repeat))
        cache = drop_caches()
        full = _timed(store.verify)
        print(f"verify, {size:.0f} MiB store: quick {quick * 1e3:.1f} ms, full {full:.2f} s ({cache})")
        print(f"full / quick: {full / quick:.0f}x")


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
