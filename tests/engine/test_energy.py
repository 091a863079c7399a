"""Energy meter: RAPL counters (with wraparound) when readable, else a flagged CPU-time estimate."""

from __future__ import annotations

import pytest

from medtl.engine.energy import EnergyMeter, kwh


def write_zone(root, name, energy_uj, max_uj=1_000_000):
    zone = root / name
    zone.mkdir(exist_ok=True)
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")


def test_rapl_sums_packages_and_handles_wraparound(tmp_path):
    write_zone(tmp_path, "intel-rapl:0", 900_000)
    write_zone(tmp_path, "intel-rapl:1", 100_000)
    write_zone(tmp_path, "intel-rapl:0:0", 5)  # a sub-zone (core), already inside package 0
    meter = EnergyMeter(rapl_root=tmp_path)
    assert meter.describe() == {"method": "rapl", "estimated": False}
    write_zone(tmp_path, "intel-rapl:0", 50_000)  # wrapped: 900k -> 1M -> 50k = 150k uJ
    write_zone(tmp_path, "intel-rapl:1", 300_000)  # +200k uJ
    assert meter.segment() == pytest.approx(0.35)
    write_zone(tmp_path, "intel-rapl:1", 400_000)
    assert meter.segment() == pytest.approx(0.1)
    assert meter.joules() == pytest.approx(0.45)


def test_without_counters_estimate_is_flagged(tmp_path):
    meter = EnergyMeter(rapl_root=tmp_path / "none")
    info = meter.describe()
    assert info["method"] == "cpu-time-estimate" and info["estimated"] is True
    assert "W per busy CPU core" in info["assumption"]
    sum(i * i for i in range(300_000))  # burn some CPU time
    assert meter.joules() > 0


def test_gpu_request_without_nvml_falls_back(tmp_path):
    meter = EnergyMeter(gpu_indices=[0], rapl_root=tmp_path / "none")
    assert meter.method == "cpu-time-estimate"


def test_kwh():
    assert kwh(3.6e6) == 1.0
