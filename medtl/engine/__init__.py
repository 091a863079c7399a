"""The training engine: ``run(RunConfig)`` and the tools around a finished run.

This is the engine's public surface; ``medtl.evaluate``, sweeps and reports use these names only.
Names are imported on first use, so ``RunConfig`` and ``RunMetrics`` (plain pydantic models) load
without torch; the rest imports it. (``run`` lives in ``runner``: a submodule named ``run`` would
replace the function of that name on this package when it is first imported.)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medtl.engine.evaluation import Evaluated, evaluate_loader
    from medtl.engine.export import export_features
    from medtl.engine.features import extract_features
    from medtl.engine.guards import record_verified, verify_store
    from medtl.engine.inference import LoadedRun, load_run
    from medtl.engine.record import METRICS_FILE, RunMetrics
    from medtl.engine.run_config import RunConfig
    from medtl.engine.runner import RunResult, resolve_split, run
    from medtl.engine.runtime import resolve_device
    from medtl.engine.state import write_json

_WHERE = {
    "Evaluated": "evaluation",
    "evaluate_loader": "evaluation",
    "export_features": "export",
    "extract_features": "features",
    "record_verified": "guards",
    "verify_store": "guards",
    "LoadedRun": "inference",
    "load_run": "inference",
    "METRICS_FILE": "record",
    "RunMetrics": "record",
    "RunResult": "runner",
    "resolve_split": "runner",
    "run": "runner",
    "RunConfig": "run_config",
    "resolve_device": "runtime",
    "write_json": "state",
}

__all__ = [
    "METRICS_FILE",
    "Evaluated",
    "LoadedRun",
    "RunConfig",
    "RunMetrics",
    "RunResult",
    "evaluate_loader",
    "export_features",
    "extract_features",
    "load_run",
    "record_verified",
    "resolve_device",
    "resolve_split",
    "run",
    "verify_store",
    "write_json",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'medtl.engine' has no attribute '{name}'")
    value = getattr(importlib.import_module(f"medtl.engine.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
