"""Local sweep throughput: the same tiny sweep sequentially and with N worker processes.

    .venv/bin/python benchmarks/bench_sweep_local.py [--runs 8] [--workers 2] [--epochs 6]

Both sweeps run side by side in this one invocation (sequential first, then N processes with an
equal share of the CPU threads each); each writes into its own folder. Reports the wall time of
each, runs per minute and the speed-up, and checks the metrics agree.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import tomli_w

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT))
from _machine import cpu_name  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6)
    args = parser.parse_args()
    os.environ.setdefault("MEDTL_WEIGHTS_DIR", "/nonexistent")
    from medtl.sweep import LocalOptions, plan_sweep, run_sweep
    from tests.engine.engine_helpers import write_signal_store

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = write_signal_store(folder / "store", n=40).path
        spec = {
            "name": "local-bench",
            "base": {
                "data": str(store), "backbone": "resnet10t", "init": "random", "strategy": "full",
                "phase_epochs": {"all": args.epochs}, "batch_size": 8, "num_workers": 0,
                "normalise": "none", "lr": 1e-3, "bootstrap": 0, "device": "cpu",
            },
            "grid": {"seed": list(range(args.runs))},
        }  # fmt: skip
        path = folder / "local.toml"
        path.write_text(tomli_w.dumps(spec))
        cpus = os.cpu_count() or 1
        timings = {}
        for label, local in (
            ("sequential", LocalOptions(workers=1)),
            (f"{args.workers} processes", LocalOptions(workers=args.workers, cpus=cpus)),
        ):
            os.environ["OMP_NUM_THREADS"] = str(cpus)  # sequential: one run gets every thread
            plan = plan_sweep(path, out=folder / label.replace(" ", "-"))
            t0 = time.perf_counter()
            submission = run_sweep(plan, local=local)
            timings[label] = time.perf_counter() - t0
            assert {r.status for r in submission.records} == {"completed"}
            timings[label + " metrics"] = {
                r.run_id: json.loads((plan.sweep_dir / r.run_id / "metrics.json").read_text())["test"]
                for r in submission.records
            }
    seq, par = timings["sequential"], timings[f"{args.workers} processes"]
    # One run with every thread vs runs with a share each: CPU sums differ in their last bits.
    a, b = timings["sequential metrics"], timings[f"{args.workers} processes metrics"]
    gap = max(
        abs(a[run][k] - b[run][k])
        for run in a
        for k in a[run]
        if isinstance(a[run][k], float) and isinstance(b[run].get(k), float)
    )
    print(f"machine: {cpu_name()}, {cpus} CPUs, {platform.python_version()}")
    print(f"{args.runs} runs of resnet10t (full, {args.epochs} epochs, 40 samples at 32 px):")
    print(f"  sequential:            {seq:7.1f} s  ({args.runs / seq * 60:.1f} runs/min)")
    print(f"  {args.workers} processes:          {par:7.1f} s  ({args.runs / par * 60:.1f} runs/min)")
    print(f"  speed-up {seq / par:.2f}x; largest difference of a test metric: {gap:.2e}")


if __name__ == "__main__":
    main()
