"""Features of a frozen network: what the head sees, computed once per split.

Used by the cached head-only phase of ``run`` and by ``medtl extract`` (pooled features per split
written as ``features_<split>.npy`` + labels + index, for ``medtl probe``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medtl.data.dataset import StoreDataset, make_loader
from medtl.io.paths import FEATURES, guard_output
from medtl.io.store import Store
from medtl.progress import NULL_PROGRESS, Progress


def _feature_fn(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """A TransferModel gives its head input (pooled features or the module's output), a Backbone its
    pooled features."""
    if hasattr(model, "forward_head_input"):
        return model.forward_head_input
    if hasattr(model, "forward_pooled"):
        return model.forward_pooled
    raise TypeError(f"{type(model).__name__} has neither forward_head_input nor forward_pooled")


@contextlib.contextmanager
def eval_mode(model: nn.Module):
    """Eval mode inside the block; every module's own mode (e.g. frozen BatchNorm) restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


@torch.no_grad()
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
        dataset, batch_size=batch_size, num_workers=num_workers, pin_memory=device.type == "cuda"
    )
    fn = _feature_fn(model_or_backbone)
    out: list[np.ndarray] = []
    task = progress.start("extracting features", total=len(loader))
    autocast = torch.autocast(device.type, dtype=amp) if amp is not None else contextlib.nullcontext()
    with eval_mode(model_or_backbone), autocast:
        for x, _ in loader:
            feats = fn(x.to(device, non_blocking=True))
            out.append(feats.float().reshape(len(x), -1).cpu().numpy())
            progress.advance(task)
    progress.end(task)
    if not out:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(out).astype(np.float32, copy=False)


def _split_partitions(store: Store, split: str | Path | None) -> tuple[dict[str, np.ndarray], str]:
    """Partitions of the split file (given, or the store's default one), else the whole store as "all"."""
    from medtl.data.splits import default_split_path, load_split

    path = Path(split) if split is not None else default_split_path(store.path)
    if split is None and not path.is_file():
        return {"all": np.arange(len(store))}, "all"
    parts = load_split(path, store).partitions
    return {name: np.asarray(idx, dtype=np.int64) for name, idx in parts.items() if len(idx)}, str(path)


def export_features(
    source: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    split: str | Path | None = None,
    init: str = "imagenet",
    allow_partial: bool = False,
    weights_dir: Path | None = None,
    image_size: int | None = None,
    normalise: str = "imagenet",
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "auto",
    overwrite: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> Path:
    """Write the head-input features of every split of ``data`` to ``out`` (``medtl.io.features`` format).

    ``source`` is a run directory (its best weights and its preprocessing are used; ``init``,
    ``image_size`` and ``normalise`` are ignored) or a backbone name initialised with ``init``.
    """
    from medtl.data.transforms import build_transforms
    from medtl.engine.inference import load_run
    from medtl.engine.losses import infer_task
    from medtl.engine.run import resolve_device
    from medtl.io.features import FeatureWriter
    from medtl.models import build_model, load_init

    store = Store(data)
    infer_task(store.task, store.num_classes, "auto", store.path)  # refuses segmentation stores
    source_dir = Path(source) if Path(source).is_dir() else None
    out = guard_output(out, FEATURES, inputs=[store.path, source_dir], overwrite=overwrite)
    partitions, split_source = _split_partitions(store, split)
    dev = resolve_device(device)
    source_path = Path(source)
    if (source_path / "config.toml").is_file():
        loaded = load_run(source_path, "best")
        model, transform, backbone = loaded.model, loaded.transform(), loaded.config.backbone
        origin = {"run": str(source_path), "init": loaded.config.init}
    else:
        in_chans = int(store.shape[0])
        model = build_model(str(source), 1, in_chans=in_chans, image_size=image_size or int(store.shape[-1]))
        progress.message(
            load_init(model, init, allow_partial=allow_partial, weights_dir=weights_dir).summary()
        )
        transform = build_transforms(False, size=image_size, normalise=normalise, in_chans=in_chans)
        backbone, origin = str(source), {"init": init}
    model.to(dev)
    with FeatureWriter(
        out,
        backbone=backbone,
        task=store.task,
        class_names=store.class_names,
        store=store.path,
        store_checksum=store.checksum,
        extra={**origin, "split": split_source},
        overwrite=overwrite,
    ) as writer:
        for name, idx in partitions.items():
            feats = extract_features(
                model,
                store,
                idx,
                batch_size=batch_size,
                device=dev,
                transform=transform,
                num_workers=num_workers,
                progress=progress,
            )
            labels = np.asarray(store.labels[idx])
            if store.task == "classification":
                labels = labels.reshape(len(idx))
            writer.add_split(name, feats, labels, idx, store.patient_ids[idx])
        return writer.finish()
