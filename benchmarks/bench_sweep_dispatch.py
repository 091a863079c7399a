"""SLURM dispatch overhead: `medtl sweep --slurm` of a 20-run array on the local cluster, from the
command to every task finished, minus the runs' own time.

    slurm/local-cluster.sh start
    .venv/bin/python benchmarks/bench_sweep_dispatch.py [--runs 20] [--parallel 2] [--per-task 1 10]

The runs are tiny (a head on cached features, 1 epoch), so the wall time is mostly dispatch: the
submission, SLURM scheduling the tasks, each task's Python starting, unpickling the job and
importing torch, and submitit's bookkeeping. A run's own time is what `engine.run` took
(status.json's wall_time_s). With P tasks at once, the overhead per run is
(wall x P - sum of own times) / runs. The same sweep runs once per ``--per-task`` value (runs each
array task trains in turn, sharing one Python start), side by side in this invocation. The Python +
torch start-up of one task is measured apart. Goal: < 2 s per run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomli_w

ROOT = Path(__file__).parents[1]
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(ROOT))
from _machine import cpu_name  # noqa: E402

GOAL_S = 2.0


def dispatch(folder: Path, runs: int, parallel: int, per_task: int) -> tuple[float, float, list[float]]:
    """(submit seconds, seconds until every task finished, each run's own seconds)."""
    from medtl.sweep import sweep_status
    from tests.engine.engine_helpers import write_signal_store

    medtl = Path(sys.executable).with_name("medtl")
    store = folder / "store"
    if not store.exists():
        write_signal_store(store, n=40)
    name = f"dispatch-{per_task}"
    spec = {
        "name": name,
        "base": {
            "data": str(store), "backbone": "resnet10t", "init": "random", "strategy": "linear",
            "phase_epochs": {"head": 1}, "batch_size": 8, "num_workers": 0, "normalise": "none",
            "lr": 1e-2, "bootstrap": 0, "device": "cpu",
        },
        "grid": {"seed": list(range(runs))},
    }  # fmt: skip
    path = folder / f"{name}.toml"
    path.write_text(tomli_w.dumps(spec))
    profile = ROOT / "slurm" / "profiles" / "local.toml"
    command = [
        str(medtl),
        "sweep",
        str(path),
        "--slurm",
        "--profile",
        str(profile),
        "--out",
        str(folder / "out"),
    ]
    command += ["--array-parallelism", str(parallel), "--runs-per-task", str(per_task)]
    t0 = time.perf_counter()
    submitted = subprocess.run(command, capture_output=True, text=True)
    submit_s = time.perf_counter() - t0
    assert submitted.returncode == 0, submitted.stderr
    sweep_dir = folder / "out" / name
    while True:
        rows = sweep_status(sweep_dir)
        if all(r.state in ("done", "failed") for r in rows):
            break
        time.sleep(0.5)
    wall = time.perf_counter() - t0
    assert all(r.state == "done" for r in rows), [(r.run_id, r.state, r.error) for r in rows]
    own = [json.loads((sweep_dir / r.run_id / "status.json").read_text())["wall_time_s"] for r in rows]
    return submit_s, wall, own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--per-task", type=int, nargs="+", default=[1, 10])
    args = parser.parse_args()
    conf = Path(os.environ.get("MEDTL_SLURM_DIR", "/tmp/medtl-slurm")) / "etc" / "slurm.conf"
    os.environ.setdefault("SLURM_CONF", str(conf))
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MEDTL_WEIGHTS_DIR", "/nonexistent")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for per_task in args.per_task:
            results[per_task] = dispatch(Path(tmp), args.runs, args.parallel, per_task)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import medtl.sweep.job, medtl.engine.runner"], check=True)
    startup = time.perf_counter() - t0
    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs, {platform.python_version()}; local cluster")
    print(f"{args.runs}-run sweep as one array job, {args.parallel} tasks at once:")
    for per_task, (submit_s, wall, own) in results.items():
        per_run = (wall * args.parallel - sum(own)) / args.runs
        verdict = "met" if per_run < GOAL_S else "NOT met"
        print(
            f"  {per_task:2d} run(s) per task: submit {submit_s:.1f} s, all done after {wall:.1f} s, "
            f"runs' own time {sum(own):.1f} s; overhead per run {per_run:.2f} s "
            f"(goal < {GOAL_S:.0f} s: {verdict})"
        )
    print(f"one task's Python + medtl + torch import: {startup:.2f} s")


if __name__ == "__main__":
    main()
