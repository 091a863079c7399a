"""Transfer strategies as data: phases of which groups train, for how long, how (see ``strategy.py``)."""

from medtl.strategies.registry import get_strategy, list_strategies
from medtl.strategies.selection import (
    ResolvedPhase,
    apply_bn_policy,
    apply_phase,
    count_parameters,
    param_groups,
    resolve_phase,
    resolve_phases,
)
from medtl.strategies.strategy import (
    Strategy,
    StrategyPhase,
    load_strategy_file,
    override_epochs,
    parse_strategy,
    scale_epochs,
    strategy_to_toml,
    with_base_lr,
)
from medtl.strategies.summary import StrategySummary, describe_strategy

__all__ = [
    "ResolvedPhase",
    "Strategy",
    "StrategyPhase",
    "StrategySummary",
    "apply_bn_policy",
    "apply_phase",
    "count_parameters",
    "describe_strategy",
    "get_strategy",
    "list_strategies",
    "load_strategy_file",
    "override_epochs",
    "param_groups",
    "parse_strategy",
    "resolve_phase",
    "resolve_phases",
    "scale_epochs",
    "strategy_to_toml",
    "with_base_lr",
]
