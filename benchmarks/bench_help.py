"""Start-up cost of the CLI: wall time of `medtl --help` and `medtl prepare --help`, and torch.

    .venv/bin/python benchmarks/bench_help.py [--repeat 5]

Each command runs as a fresh subprocess of the installed console script (best of ``--repeat``);
a second subprocess runs the same command in-process and reports whether torch was imported.
Target: < 0.5 s, torch not imported.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (["--help"], ["prepare", "--help"], ["prepare", "brats", "--help"])
TORCH_CHECK = """
import sys
from medtl_cli.main import main
sys.argv = ["medtl", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
print("TORCH_IMPORTED" if "torch" in sys.modules else "TORCH_NOT_IMPORTED", file=sys.stderr)
"""
TARGET_S = 0.5


def medtl_script() -> list[str]:
    script = Path(sys.executable).with_name("medtl")
    return (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "from medtl_cli.main import main; main()"]
    )


def best_wall(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "COLUMNS": "100"})
        times.append(time.perf_counter() - start)
    return min(times)


def imports_torch(args: list[str]) -> bool:
    done = subprocess.run(
        [sys.executable, "-c", TORCH_CHECK, *args], capture_output=True, text=True, check=True
    )
    return "TORCH_IMPORTED" in done.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    base = medtl_script()
    print("| command | wall s (best of %d) | torch imported | target < %.1f s |" % (args.repeat, TARGET_S))
    print("|---|---:|---|---|")
    failed = False
    for command in COMMANDS:
        wall = best_wall([*base, *command], args.repeat)
        torch = imports_torch(command)
        ok = wall < TARGET_S and not torch
        failed |= not ok
        verdict = "met" if ok else "MISSED"
        print(f"| `medtl {' '.join(command)}` | {wall:.3f} | {'yes' if torch else 'no'} | {verdict} |")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    print(
        f"\n(bare `python -c pass`: {time.perf_counter() - start:.3f} s; cpu cores {os.cpu_count()}, "
        f"load average {os.getloadavg()[0]:.2f})"
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
