"""Objectives: what differs between tasks (model, batches, loss, metric, monitors), one file each.

``get_objective(config)`` builds the objective of a RunConfig's ``objective`` section; the engine
trains any of them. Importing this package (and its configs) does not import torch: an objective's
module is imported when it is first built.

Adding an objective: ``medtl/objectives/<name>.py`` with an ``Objective`` subclass, its config
class in ``medtl.objectives.configs`` (a member of ``ObjectiveConfig``), and one line below.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from medtl.objectives.configs import (
    DEFAULT_KIND,
    OBJECTIVE_CONFIGS,
    ClassificationConfig,
    ObjectiveConfig,
    ObjectiveSettings,
    config_class,
    kind_for_store,
    objective_kinds,
)

if TYPE_CHECKING:
    from medtl.objectives.base import Objective

# kind -> "module:class" of its Objective (imported on first use).
OBJECTIVES: dict[str, str] = {
    "classification": "medtl.objectives.classification:Classification",
    "segmentation": "medtl.objectives.segmentation:Segmentation",
    "simclr": "medtl.objectives.simclr:SimCLR",
    "adaptor": "medtl.objectives.adaptor:AdaptorObjective",
}


def objective_class(kind: str) -> type[Objective]:
    """The Objective class of a kind."""
    config_class(kind)  # unknown kinds: one line listing the valid ones
    module, _, name = OBJECTIVES[kind].partition(":")
    return getattr(importlib.import_module(module), name)


def get_objective(config: ObjectiveSettings) -> Objective:
    """A new objective for a config section (``check(store)`` binds it to a store)."""
    return objective_class(config.kind)(config)


__all__ = [
    "DEFAULT_KIND",
    "OBJECTIVES",
    "OBJECTIVE_CONFIGS",
    "ClassificationConfig",
    "ObjectiveConfig",
    "ObjectiveSettings",
    "config_class",
    "get_objective",
    "kind_for_store",
    "objective_class",
    "objective_kinds",
]
