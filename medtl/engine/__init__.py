"""The training engine: ``run(RunConfig)`` and the tools around a finished run.

Importing this package imports torch; the CLI imports it inside its commands.
"""

from medtl.engine.features import export_features, extract_features
from medtl.engine.inference import LoadedRun, load_run, predict
from medtl.engine.run import RunResult, run
from medtl.engine.run_config import RunConfig

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
