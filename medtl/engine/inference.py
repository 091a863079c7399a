"""Using a finished run: rebuild its model from a checkpoint, predict scores (with optional TTA)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import functional as TF

from medtl.data.transforms import build_transforms
from medtl.engine.features import eval_mode
from medtl.engine.losses import TaskKind, scores_from_logits
from medtl.engine.run_config import RunConfig
from medtl.errors import CheckpointError, InputError, UnknownChoiceError
from medtl.models import TransferModel, build_model, load_model_weights, read_model_metadata

TTA_MODES = ("hflip", "tencrop")
TENCROP_FRACTION = 0.875  # crop side relative to the image, as 224 of 256
CHECKPOINTS = ("best", "last")


@dataclass
class LoadedRun:
    """A run's model with the weights of one checkpoint, and what is needed to feed it."""

    run_dir: Path
    config: RunConfig
    model: TransferModel
    task: TaskKind
    class_names: list[str]
    in_chans: int
    which: str

    def transform(self):
        """The evaluation transform the run used (resize, channel repeat, normalisation)."""
        c = self.config
        return build_transforms(False, size=c.image_size, normalise=c.normalise, in_chans=self.in_chans)


def load_run(run_dir: str | Path, which: str = "best") -> LoadedRun:
    """Rebuild a run's model with ``checkpoints/<which>.safetensors`` ("best" or "last")."""
    run_dir = Path(run_dir)
    if which not in CHECKPOINTS:
        raise UnknownChoiceError("checkpoint", which, CHECKPOINTS)
    if not (run_dir / "config.toml").is_file():
        raise InputError(run_dir, "not a medtl run directory (config.toml missing)")
    config = RunConfig.load(run_dir)
    path = run_dir / "checkpoints" / f"{which}.safetensors"
    if not path.is_file():
        raise CheckpointError(
            path, "checkpoint missing", hint="the run has not finished a phase yet; rerun it to resume"
        )
    meta = read_model_metadata(path)
    try:
        task: TaskKind = meta["task"]
        class_names = list(meta["class_names"])
        spec = dict(meta["spec"])
        model = build_model(**spec)
    except (KeyError, TypeError) as exc:
        raise CheckpointError(path, f"not a checkpoint of a medtl run (metadata lacks {exc})") from None
    in_chans = int(spec.get("in_chans") or 3)
    load_model_weights(model, path)
    model.eval()
    return LoadedRun(run_dir, config, model, task, class_names, in_chans, which)


def _tta_views(x: torch.Tensor, tta: str | None) -> list[torch.Tensor]:
    if tta is None:
        return [x]
    if tta == "hflip":
        return [x, x.flip(-1)]
    if tta == "tencrop":
        h, w = x.shape[-2:]
        size = [max(1, round(h * TENCROP_FRACTION)), max(1, round(w * TENCROP_FRACTION))]
        return [TF.resize(v, [h, w], antialias=True) for v in TF.ten_crop(x, size)]
    raise UnknownChoiceError("test-time augmentation", tta, TTA_MODES)


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: DataLoader,
    *,
    device: torch.device | str,
    tta: str | None = None,
    task: TaskKind | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and targets of every batch in ``loader``.

    Scores are probabilities: (N,) for binary, softmax (N, K) for multiclass, sigmoid (N, K) for
    multilabel; with ``tta`` ("hflip" or "tencrop") the mean over the views. ``task`` defaults to
    binary for one output, else multiclass (pass "multilabel" for multi-label models).
    """
    device = torch.device(device)
    model.to(device)
    scores: list[np.ndarray] = []
    targets: list[Any] = []
    with eval_mode(model):
        for x, y in loader:
            x = x.to(device, non_blocking=True)
            views = _tta_views(x, tta)
            total = None
            for view in views:
                logits = model(view)
                kind = task or ("binary" if logits.shape[1] == 1 else "multiclass")
                probs = scores_from_logits(logits, kind)
                total = probs if total is None else total + probs
            scores.append((total / len(views)).cpu().numpy())
            targets.append(y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y))
    if not scores:
        return np.zeros((0,)), np.zeros((0,))
    return np.concatenate(scores), np.concatenate(targets)
