"""Features of a frozen network, computed once: the inputs of a cached head-only phase, and the pooled
features ``medtl extract`` writes (see ``medtl.engine.export``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import nn

from medtl.data.dataset import StoreDataset, make_loader
from medtl.engine.runtime import Precision, eval_mode
from medtl.io.store import Store
from medtl.objectives.base import FEATURES, IMAGE, INDEX, TARGET, VIEWS, Batch
from medtl.progress import NULL_PROGRESS, Progress


@torch.no_grad()
def cache_inputs(
    model: nn.Module,
    fn: Callable[[Batch], torch.Tensor],
    loader: Iterable[Batch],
    *,
    precision: Precision,
    progress: Progress = NULL_PROGRESS,
    total: int | None = None,
) -> dict[str, torch.Tensor]:
    """``{"features": (N, D) float32, "target", "index", ...}`` on the CPU: ``fn(batch)`` of every
    batch, with ``model`` in eval mode (each module's own mode restored after), next to the batch's
    other tensors (targets, indices, e.g. text embeddings) and without its images."""
    parts: dict[str, list[torch.Tensor]] = {FEATURES: [], TARGET: [], INDEX: []}
    task = progress.start("extracting features", total=total)
    with eval_mode(model), precision.autocast():
        for batch in loader:
            feats = fn(precision.to_device(batch))
            parts[FEATURES].append(feats.float().reshape(len(batch[INDEX]), -1).cpu())
            for key, value in batch.items():
                if key not in (IMAGE, VIEWS) and isinstance(value, torch.Tensor):
                    parts.setdefault(key, []).append(value)
            progress.advance(task)
    progress.end(task)
    if not parts[INDEX]:
        return {FEATURES: torch.zeros(0, 0), TARGET: torch.zeros(0), INDEX: torch.zeros(0, dtype=torch.int64)}
    return {k: torch.cat(v) for k, v in parts.items()}


def _feature_fn(model: nn.Module) -> Callable[[Batch], torch.Tensor]:
    """A TransferModel gives its head input (pooled features or the module's output), a Backbone its
    pooled features."""
    for name in ("forward_head_input", "forward_pooled"):
        forward = getattr(model, name, None)
        if forward is not None:
            return lambda batch: forward(batch[IMAGE])
    raise TypeError(f"{type(model).__name__} has neither forward_head_input nor forward_pooled")


def extract_features(
    model_or_backbone: nn.Module,
    store: Store,
    indices: np.ndarray | None,
    *,
    batch_size: int,
    device: torch.device | str,
    transform: Callable[..., Any] | None = None,
    num_workers: int = 0,
    amp: torch.dtype | None = None,
    progress: Progress = NULL_PROGRESS,
) -> np.ndarray:
    """Float32 features (N, D) of the samples ``indices`` (all when None), in that order, in eval mode."""
    device = torch.device(device)
    dataset = StoreDataset(store, indices, transform)
    loader = make_loader(
        dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=device.type == "cuda", dicts=True
    )
    model_or_backbone.to(device)
    inputs = cache_inputs(
        model_or_backbone,
        _feature_fn(model_or_backbone),
        loader,
        precision=Precision(device, amp),
        progress=progress,
        total=len(loader),
    )
    return inputs[FEATURES].numpy()
