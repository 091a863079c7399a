"""Energy used by a run: measured where the hardware tells, estimated (and flagged) where it does not.

* GPU: NVML's total-energy counter (millijoules since driver load), through ``pynvml`` when importable.
* CPU: Intel RAPL package counters under ``/sys/class/powercap`` when readable, with wraparound.
* Otherwise: process CPU time x a per-core power guess, reported with ``"estimated": true``.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("medtl")

RAPL_ROOT = Path("/sys/class/powercap")
# A rough average for a busy server core (a 150 W, 16-core package, with some uncore share);
# used only when nothing is measured, and the result is flagged as estimated.
WATTS_PER_CORE_GUESS = 10.0
JOULES_PER_KWH = 3.6e6


class _NvmlCounter:
    """Sum of NVML total-energy counters of the given GPUs, in joules."""

    method = "nvml"

    def __init__(self, device_indices: list[int]) -> None:
        import pynvml  # lazily: only machines with an NVIDIA driver have it

        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in device_indices]
        self.read()  # fails here (unsupported GPU) rather than mid-run

    def read(self) -> float:
        return sum(self._nvml.nvmlDeviceGetTotalEnergyConsumption(h) for h in self._handles) / 1000.0


class _RaplCounter:
    """Sum of RAPL package-domain counters, in joules; each counter wraps at max_energy_range_uj."""

    method = "rapl"

    def __init__(self, root: Path = RAPL_ROOT) -> None:
        # Top-level package domains only (intel-rapl:0); sub-zones (intel-rapl:0:0) are inside them.
        self._zones = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
        if not self._zones:
            raise OSError(f"{root}: no RAPL package domains")
        self._max = [int((z / "max_energy_range_uj").read_text()) for z in self._zones]
        self._last = [self._raw(z) for z in self._zones]
        self._total_uj = 0

    @staticmethod
    def _raw(zone: Path) -> int:
        return int((zone / "energy_uj").read_text())

    def read(self) -> float:
        for i, zone in enumerate(self._zones):
            now = self._raw(zone)
            delta = now - self._last[i]
            if delta < 0:  # the counter wrapped around
                delta += self._max[i]
            self._total_uj += delta
            self._last[i] = now
        return self._total_uj / 1e6


class _CpuTimeEstimate:
    """Process CPU seconds (with finished children, e.g. DataLoader workers) x a per-core power guess."""

    method = "cpu-time-estimate"

    def __init__(self, watts_per_core: float = WATTS_PER_CORE_GUESS) -> None:
        self.watts_per_core = watts_per_core

    def read(self) -> float:
        t = os.times()
        return (t.user + t.system + t.children_user + t.children_system) * self.watts_per_core


class EnergyMeter:
    """Reads energy since construction; ``segment()`` gives the energy of consecutive intervals."""

    def __init__(self, *, gpu_indices: list[int] | None = None, rapl_root: Path = RAPL_ROOT) -> None:
        self._counter: Any = None
        if gpu_indices:
            try:
                self._counter = _NvmlCounter(gpu_indices)
            except Exception as exc:  # no pynvml, no driver, or a GPU without the counter
                log.debug("NVML energy counter unavailable: %s", exc)
        if self._counter is None:
            try:
                self._counter = _RaplCounter(rapl_root)
            except (OSError, ValueError) as exc:
                log.debug("RAPL energy counter unavailable: %s", exc)
        if self._counter is None:
            self._counter = _CpuTimeEstimate()
        self.method: str = self._counter.method
        self.estimated: bool = isinstance(self._counter, _CpuTimeEstimate)
        self._start = self._counter.read()
        self._mark = self._start
        self._t0 = time.monotonic()

    def joules(self) -> float:
        """Energy since the meter started."""
        return self._counter.read() - self._start

    def segment(self) -> float:
        """Energy since the previous call (or the start), in joules."""
        now = self._counter.read()
        used, self._mark = now - self._mark, now
        return used

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"method": self.method, "estimated": self.estimated}
        if self.estimated:
            info["assumption"] = f"{self._counter.watts_per_core} W per busy CPU core"
        return info


def kwh(joules: float) -> float:
    return joules / JOULES_PER_KWH
