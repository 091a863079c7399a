"""A torch Dataset over the memory-mapped store, and a loader that fetches whole batches.

Items are read from the memory map (the store is never loaded into memory) and converted to
float32 tensors. A standard DataLoader gets each batch through ``__getitems__`` (one read per
batch); ``make_loader`` also skips per-item collation. The dataset pickles as the store path only:
DataLoader workers reopen the memory map in their own process instead of receiving the arrays.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler
from torchvision import tv_tensors

from medtl.data.allocator import keep_large_buffers_in_heap
from medtl.errors import ConfigError, StoreError
from medtl.io.store import Store

Target = Literal["label", "mask"]


def label_targets(store: Store, rows: np.ndarray) -> np.ndarray:
    """The labels of store ``rows`` as targets: int64 (N,) class indices for a classification store,
    float32 (N, K) indicators for a multilabel one (-1: unknown)."""
    labels = np.asarray(store.labels[rows])
    if store.task == "classification":
        return labels.reshape(len(rows)).astype(np.int64)
    return labels.astype(np.float32)


class StoreDataset(Dataset):
    """Items ``(image, target)`` of a store, optionally restricted to ``indices``.

    image: float32 (C, H, W) (uint8 stores are scaled to [0, 1]). target: ``"label"`` gives an
    int64 scalar (classification) or a float32 (K,) vector (multi-label); ``"mask"`` gives the
    int64 mask (M, H, W). The default target is the mask for segmentation stores, else the label.
    ``transform`` is called as ``transform(image)``, or ``transform(image, mask)`` with
    ``tv_tensors.Image`` / ``tv_tensors.Mask`` so geometric augmentation moves both alike; a
    transform marked ``batchable`` (``build_transforms`` without random steps) is called on whole
    batches (B, C, H, W).
    """

    def __init__(
        self,
        store: Store | str | Path,
        indices: np.ndarray | None = None,
        transform: Callable[..., Any] | None = None,
        target: Target | None = None,
    ) -> None:
        self._store: Store | None = store if isinstance(store, Store) else Store(store)
        self.path = self._store.path
        self.task = self._store.task
        self.target = target or ("mask" if self.task == "segmentation" else "label")
        if self.target not in ("label", "mask"):
            raise ConfigError(f"target must be 'label' or 'mask', got '{self.target}'")
        if self.target == "label" and self._store.labels is None:
            raise StoreError(
                self.path,
                f"a {self.task} store has no class labels (labels.npy); it cannot train a classifier",
            )
        if self.target == "mask" and self._store.masks is None:
            raise StoreError(self.path, f"a {self.task} store has no masks (masks.npy)")
        n = len(self._store)
        self.indices = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= n):
            raise StoreError(self.path, f"sample indices outside the store's {n} samples")
        self.transform = transform
        self._scale = 1 / 255 if self._store.images.dtype == np.uint8 else None
        self._pid = os.getpid()

    # Workers (fork or spawn) reopen the memory maps rather than inherit or pickle them.
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_store"] = None
        return state

    @property
    def store(self) -> Store:
        if self._store is None or self._pid != os.getpid():
            self._store, self._pid = Store(self.path), os.getpid()
        return self._store

    def __len__(self) -> int:
        return len(self.indices)

    def images(self, rows: np.ndarray) -> torch.Tensor:
        """Float32 images (B, C, H, W) of store ``rows``, without transforms."""
        return self._to_float(self._stored(rows))

    def _stored(self, rows: np.ndarray) -> torch.Tensor:
        # One fancy-index read per batch, in the store's dtype.
        return torch.from_numpy(np.ascontiguousarray(self.store.images[rows]))

    def _to_float(self, block: torch.Tensor) -> torch.Tensor:
        # torch converts float16 far faster than numpy.
        block = block.float()
        return block.mul_(self._scale) if self._scale else block

    @property
    def batchable(self) -> bool:
        """True when the transform is deterministic and runs on whole batches (or there is none)."""
        return self.transform is None or getattr(self.transform, "batchable", False)

    def stored_batch(self, items: Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Images in the store's dtype (float16 / uint8) and targets: what a loader worker sends when
        ``finish_batch`` runs in the receiving process (a third to an eighth of the bytes)."""
        rows = self.indices[np.asarray(items, dtype=np.int64)]
        return self._stored(rows), self.targets(rows)

    def finish_batch(self, stored: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Float conversion and the (batchable) transform of a ``stored_batch``."""
        images = self._to_float(stored)
        return (images, targets) if self.transform is None else self._apply(images, targets)

    def targets(self, rows: np.ndarray) -> torch.Tensor:
        """Labels (B,) int64 or (B, K) float32, or masks (B, M, H, W) int64, of store ``rows``."""
        store = self.store
        if self.target == "mask":
            return torch.from_numpy(np.asarray(store.masks[rows]).astype(np.int64))
        return torch.from_numpy(label_targets(store, rows))

    def _apply(self, image: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.target == "mask":
            image, target = self.transform(tv_tensors.Image(image), tv_tensors.Mask(target))
            return image.as_subclass(torch.Tensor), target.as_subclass(torch.Tensor)
        return self.transform(tv_tensors.Image(image)).as_subclass(torch.Tensor), target

    def batch(self, items: Sequence[int] | np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Items ``items`` as one batch ``(images (B, C, H, W), targets (B, ...))``.

        Rows are read in one go; a deterministic transform (``batchable``: evaluation resize and
        normalisation) runs once on the whole batch, a random one per sample.
        """
        rows = self.indices[np.asarray(items, dtype=np.int64)]
        images, targets = self.images(rows), self.targets(rows)
        if self.transform is None:
            return images, targets
        if self.batchable:
            return self._apply(images, targets)
        pairs = [self._apply(image, target) for image, target in zip(images, targets)]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    def __getitems__(self, items: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """What a standard DataLoader fetches per batch (then collates): read and transform as a batch."""
        if self.transform is not None and not getattr(self.transform, "batchable", False):
            rows = self.indices[np.asarray(items, dtype=np.int64)]
            return [self._apply(i, t) for i, t in zip(self.images(rows), self.targets(rows))]
        images, targets = self.batch(items)
        return list(zip(images.unbind(0), targets.unbind(0)))

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = self.batch([item])
        return images[0], targets[0]


def make_loader(
    dataset: StoreDataset,
    *,
    batch_size: int,
    shuffle: bool = False,
    drop_last: bool = False,
    num_workers: int = 0,
    generator: torch.Generator | None = None,
    sampler: Sampler | None = None,
    pin_memory: bool = False,
    persistent_workers: bool = False,
    worker_init_fn: Callable[[int], None] | None = None,
    dicts: bool = False,
) -> DataLoader | _FinishedBatches:
    """A DataLoader that fetches whole batches with ``StoreDataset.batch``: no per-item collation,
    one memory-map read and (for evaluation transforms) one transform call per batch.

    ``sampler`` (sample order) takes the place of ``shuffle``/``generator`` when given. With
    ``dicts`` each batch is a dict ``{"image", "target", "index"}`` (store rows), as the engine's
    objectives read them; otherwise an ``(images, targets)`` pair."""
    keep_large_buffers_in_heap()
    # With a deterministic batch transform the workers only read rows; sending them in the store's
    # dtype and converting here moves 3-8x fewer bytes between processes than float32 batches.
    deferred = num_workers > 0 and dataset.batchable
    if sampler is not None:
        base = sampler
    else:
        base = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    loader = DataLoader(
        _Batches(dataset, stored=deferred, dicts=dicts),
        batch_size=None,
        sampler=BatchSampler(base, batch_size, drop_last),
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=persistent_workers and num_workers > 0,
        worker_init_fn=worker_init_fn if num_workers > 0 else None,
    )
    return _FinishedBatches(loader, dataset, dicts=dicts) if deferred else loader


class _Batches(Dataset):
    """Indexing by a list of items gives a batch (what a BatchSampler with batch_size=None asks for)."""

    def __init__(self, dataset: StoreDataset, stored: bool = False, dicts: bool = False) -> None:
        self.dataset, self.stored, self.dicts = dataset, stored, dicts

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, items: list[int]) -> Any:
        pair = self.dataset.stored_batch(items) if self.stored else self.dataset.batch(items)
        if not self.dicts:
            return pair
        rows = torch.from_numpy(self.dataset.indices[np.asarray(items, dtype=np.int64)])
        return {"image": pair[0], "target": pair[1], "index": rows}


class _FinishedBatches:
    """Iterates a DataLoader of ``stored_batch`` results and finishes each batch in this process."""

    def __init__(self, loader: DataLoader, dataset: StoreDataset, dicts: bool = False) -> None:
        self.loader, self.dataset, self.dicts = loader, dataset, dicts

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        if not self.dicts:
            for stored, targets in self.loader:
                yield self.dataset.finish_batch(stored, targets)
            return
        for batch in self.loader:
            image, target = self.dataset.finish_batch(batch["image"], batch["target"])
            yield {**batch, "image": image, "target": target}

    def __getattr__(self, name: str) -> Any:  # sampler, batch_sampler, num_workers, ...
        return getattr(self.loader, name)
