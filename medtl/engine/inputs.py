"""What a phase trains on: batch-dict loaders of the partitions, through the model or on cached inputs.

A head-only phase runs on inputs computed once (``cached``) when the objective names a cached head,
only that head trains, nothing before it changes between train and eval mode, and the training
images are not augmented. The cached batches are the ones the image loader would form from the
same sampler, so both ways train the same head.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from medtl.data.dataset import StoreDataset, make_loader
from medtl.engine.distributed import DistInfo, EpochSampler
from medtl.engine.features import cache_inputs
from medtl.engine.runtime import Precision
from medtl.io.store import Store
from medtl.objectives.base import INDEX, Batch, Objective
from medtl.strategies import ResolvedPhase

_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


@dataclass
class TrainData:
    """What the loop trains and validates on."""

    store: Store
    partitions: dict[str, np.ndarray]
    train_transform: Callable[..., Any]
    eval_transform: Callable[..., Any]
    device_augment: list[str]  # augmentations done on the device, per batch (CUDA)
    augmenting: bool  # any augmentation of training images at all


@dataclass
class LoaderSettings:
    batch_size: int
    num_workers: int
    pin_memory: bool


@dataclass
class PhaseInputs:
    """The loaders of a phase and the modules it runs."""

    train: Iterable[Batch]
    val: Iterable[Batch]
    sampler: EpochSampler
    module: nn.Module  # what trains: the model or its cached head, DDP-wrapped / compiled
    evaluated: nn.Module  # what validation runs (the same, unwrapped)
    cached: bool
    train_dataset: Dataset | None = None  # behind ``train``; told each epoch's seed (``start_epoch``)

    def start_epoch(self, seed: int) -> None:
        """Before an epoch's batches are drawn: the sampler's order, and the training dataset's own
        per-epoch draw when it has one (``set_epoch(seed)``, as a store mixture redraws its images;
        the loader's workers are started per epoch, so they see the new draw)."""
        self.sampler.set_seed(seed)
        set_epoch = getattr(self.train_dataset, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(seed)


class CachedInputs(Dataset):
    """Inputs computed once for a partition; indexing by a list of positions gives a batch dict."""

    def __init__(self, tensors: dict[str, torch.Tensor]) -> None:
        self.tensors = tensors

    def __len__(self) -> int:
        return len(self.tensors[INDEX])

    def __getitem__(self, items: list[int]) -> Batch:
        rows = torch.as_tensor(items, dtype=torch.int64)
        return {k: v[rows] for k, v in self.tensors.items()}


def seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's base seed; numpy and random follow it.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def batches(dataset: Dataset, sampler: Sampler, settings: LoaderSettings, *, train: bool) -> Iterable[Batch]:
    """Batch dicts of ``dataset`` in ``sampler``'s order."""
    batch = settings.batch_size
    # A last batch of one sample breaks BatchNorm in train mode; drop only that one.
    drop_last = train and len(sampler) % batch == 1 and len(sampler) > 1
    if isinstance(dataset, CachedInputs):
        # One indexing per batch instead of per sample and a collate.
        batched = BatchSampler(sampler, batch, drop_last)
        return DataLoader(dataset, sampler=batched, batch_size=None, pin_memory=settings.pin_memory)
    common = dict(
        batch_size=batch,
        sampler=sampler,
        num_workers=settings.num_workers,
        pin_memory=settings.pin_memory,
        drop_last=drop_last,
    )
    if isinstance(dataset, StoreDataset):
        # Whole batches from the store: one memory-map read per batch and no collation copy.
        return make_loader(dataset, **common, worker_init_fn=seed_worker, dicts=True)
    return DataLoader(dataset, **common, worker_init_fn=seed_worker if settings.num_workers else None)


def reference_inputs(
    objective: Objective,
    model: nn.Module,
    data: TrainData,
    *,
    epoch: int | None,
    settings: LoaderSettings,
    precision: Precision,
) -> dict[str, torch.Tensor] | None:
    """The cached ``head_input`` of the objective's reference items for an evaluation (None when it
    has none), computed with the model as it is now, in eval mode."""
    dataset = objective.reference(data.store, data.eval_transform, epoch=epoch)
    if dataset is None:
        return None
    loader = batches(dataset, torch.utils.data.SequentialSampler(dataset), settings, train=False)
    return cache_inputs(model, lambda b: objective.head_input(model, b), loader, precision=precision)


def features_are_fixed(model: nn.Module, head: nn.Module) -> bool:
    """True when everything outside ``head`` computes the same in train mode as in eval mode now."""
    inside = set(map(id, head.modules()))
    for module in model.modules():
        if id(module) in inside or not module.training:
            continue
        if isinstance(module, nn.modules.batchnorm._NormBase):
            return False
        if isinstance(module, _DROPOUT_TYPES) and module.p > 0:
            return False
        if type(module).__name__ == "DropPath" and getattr(module, "drop_prob", 0) > 0:
            return False
    return True


def cacheable_head(
    objective: Objective, model: nn.Module, resolved: ResolvedPhase, *, enabled: bool, augmenting: bool
) -> nn.Module | None:
    """The head a phase can train on cached inputs, or None when the phase runs through the model."""
    head = objective.cached_head(model) if enabled and not augmenting else None
    if head is None:
        return None
    params = dict(model.named_parameters())
    in_head = {id(p) for p in head.parameters()}
    if not all(id(params[name]) in in_head for name in resolved.trainable_names):
        return None
    return head if features_are_fixed(model, head) else None


def phase_inputs(
    objective: Objective,
    model: nn.Module,
    data: TrainData,
    *,
    head: nn.Module | None,
    settings: LoaderSettings,
    precision: Precision,
    dist: DistInfo,
    compile_model: bool = False,
) -> PhaseInputs:
    """Loaders and modules of a phase: through ``model``, or on ``head``'s cached inputs when given."""
    parts = {"train": data.partitions["train"], "val": data.partitions["val"]}
    transforms = {"train": data.train_transform, "val": data.eval_transform}
    datasets: dict[str, Dataset] = {
        name: objective.dataset(data.store, idx, transforms[name]) for name, idx in parts.items()
    }
    trained: nn.Module = model
    if head is not None:
        for name, dataset in datasets.items():
            loader = batches(dataset, torch.utils.data.SequentialSampler(dataset), settings, train=False)
            inputs = cache_inputs(
                model, lambda b: objective.head_input(model, b), loader, precision=precision
            )
            datasets[name] = CachedInputs(inputs)
        trained = head
    wrapped = trained
    if dist.enabled:
        ids = [precision.device.index] if precision.device.type == "cuda" else None
        wrapped = nn.parallel.DistributedDataParallel(trained, device_ids=ids)
    if compile_model and head is None:
        wrapped = torch.compile(wrapped)
    sampler = EpochSampler(len(parts["train"]), shuffle=True, info=dist)
    val_sampler = EpochSampler(len(parts["val"]), shuffle=False)
    return PhaseInputs(
        train=batches(datasets["train"], sampler, settings, train=True),
        val=batches(datasets["val"], val_sampler, settings, train=False),
        sampler=sampler,
        module=wrapped,
        evaluated=trained,
        cached=head is not None,
        train_dataset=datasets["train"],
    )
