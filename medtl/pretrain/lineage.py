"""Which run's weights a run started from, back to the first initialisation.

A run's ``init`` is ``random``, ``imagenet``, a checkpoint file or a run directory. A checkpoint inside
``<run>/checkpoints/`` belongs to that run; an exported backbone (``backbone.safetensors``) names the
run it came from in its metadata. Following these links gives the chain of a domain-adaptive study
(imagenet -> dapt on BraTS -> finetune on CE-MRI), each step with its objective, strategy, status
and the energy it used.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from medtl.errors import InputError

CONFIG_FILE, METRICS_FILE, STATUS_FILE = "config.toml", "metrics.json", "status.json"


@dataclass
class LineageStep:
    """One run of a chain, or (last) the initialisation the chain started from."""

    run_dir: Path | None
    init: str
    objective: str | None = None
    strategy: str | None = None
    backbone: str | None = None
    status: str | None = None
    kwh: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": None if self.run_dir is None else str(self.run_dir),
            "init": self.init,
            "objective": self.objective,
            "strategy": self.strategy,
            "backbone": self.backbone,
            "status": self.status,
            "kwh": self.kwh,
        }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_of(init: str) -> Path | None:
    """The run directory whose weights ``init`` names, if any."""
    path = Path(init)
    if path.is_dir() and (path / CONFIG_FILE).is_file():
        return path.resolve()
    if not path.is_file():
        return None
    if path.parent.name == "checkpoints" and (path.parent.parent / CONFIG_FILE).is_file():
        return path.parent.parent.resolve()
    if path.suffix == ".safetensors":
        from medtl.pretrain.export import read_export_metadata

        try:
            origin = read_export_metadata(path).get("origin") or {}
        except InputError:
            return None
        run = origin.get("run") if isinstance(origin, dict) else None
        if run and (Path(run) / CONFIG_FILE).is_file():
            return Path(run).resolve()
    return None


def _step(run_dir: Path) -> LineageStep:
    try:
        config = tomllib.loads((run_dir / CONFIG_FILE).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(run_dir / CONFIG_FILE, f"cannot be read ({exc})") from None
    objective = config.get("objective")
    kind = objective.get("kind") if isinstance(objective, dict) else objective
    energy = _read_json(run_dir / METRICS_FILE).get("energy") or {}
    return LineageStep(
        run_dir=run_dir,
        init=str(config.get("init", "random")),
        objective=kind or "classification",
        strategy=config.get("strategy"),
        backbone=config.get("backbone"),
        status=_read_json(run_dir / STATUS_FILE).get("status"),
        kwh=energy.get("kwh") if isinstance(energy, dict) else None,
    )


def lineage(run_dir: str | Path) -> list[LineageStep]:
    """The chain of ``run_dir``: itself first, then the run its init came from, and so on; the last
    entry is the initialisation that started the chain (``run_dir`` None)."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).is_file():
        raise InputError(run_dir, "not a medtl run directory (config.toml missing)")
    chain: list[LineageStep] = []
    seen: set[Path] = set()
    current: Path | None = run_dir.resolve()
    while current is not None and current not in seen:
        seen.add(current)
        step = _step(current)
        chain.append(step)
        current = run_of(step.init)
    chain.append(LineageStep(run_dir=None, init=chain[-1].init))
    return chain


def total_kwh(chain: list[LineageStep]) -> float | None:
    """Energy of every run of the chain together (None when no run recorded any)."""
    values = [s.kwh for s in chain if s.kwh is not None]
    return sum(values) if values else None
