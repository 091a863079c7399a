"""`medtl sweep plan` on a 10,000-run grid: wall time and peak memory of the whole command.

    .venv/bin/python benchmarks/bench_sweep_plan.py [--runs-per-axis 10] [--repeat 3]

A spec with four axes of ``--runs-per-axis`` values each (10^4 runs by default) is planned by the
installed console script in a fresh process (best of ``--repeat``); the peak resident memory is the
child's ru_maxrss. The in-process expansion alone is timed too. Goal: < 5 s.
"""

from __future__ import annotations

import argparse
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomli_w

sys.path.insert(0, str(Path(__file__).parent))
from _machine import cpu_name

GOAL_S = 5.0


def write_spec(folder: Path, n: int) -> Path:
    spec = {
        "name": "plan-bench",
        "base": {"data": str(folder / "store"), "backbone": "resnet18", "init": "random"},
        "grid": {
            "seed": list(range(n)),
            "lr": [round(1e-4 * (i + 1), 6) for i in range(n)],
            "fraction": [round((i + 1) / n, 4) for i in range(n)],
            "phase_epochs.head": [i + 1 for i in range(n)],
        },
    }
    path = folder / "plan.toml"
    path.write_text(tomli_w.dumps(spec))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs-per-axis", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    medtl = Path(sys.executable).with_name("medtl")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = write_spec(folder, args.runs_per_axis)
        runs = args.runs_per_axis**4
        walls = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            done = subprocess.run(
                [str(medtl), "sweep", "plan", str(spec), "--out", str(folder / "out"), "--show", "5"],
                capture_output=True,
                text=True,
            )
            walls.append(time.perf_counter() - t0)
            assert done.returncode == 0, done.stderr
            assert f"{runs} runs in" in done.stdout, done.stdout[-500:]
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

        from medtl.sweep import plan_sweep

        t0 = time.perf_counter()
        plan = plan_sweep(spec, out=folder / "out")
        expand_s = time.perf_counter() - t0
        assert len(plan.runs) == runs
    best = min(walls)
    print(f"machine: {cpu_name()}, {platform.python_version()}")
    print(
        f"medtl sweep plan, {runs} runs: best {best:.2f} s of {args.repeat} (all: "
        f"{', '.join(f'{w:.2f}' for w in walls)}), peak RSS {peak_mb:.0f} MB"
    )
    print(
        f"in-process plan_sweep (read, validate {runs} RunConfigs, ids): {expand_s:.2f} s "
        f"({expand_s / runs * 1e6:.0f} µs per run)"
    )
    print(f"goal < {GOAL_S:.0f} s: {'met' if best < GOAL_S else 'NOT met'}")


if __name__ == "__main__":
    main()
