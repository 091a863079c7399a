"""`medtl prepare brats` against the study notebook's way of building the dataset, side by side.

    .venv/bin/python benchmarks/bench_prepare.py [--volumes 20] [--shape 240 240 155] [--repeat 2]

Input: phantom BraTS subjects of BraTS size, generated once into a cache directory
(``$MEDTL_BENCH_CACHE``, default ``~/.cache/medtl/bench``). Every measurement runs in its own
subprocess. The parent polls that process and its children (workers included) every 10 ms and
keeps the peak of their summed PSS (resident memory, with pages shared between forked workers
counted once); the CPU time of the whole tree comes from ``getrusage(RUSAGE_CHILDREN)``.
Configurations run round-robin ``--repeat`` times and the best wall time of each is reported.

The baseline does what the study's notebook does for the default conversion (t1, tumour slices,
grade labels, ``x / (max - min)`` per volume, float16): load each volume with nibabel
(``get_fdata``, float64), normalise it, append every tumour slice to Python lists, ``np.stack``,
cast and ``np.save``. medtl runs the real CLI (`medtl prepare brats`).
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MEDTL = "from medtl_cli.main import main; main()"


def baseline(root: Path, out: Path) -> None:
    """The notebook's conversion (kept naive on purpose: this is what medtl is compared with)."""
    import nibabel as nib

    with open(root / "name_mapping.csv", newline="") as fh:
        grades = {row["BraTS_2020_subject_ID"]: row["Grade"] for row in csv.DictReader(fh)}
    images, labels = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        t1 = nib.load(str(folder / f"{folder.name}_t1.nii.gz")).get_fdata()
        seg = nib.load(str(folder / f"{folder.name}_seg.nii.gz")).get_fdata()
        t1 = t1 / (t1.max() - t1.min())
        for k in range(t1.shape[2]):
            if seg[:, :, k].any():
                images.append(np.array(t1[:, :, k]))
                labels.append(1 if grades[folder.name] == "HGG" else 0)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "images.npy", np.stack(images)[:, None].astype(np.float16))
    np.save(out / "labels.npy", np.array(labels))


def measure(cmd: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds and peak memory (MiB of PSS summed over the process tree)."""
    import psutil

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    ps = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        try:
            tree = [ps, *ps.children(recursive=True)]
            peak = max(peak, sum(p.memory_full_info().pss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.01)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr.read().decode()}")
    # Workers are reaped by their parent, so their CPU time is included here.
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, peak / 2**20


def phantom(volumes: int, shape: tuple[int, int, int]) -> Path:
    from medtl.io.converters.phantom import write_phantom_brats

    cache = Path(os.environ.get("MEDTL_BENCH_CACHE", Path.home() / ".cache" / "medtl" / "bench"))
    root = cache / f"phantom-brats-{volumes}-{'x'.join(map(str, shape))}-seed0"
    if not root.exists():
        print(f"generating {volumes} phantom subjects of shape {shape} into {root} (once)", flush=True)
        start = time.perf_counter()
        write_phantom_brats(root, subjects=volumes, shape=shape, seed=0)
        print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)
    return root


def subset(root: Path, n: int, where: Path) -> Path:
    """The first ``n`` subjects of ``root``, as symlinks (with their name_mapping.csv)."""
    out = where / f"first-{n}"
    out.mkdir()
    (out / "name_mapping.csv").symlink_to(root / "name_mapping.csv")
    for folder in sorted(p for p in root.iterdir() if p.is_dir())[:n]:
        (out / folder.name).symlink_to(folder)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--volumes", type=int, default=20)
    parser.add_argument("--shape", type=int, nargs=3, default=(240, 240, 155))
    parser.add_argument("--repeat", type=int, default=2, help="runs per configuration (best time kept)")
    parser.add_argument("--baseline", nargs=2, metavar=("ROOT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        baseline(Path(args.baseline[0]), Path(args.baseline[1]))
        return

    full = phantom(args.volumes, tuple(args.shape))
    half_n = args.volumes // 2
    with tempfile.TemporaryDirectory(prefix="medtl-bench-") as tmp:
        tmp = Path(tmp)
        half = subset(full, half_n, tmp)
        runs = [
            ("baseline (notebook)", "base", full, args.volumes, None),
            ("baseline (notebook)", "base", half, half_n, None),
            ("medtl, 1 worker", "w1", full, args.volumes, 1),
            ("medtl, 1 worker", "w1", half, half_n, 1),
            ("medtl, 2 workers", "w2", full, args.volumes, 2),
            ("medtl, 2 workers", "w2", half, half_n, 2),
        ]
        # Round-robin over the configurations, so that load from other processes on the machine
        # hits them alike; the best wall time of each is kept (with its CPU time and peak memory).
        results: dict[tuple[str, int], tuple[float, float, float]] = {}
        for _ in range(args.repeat):
            for _label, key, root, n, workers in runs:
                out = tmp / f"{key}-{n}"
                if workers is None:
                    cmd = [sys.executable, __file__, "--baseline", str(root), str(out)]
                else:
                    cmd = [sys.executable, "-c", MEDTL, "prepare", "brats", str(root), str(out)]
                    cmd += ["--workers", str(workers), "--overwrite"]
                result = measure(cmd)
                if (key, n) not in results or result[0] < results[key, n][0]:
                    results[key, n] = result
        for label, key, _root, n, _workers in runs:
            wall, cpu, mem = results[key, n]
            print(
                f"{label:22s} {n:3d} volumes: {wall:6.2f} s  {n / wall:5.2f} volumes/s  "
                f"cpu {cpu:6.2f} s  peak memory {mem:7.0f} MiB",
                flush=True,
            )

        # Same numbers out of both (the baseline keeps nibabel's stored orientation, LPS for BraTS).
        from medtl.io.store import Store

        store = Store(tmp / f"w2-{args.volumes}")
        base = np.load(tmp / f"base-{args.volumes}" / "images.npy", mmap_mode="r")
        same = base.shape == store.images.shape and np.array_equal(base[:, :, ::-1, ::-1], store.images)
        print(f"identical arrays (after reorientation): {same}; {len(store)} slices")

    n = args.volumes
    base_wall = results["base", n][0]
    print(
        f"\n| run ({n} volumes of {'x'.join(map(str, args.shape))}) | wall s | volumes/s | speed vs baseline "
        f"| CPU s | peak memory (PSS) MiB, {half_n} -> {n} volumes |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for label, key in (
        ("baseline (notebook)", "base"),
        ("medtl, 1 worker", "w1"),
        ("medtl, 2 workers", "w2"),
    ):
        wall, cpu, mem = results[key, n]
        print(
            f"| {label} | {wall:.2f} | {n / wall:.2f} | {base_wall / wall:.2f}x | {cpu:.2f} "
            f"| {results[key, half_n][2]:.0f} -> {mem:.0f} |"
        )
    print(f"\ncpu cores: {os.cpu_count()}; load average before the last run: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
