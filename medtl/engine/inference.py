"""Using a finished run: rebuild its objective and model from a checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from medtl.data.transforms import build_transforms
from medtl.engine.run_config import CONFIG_FILE, RunConfig
from medtl.errors import CheckpointError, InputError, UnknownChoiceError
from medtl.models import load_model_weights, read_model_metadata
from medtl.objectives import get_objective
from medtl.objectives.base import Objective

CHECKPOINTS = ("best", "last")


@dataclass
class LoadedRun:
    """A run's objective and model with the weights of one checkpoint, and what is needed to feed it."""

    run_dir: Path
    config: RunConfig
    objective: Objective
    model: nn.Module
    in_chans: int
    which: str

    @property
    def task(self) -> Any:
        return self.objective.describe().get("task")

    @property
    def class_names(self) -> list[str]:
        return list(self.objective.describe().get("class_names", []))

    def transform(self):
        """The evaluation transform the run used (resize, channel repeat, normalisation)."""
        c = self.config
        return build_transforms(False, size=c.image_size, normalise=c.normalise, in_chans=self.in_chans)


def load_run(run_dir: str | Path, which: str = "best") -> LoadedRun:
    """Rebuild a run's model with ``checkpoints/<which>.safetensors`` ("best" or "last")."""
    run_dir = Path(run_dir)
    if which not in CHECKPOINTS:
        raise UnknownChoiceError("checkpoint", which, CHECKPOINTS)
    if not (run_dir / CONFIG_FILE).is_file():
        raise InputError(run_dir, "not a medtl run directory (config.toml missing)")
    config = RunConfig.load(run_dir)
    path = run_dir / "checkpoints" / f"{which}.safetensors"
    if not path.is_file():
        raise CheckpointError(
            path, "checkpoint missing", hint="the run has not finished a phase yet; rerun it to resume"
        )
    meta = read_model_metadata(path)
    kind = meta.get("objective", config.objective.kind)
    if kind != config.objective.kind:
        raise CheckpointError(
            path, f"holds a '{kind}' model but the run's objective is '{config.objective.kind}'"
        )
    objective = get_objective(config.objective)
    try:
        model = objective.load_model(meta)
        spec = dict(meta["spec"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(path, f"not a checkpoint of a medtl run (metadata lacks {exc})") from None
    load_model_weights(model, path)
    model.eval()
    return LoadedRun(run_dir, config, objective, model, int(spec.get("in_chans") or 3), which)
