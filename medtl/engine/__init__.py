"""The training engine: ``run(RunConfig)`` and the tools around a finished run.

Names are imported on first use (PEP 562), so ``medtl.engine.run_config`` (pydantic only) can be
imported without torch: `medtl sweep plan` validates thousands of RunConfigs in a second.
"""

from __future__ import annotations

import sys
import types
from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "LoadedRun": "medtl.engine.inference",
    "RunConfig": "medtl.engine.run_config",
    "RunResult": "medtl.engine.run",
    "export_features": "medtl.engine.features",
    "extract_features": "medtl.engine.features",
    "load_run": "medtl.engine.inference",
    "predict": "medtl.engine.inference",
    "run": "medtl.engine.run",
}

__all__ = [
    "LoadedRun",
    "RunConfig",
    "RunResult",
    "export_features",
    "extract_features",
    "load_run",
    "predict",
    "run",
]

if TYPE_CHECKING:
    from medtl.engine.features import export_features, extract_features
    from medtl.engine.inference import LoadedRun, load_run, predict
    from medtl.engine.run import RunResult, run
    from medtl.engine.run_config import RunConfig


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'medtl.engine' has no attribute '{name}'")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


class _Engine(types.ModuleType):
    """Keeps ``medtl.engine.run`` the function: loading the submodule of that name sets the package
    attribute to the module (an eager ``from medtl.engine.run import run`` used to rebind it)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _EXPORTS and isinstance(value, types.ModuleType):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Engine
