"""What a segmentation store's masks are, how they become training targets, and how logits become masks.

Three kinds of store reach a segmentation run:

* a **label map** (masks ``(N, 1, H, W)``, values 0..K-1 named by ``class_names``, background first):
  ``prepare seg``. Two classes train one sigmoid channel (``binary``, the 21-model benchmark's
  setting) unless ``multiclass`` is asked for; more train a softmax over K channels;
* **BraTS labels** (``prepare brats --labels mask``): a label map whose values are BraTS's 0/1/2/4.
  4 (ET) is mapped to 3 for training — not dropped — and the ET/TC/WT regions are measured too;
* **channel masks** (``(N, M, H, W)`` of 0/1, ``prepare brats --labels regions``): M independent
  sigmoid channels (``multilabel``), for structures that overlap (ET inside TC inside WT).

``MaskLayout`` holds the decision; ``mask_layout(store, ...)`` makes it and refuses stores that do not
fit (one line naming the store), ``check_mask_values`` refuses values outside the classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from medtl.errors import ConfigError, StoreError
from medtl.io.store import Store
from medtl.metrics.segmentation import BRATS_RAW_LABELS, BRATS_REGIONS, class_masks, region_masks

SegmentationMode = Literal["binary", "multiclass", "multilabel"]
MODES = ("auto", "binary", "multiclass", "multilabel")
BRATS_REGION_NAMES = tuple(BRATS_REGIONS)
_CHUNK_PIXELS = 1 << 26  # masks are scanned in chunks of ~64 MB


@dataclass(frozen=True)
class MaskLayout:
    """How one store's masks are trained and measured.

    ``values``: the raw mask values, in class order (``values[k]`` is class k); ``channels``: the names
    of the metric channels (foreground classes, or the store's own channels); ``regions``: True when
    BraTS ET/TC/WT are computed from the label map.
    """

    mode: SegmentationMode
    class_names: tuple[str, ...]
    values: tuple[int, ...]
    channels: tuple[str, ...]
    regions: bool = False
    mask_channels: int = 1
    lut: tuple[int, ...] = field(default=(), repr=False)

    @property
    def num_outputs(self) -> int:
        """Logit channels of the model."""
        return len(self.class_names) if self.mode == "multiclass" else len(self.channels)

    @property
    def loss_mode(self) -> str:
        """ "multiclass" (softmax) or "multilabel" (sigmoid) for ``make_segmentation_loss``."""
        return "multiclass" if self.mode == "multiclass" else "multilabel"

    def describe(self) -> dict[str, object]:
        """JSON-ready form (a checkpoint's metadata); ``from_description`` reads it back."""
        return {
            "mode": self.mode,
            "class_names": list(self.class_names),
            "values": list(self.values),
            "channels": list(self.channels),
            "brats_regions": self.regions,
        }

    @classmethod
    def from_description(cls, described: Mapping[str, Any]) -> MaskLayout:
        values = tuple(int(v) for v in described["values"])
        channels = tuple(described["channels"])
        return cls(
            mode=described["mode"],
            class_names=tuple(described["class_names"]),
            values=values,
            channels=channels,
            regions=bool(described["brats_regions"]),
            mask_channels=len(channels) if described["mode"] == "multilabel" else 1,
            lut=_lut(values),
        )

    # -- targets and predictions (torch, on whatever device the batch is) ---------------------------
    def targets(self, masks: torch.Tensor) -> torch.Tensor:
        """Store masks (B, M, H, W) -> loss targets: class indices (B, 1, H, W) int64 for multiclass,
        0/1 (B, C, H, W) float for binary and multilabel."""
        if self.mode == "multilabel":
            return masks.float()
        lut = torch.tensor(self.lut, dtype=torch.int64, device=masks.device)
        index = lut[masks.long().clamp(0, len(self.lut) - 1)]
        return index if self.mode == "multiclass" else (index == 1).float()

    def predicted(self, logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
        """Logits -> what ``targets`` gives: argmax classes (multiclass) or thresholded sigmoid."""
        if self.mode == "multiclass":
            return logits.argmax(dim=1, keepdim=True)
        return (logits.sigmoid() >= threshold).float()

    def channel_masks(self, target: torch.Tensor) -> np.ndarray:
        """Targets or predictions (``targets``' form) -> (B, C, H, W) bool metric channels."""
        arr = target.detach().cpu().numpy()
        if self.mode != "multiclass":
            return arr >= 0.5
        return class_masks(arr[:, 0], len(self.class_names))

    def region_masks(self, target: torch.Tensor) -> np.ndarray | None:
        """BraTS ET/TC/WT (B, 3, H, W) of a multiclass target, when the store holds BraTS labels."""
        if not self.regions:
            return None
        return region_masks(target.detach().cpu().numpy()[:, 0], BRATS_REGIONS)


def _brats_labels(store: Store) -> bool:
    source = store.manifest.get("source") or {}
    return source.get("converter") == "brats" and source.get("labels") == "mask"


def _lut(values: Sequence[int]) -> tuple[int, ...]:
    # Values outside the classes never reach it (check_mask_values); they map to background.
    table = [0] * (max(values) + 1)
    for index, value in enumerate(values):
        table[value] = index
    return tuple(table)


def mask_layout(
    store: Store, *, mode: str = "auto", num_classes: int | None = None, check_shape: bool = True
) -> MaskLayout:
    """The layout of ``store``'s masks, checked against the asked ``mode`` and ``num_classes``."""
    if store.task != "segmentation" or store.masks is None:
        held = f"{store.task} labels of {store.num_classes} classes ({', '.join(store.class_names[:4])}"
        held += ", ...)" if store.num_classes > 4 else ")"
        raise StoreError(store.path, f"holds {held}, no masks; a segmentation run needs a mask store")
    if mode not in MODES:
        raise ConfigError(f"unknown segmentation mode '{mode}'; choose one of {', '.join(MODES)}")
    masks = store.masks
    if check_shape and tuple(masks.shape[-2:]) != tuple(store.images.shape[-2:]):
        raise StoreError(
            store.path,
            f"images are {tuple(store.images.shape[-2:])} but masks {tuple(masks.shape[-2:])} pixels; "
            "each mask must have its image's size",
        )
    names = tuple(store.class_names)
    mask_channels = int(masks.shape[1])
    if mask_channels > 1:
        layout = _channel_layout(store, names, mask_channels, mode)
    else:
        layout = _label_map_layout(store, names, mode)
    if num_classes is not None and num_classes != len(layout.class_names):
        raise StoreError(
            store.path,
            f"has {len(layout.class_names)} classes ({', '.join(layout.class_names)}) but the config asks "
            f"for {num_classes}",
        )
    return layout


def _channel_layout(store: Store, names: tuple[str, ...], channels: int, mode: str) -> MaskLayout:
    if mode not in ("auto", "multilabel"):
        raise StoreError(
            store.path,
            f"holds {channels}-channel masks ({', '.join(names)}), which train as 'multilabel', not '{mode}'",
        )
    channel_names = tuple(store.manifest.get("mask_names") or names)
    if len(channel_names) != channels:
        raise StoreError(store.path, f"names {len(channel_names)} mask channels but masks.npy has {channels}")
    return MaskLayout("multilabel", channel_names, (0, 1), channel_names, mask_channels=channels, lut=(0, 1))


def _label_map_layout(store: Store, names: tuple[str, ...], mode: str) -> MaskLayout:
    brats = _brats_labels(store)
    values = BRATS_RAW_LABELS if brats else tuple(range(len(names)))
    if len(values) != len(names):
        raise StoreError(store.path, f"BraTS label masks need 4 class names, the manifest has {len(names)}")
    if len(names) < 2:
        raise StoreError(store.path, f"a label map needs at least 2 classes (background first), got {names}")
    if mode == "multilabel":
        raise StoreError(
            store.path,
            "holds a label map (one class per pixel); 'multilabel' needs channel masks such as "
            "`prepare brats --labels regions`",
        )
    if mode == "binary" and len(names) != 2:
        raise StoreError(store.path, f"has {len(names)} classes ({', '.join(names)}); 'binary' needs 2")
    chosen = "binary" if mode == "binary" or (mode == "auto" and len(names) == 2) else "multiclass"
    return MaskLayout(
        chosen, names, values, names[1:], regions=brats and chosen == "multiclass", lut=_lut(values)
    )


def _masks(store: Store) -> np.ndarray:
    masks = store.masks
    if masks is None:
        raise StoreError(store.path, "has no masks (masks.npy)")
    return masks


def check_mask_values(store: Store, layout: MaskLayout, rows: np.ndarray | None = None) -> None:
    """Refuse masks holding values outside ``layout.values`` (one pass over the memory map)."""
    masks = _masks(store)
    rows = np.arange(len(store)) if rows is None else np.sort(np.asarray(rows, dtype=np.int64))
    per_row = int(np.prod(masks.shape[1:]))
    step = max(1, _CHUNK_PIXELS // max(per_row, 1))
    counts = np.zeros(256, dtype=np.int64)
    for start in range(0, len(rows), step):
        block = np.asarray(masks[rows[start : start + step]])
        counts += np.bincount(block.reshape(-1).astype(np.uint8), minlength=256)[:256]
    outside = sorted(set(np.flatnonzero(counts).tolist()) - set(layout.values))
    if outside:
        allowed = ", ".join(f"{v} {n}" for v, n in zip(layout.values, layout.class_names))
        kind = "0/1 per channel" if layout.mode == "multilabel" else allowed
        raise StoreError(
            store.path,
            f"masks hold values {', '.join(map(str, outside))} outside its classes ({kind})",
        )


def class_frequencies(store: Store, layout: MaskLayout, rows: np.ndarray) -> np.ndarray:
    """Fraction of pixels of each output channel among ``rows`` (for balanced class weights)."""
    masks = _masks(store)
    rows = np.sort(np.asarray(rows, dtype=np.int64))
    per_row = int(np.prod(masks.shape[1:]))
    step = max(1, _CHUNK_PIXELS // max(per_row, 1))
    if layout.mode == "multilabel":
        total = np.zeros(layout.mask_channels, dtype=np.float64)
        for start in range(0, len(rows), step):
            total += np.asarray(masks[rows[start : start + step]]).sum(axis=(0, 2, 3))
        return total / max(len(rows) * per_row / layout.mask_channels, 1)
    counts = np.zeros(256, dtype=np.int64)
    for start in range(0, len(rows), step):
        counts += np.bincount(np.asarray(masks[rows[start : start + step]]).reshape(-1), minlength=256)[:256]
    by_class = np.array([counts[v] for v in layout.values], dtype=np.float64) / max(counts.sum(), 1)
    return by_class if layout.mode == "multiclass" else by_class[1:]
