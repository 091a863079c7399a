"""`medtl report` on a large synthetic sweep: wall time and peak memory, 100 vs 500 run folders.

    .venv/bin/python benchmarks/bench_report.py [--runs 500] [--patients 60] [--slices 8] [--repeat 1]

The sweep is 5 strategies x 2 inits x N/10 seeds of synthetic run folders in the layout `medtl
finetune` writes (metrics.json with history, predictions_test.npz of patients x slices test samples),
so the report does everything it does on a real sweep: read every folder, pooled patient bootstraps
per group, paired tests against strategy=full with Holm, every table and figure, the HTML page.
`medtl report` runs as a fresh subprocess of the console script; peak memory is its max RSS.
Goal: < 20 s for 500 runs.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._machine import cpu_name
from tests.report.synthetic import make_test_set, write_run

STRATEGIES = ("linear", "l1sb", "l2sb", "progressive", "full")
INITS = ("random", "imagenet")
GOAL_S = 20.0


def make_sweep(root: Path, runs: int, patients: int, slices: int) -> Path:
    seeds = max(1, runs // (len(STRATEGIES) * len(INITS)))
    data = make_test_set(patients, slices)
    for init in INITS:
        for strategy in STRATEGIES:
            for seed in range(seeds):
                write_run(root, strategy=strategy, seed=seed, init=init, test=data, epochs=20)
    return root


def medtl_script() -> list[str]:
    script = Path(sys.executable).with_name("medtl")
    return (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "from medtl_cli.main import main; main()"]
    )


def time_report(root: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one `medtl report` subprocess."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run(
        [
            *medtl_script(),
            "report",
            str(root),
            "--by",
            "init,strategy",
            "--baseline",
            "strategy=full",
            "--force",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--patients", type=int, default=60)
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    print(f"machine: {cpu_name()}")
    tmp = Path(tempfile.mkdtemp(prefix="medtl-bench-report-"))
    try:
        rows = []
        for runs in sorted({100, args.runs}):
            t0 = time.perf_counter()
            root = make_sweep(tmp / f"sweep{runs}", runs, args.patients, args.slices)
            made = time.perf_counter() - t0
            times = [time_report(root) for _ in range(args.repeat)]
            wall = min(t for t, _ in times)
            peak = max(m for _, m in times)
            rows.append((runs, wall, peak, made))
        print(f"{'runs':>5} {'report wall s':>14} {'peak RSS MiB':>13} {'(writing the folders s)':>24}")
        for runs, wall, peak, made in rows:
            print(f"{runs:>5} {wall:>14.1f} {peak:>13.0f} {made:>24.1f}")
        big = rows[-1]
        if len(rows) > 1:
            print(f"ratio {big[0]}/{rows[0][0]} runs: {big[1] / rows[0][1]:.2f}x time")
        print(f"goal < {GOAL_S:.0f} s for {big[0]} runs: {'met' if big[1] < GOAL_S else 'NOT met'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
