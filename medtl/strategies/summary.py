"""What a strategy does to a concrete architecture: parameters per phase (``medtl strategies show``)."""

from __future__ import annotations

from dataclasses import dataclass

from medtl.strategies.selection import ResolvedPhase, resolve_phases
from medtl.strategies.strategy import Strategy


@dataclass(frozen=True)
class StrategySummary:
    strategy: Strategy
    backbone: str
    num_outputs: int
    num_total: int
    phases: list[ResolvedPhase]


def describe_strategy(
    strategy: Strategy, backbone: str, num_outputs: int, *, in_chans: int = 3
) -> StrategySummary:
    """Build ``backbone`` the way the strategy needs it (truncation, module) and resolve every phase."""
    from medtl.models.transfer_model import build_model

    model = build_model(
        backbone, num_outputs, in_chans=in_chans, module=strategy.module, truncate=strategy.truncate
    )
    phases = resolve_phases(model, strategy)
    return StrategySummary(strategy, backbone, num_outputs, phases[0].num_total, phases)
