"""Unlabelled images for self-supervised pretraining: one store or several mixed with weights.

Labels and masks are ignored, so any store serves (classification, multi-label, segmentation).
Stores of different image sizes are brought to one ``load_size`` (shorter side resized, then centre
cropped), and to one channel count (single-channel images repeated to three when any store has
three), so a batch is one tensor that the device augmentation crops to the view size.

Weights decide how often each store is drawn: ``mixture_order`` gives an epoch's sample order in
which store ``s`` makes up ``w_s / sum(w)`` of the draws (rows of a store drawn without replacement
while it lasts, then again from a fresh permutation), deterministic in the seed. The trainer calls
``set_epoch(seed)`` with each epoch's seed before its batches are drawn, so every epoch draws the
mixture anew (other images of the larger stores) and a resumed run draws the same images.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from medtl.errors import ConfigError, StoreError
from medtl.io.store import Store


@dataclass(frozen=True)
class Source:
    """One store of a mixture: which rows (None: all) and its weight."""

    path: Path
    indices: np.ndarray | None = None
    weight: float = 1.0


def parse_sources(specs: Sequence[str]) -> list[Source]:
    """``STORE`` or ``STORE:WEIGHT`` strings (the CLI's repeated ``--data``) into sources."""
    out = []
    for spec in specs:
        path, sep, weight = str(spec).rpartition(":")
        if not sep or not _is_number(weight):
            path, weight = str(spec), "1"
        w = float(weight)
        if not w > 0:
            raise ConfigError(f"{path}: mixture weight must be positive, got {weight}")
        out.append(Source(Path(path), None, w))
    return out


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def mixture_order(sizes: Sequence[int], weights: Sequence[float], length: int, seed: int) -> np.ndarray:
    """(length, 2) array of (source, row) draws: sources in proportion to ``weights``, each source's
    rows in a seeded permutation, restarted when used up. The same seed gives the same order."""
    rng = np.random.default_rng(seed)
    p = np.asarray(weights, dtype=np.float64)
    p = p / p.sum()
    # Largest-remainder counts: exact proportions, no sampling noise in the mixture itself.
    raw = p * length
    counts = np.floor(raw).astype(np.int64)
    counts[np.argsort(raw - counts)[::-1][: length - counts.sum()]] += 1
    which = rng.permutation(np.repeat(np.arange(len(sizes)), counts))
    rows = np.empty(length, dtype=np.int64)
    for s, size in enumerate(sizes):
        slots = np.flatnonzero(which == s)
        reps = -(-len(slots) // size) if size else 0
        perm = np.concatenate([rng.permutation(size) for _ in range(reps)]) if reps else np.empty(0)
        rows[slots] = perm[: len(slots)]
    return np.stack([which, rows], axis=1)


def fit_size(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side of (B, C, H, W) to ``size`` (antialiased), then centre crop square."""
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    images = F.interpolate(images, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    return images[..., top : top + size, left : left + size]


class UnlabelledImages(Dataset):
    """Images of one or several stores as one dataset; item ``i`` is ``order[i]`` = (source, row).

    ``batch(items)`` returns ``{"image": (B, C, S, S) float32, "index": (B,), "source": (B,)}``
    (``S`` = ``load_size``); with ``views`` (a per-sample two-view transform) ``"views"``
    (B, 2, C, V, V) made image by image from the stored images instead of ``image``; with
    ``with_labels`` the first store's labels as ``"target"`` (for a k-NN monitor; every source must
    then be that store). Pickles as paths only: workers reopen the memory maps.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        *,
        length: int | None = None,
        load_size: int | None = None,
        channels: int | None = None,
        views: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
        seed: int = 0,
        with_labels: bool = False,
    ) -> None:
        if not sources:
            raise ConfigError("pretraining needs at least one store")
        self.sources = list(sources)
        stores = [Store(s.path) for s in self.sources]
        self.rows = []
        for source, store in zip(self.sources, stores):
            rows = np.arange(len(store)) if source.indices is None else np.asarray(source.indices, np.int64)
            if rows.size and (rows.min() < 0 or rows.max() >= len(store)):
                raise StoreError(store.path, f"sample indices outside the store's {len(store)} samples")
            if rows.size == 0:
                raise StoreError(store.path, "no samples to pretrain on in this store (empty partition)")
            self.rows.append(rows)
        shapes = [store.shape for store in stores]
        self.channels = channels or max(int(s[0]) for s in shapes)
        for store, shape in zip(stores, shapes):
            if int(shape[0]) not in (1, self.channels):
                raise StoreError(
                    store.path, f"{shape[0]}-channel images cannot be mixed with {self.channels}"
                )
        self.load_size = load_size or max(max(int(s[1]), int(s[2])) for s in shapes)
        self.length = length or sum(len(r) for r in self.rows)
        self.views = views
        if with_labels and (len(self.sources) > 1 or stores[0].labels is None):
            raise ConfigError("labels come from one labelled store; a mixture of stores has none")
        self.with_labels = with_labels
        self._stores: list[Store] | None = stores
        self._pid = os.getpid()
        self.seed = seed
        self._draw(seed)

    def set_epoch(self, epoch_seed: int) -> None:
        """Draw the mixture of an epoch from the dataset's seed and the epoch's (the engine calls
        this before every training epoch; a single store without weights keeps its natural order)."""
        self._draw(int(np.random.SeedSequence([self.seed, epoch_seed]).generate_state(1)[0]))

    def _draw(self, seed: int) -> None:
        sizes = [len(r) for r in self.rows]
        if len(self.sources) == 1 and self.length == sizes[0]:
            self.order = np.stack([np.zeros(sizes[0], np.int64), np.arange(sizes[0])], axis=1)
            return
        self.order = mixture_order(sizes, [s.weight for s in self.sources], self.length, seed)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_stores"] = None
        return state

    @property
    def stores(self) -> list[Store]:
        if self._stores is None or self._pid != os.getpid():
            self._stores, self._pid = [Store(s.path) for s in self.sources], os.getpid()
        return self._stores

    def __len__(self) -> int:
        return self.length

    def _read(self, source: int, rows: np.ndarray) -> torch.Tensor:
        array = self.stores[source].images
        block = torch.from_numpy(np.ascontiguousarray(array[np.sort(rows)])).float()
        block = block[torch.from_numpy(np.argsort(np.argsort(rows)))]  # back to the asked order
        if array.dtype == np.uint8:
            block = block.mul_(1 / 255)
        if block.shape[1] != self.channels:
            block = block.expand(-1, self.channels, -1, -1)
        return block

    def batch(self, items: Sequence[int] | np.ndarray) -> dict[str, Any]:
        picks = self.order[np.asarray(items, dtype=np.int64)]
        which, local = picks[:, 0], picks[:, 1]
        raw: list[torch.Tensor | None] = [None] * len(picks)
        for s in np.unique(which):
            pos = np.flatnonzero(which == s)
            block = self._read(int(s), self.rows[s][local[pos]])
            if self.views is None:
                block = fit_size(block, self.load_size)  # one resize per store, not per image
            for p, image in zip(pos, block):
                raw[p] = image
        out: dict[str, Any] = {
            "index": torch.as_tensor(np.asarray([self.rows[s][r] for s, r in picks], dtype=np.int64)),
            "source": torch.as_tensor(which),
        }
        if self.with_labels:
            labels = np.asarray(self.stores[0].labels[np.asarray(out["index"])])
            if self.stores[0].task == "classification":
                out["target"] = torch.from_numpy(labels.reshape(len(picks)).astype(np.int64))
            else:
                out["target"] = torch.from_numpy(labels.astype(np.float32))
        if self.views is not None:
            out["views"] = torch.stack([torch.stack(self.views(image)) for image in raw])
            return out
        out["image"] = torch.stack(raw)
        return out

    def __getitems__(self, items: list[int]) -> list[dict[str, Any]]:
        """What a standard DataLoader fetches per batch (then collates): one read per store."""
        batch = self.batch(items)
        return [{k: v[i] for k, v in batch.items()} for i in range(len(items))]

    def __getitem__(self, item: int) -> dict[str, Any]:
        return self.__getitems__([item])[0]


class _Batches(Dataset):
    """Indexing by a list of items gives a whole batch (a BatchSampler with batch_size=None asks so)."""

    def __init__(self, dataset: UnlabelledImages) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, items: list[int]) -> dict[str, Any]:
        return self.dataset.batch(items)


def make_unlabelled_loader(
    dataset: UnlabelledImages,
    *,
    batch_size: int,
    sampler: torch.utils.data.Sampler | None = None,
    shuffle: bool = True,
    drop_last: bool = True,
    num_workers: int = 0,
    generator: torch.Generator | None = None,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    """A DataLoader of whole batches (one memory-map read per store per batch). Contrastive training
    drops the last incomplete batch, so every step has the same number of negatives; a dataset that
    cannot fill one batch is refused."""
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

    if drop_last and len(dataset) < batch_size:
        paths = ", ".join(str(s.path) for s in dataset.sources)
        raise ConfigError(
            f"{paths}: {len(dataset)} images to pretrain on, fewer than the batch size {batch_size}; "
            "lower --batch-size"
        )
    if sampler is None:
        sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    return DataLoader(
        _Batches(dataset),
        batch_size=None,
        sampler=BatchSampler(sampler, batch_size, drop_last),
        num_workers=num_workers,
        pin_memory=pin_memory,
    )
