"""What is in a store (``medtl data info``) and whether it and its split are sound (``medtl data check``).

``data info`` verifies the store quickly (sizes, headers, labels and samples.csv against the
manifest); ``data check`` verifies every byte of every file, counts non-finite pixels and looks for
patients in more than one partition and images stored more than once.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medtl.data.splits import (
    PARTITIONS,
    Split,
    default_split_path,
    load_split,
    mask_present,
    patient_leaks,
)
from medtl.io.store import Store
from medtl.progress import NULL_PROGRESS, Progress

_HASH_CHUNK_BYTES = 64 << 20
_NO_PARTITION = "-"


def class_counts(
    store: Store, indices: np.ndarray | None = None, *, present: np.ndarray | None = None
) -> dict[str, int]:
    """Samples per class (classification), positives per label (multi-label), or samples with and
    without foreground (segmentation; ``present`` from ``mask_present`` saves reading the masks)."""
    idx = np.arange(len(store)) if indices is None else np.asarray(indices, dtype=np.int64)
    if store.task == "segmentation":
        if store.masks is None:
            return {}
        present = (mask_present(store) if present is None else present)[idx]
        return {"with mask": int(present.sum()), "without mask": int((~present).sum())}
    labels = store.labels
    if labels is None:
        return {}
    labels = np.asarray(labels)[idx]
    if store.task == "classification":
        counts = np.bincount(labels.reshape(-1), minlength=store.num_classes)
    else:
        counts = (labels > 0.5).sum(axis=0)
    return {name: int(c) for name, c in zip(store.class_names, counts)}


def _resolve_split(store: Store, split_path: str | Path | None) -> tuple[Split | None, Path | None]:
    if split_path is None:
        split_path = default_split_path(store.path)
        if not split_path.is_file():
            return None, None
    split_path = Path(split_path)
    return load_split(split_path, store), split_path


def store_info(path: str | Path, split_path: str | Path | None = None) -> dict[str, Any]:
    """Summary of a store and, when a split file is given or sits beside it, of its partitions.

    The store is verified quickly first (``Store.verify(quick=True)``).
    """
    store = Store(path)
    store.verify(quick=True)
    manifest = store.manifest
    patients = store.patient_ids
    present = mask_present(store) if store.task == "segmentation" and store.masks is not None else None
    info: dict[str, Any] = {
        "path": str(store.path),
        "task": store.task,
        "num_samples": len(store),
        "num_patients": len(set(patients)),
        "shape": list(store.shape),
        "dtype": manifest.get("dtype"),
        "normalisation": manifest.get("normalisation"),
        "class_names": store.class_names,
        "mask_names": manifest.get("mask_names"),
        "source": manifest.get("source", {}),
        "skipped": manifest.get("skipped", 0),
        "counts": class_counts(store, present=present),
        "split": None,
    }
    split, split_file = _resolve_split(store, split_path)
    if split is not None:
        info["split"] = {
            "path": str(split_file),
            "method": split.meta.get("method"),
            "params": split.meta.get("params", {}),
            "seed": split.meta.get("seed"),
            "few_shot": split.meta.get("few_shot"),
            "partitions": {
                name: {
                    "samples": len(idx),
                    "patients": len(set(patients[idx])),
                    "counts": class_counts(store, idx, present=present),
                }
                for name, idx in split.partitions.items()
            },
        }
    return info


@dataclass
class CheckReport:
    """Findings of ``check_store``. ``leakage`` is true when a patient or an identical image is in
    more than one partition."""

    store: str
    split: str | None
    num_samples: int
    patient_leaks: list[dict[str, Any]] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    blank_images: int = 0
    nonfinite_images: list[int] = field(default_factory=list)  # indices of images with NaN/Inf pixels
    nonfinite_pixels: int = 0
    verified: list[str] = field(default_factory=list)  # files whose checksum matched the manifest
    uncovered: list[str] = field(default_factory=list)  # files no checksum covers (older stores)

    @property
    def cross_partition_duplicates(self) -> list[dict[str, Any]]:
        return [d for d in self.duplicates if d["cross_partition"]]

    @property
    def leakage(self) -> bool:
        return bool(self.patient_leaks or self.cross_partition_duplicates)

    @property
    def problems(self) -> bool:
        """Leakage or pixels that are not finite: ``data check`` exits with code 2."""
        return self.leakage or bool(self.nonfinite_images)

    def to_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "split": self.split,
            "num_samples": self.num_samples,
            "leakage": self.leakage,
            "patient_leaks": self.patient_leaks,
            "duplicates": self.duplicates,
            "blank_images": self.blank_images,
            "nonfinite_images": self.nonfinite_images,
            "nonfinite_pixels": self.nonfinite_pixels,
            "verified": self.verified,
            "uncovered": self.uncovered,
        }


@dataclass
class ImageScan:
    """What one pass over the images found (see ``scan_images``)."""

    digests: list[bytes]
    blank: np.ndarray  # one value everywhere
    nonfinite: np.ndarray  # pixels that are NaN or +-Inf, per image


def scan_images(store: Store, *, progress: Progress = NULL_PROGRESS) -> ImageScan:
    """A digest of each image's bytes, which images are blank, and their non-finite pixel counts.

    Reads the memory map in chunks so memory does not grow with the store.
    """
    images = store.images
    row_bytes = max(1, int(np.prod(images.shape[1:])) * images.dtype.itemsize)
    chunk = max(1, _HASH_CHUNK_BYTES // row_bytes)
    digests: list[bytes] = []
    blank = np.empty(len(images), dtype=bool)
    nonfinite = np.zeros(len(images), dtype=np.int64)
    floating = images.dtype.kind == "f"
    task = progress.start("hashing images", total=len(images))
    for start in range(0, len(images), chunk):
        block = np.ascontiguousarray(images[start : start + chunk])
        flat = block.reshape(len(block), -1)
        blank[start : start + len(block)] = (flat == flat[:, :1]).all(axis=1)
        if floating:
            nonfinite[start : start + len(block)] = (~np.isfinite(flat)).sum(axis=1)
        digests.extend(hashlib.blake2b(memoryview(row), digest_size=16).digest() for row in block)
        progress.advance(task, len(block))
    progress.end(task)
    return ImageScan(digests, blank, nonfinite)


def check_store(
    path: str | Path, split_path: str | Path | None = None, *, progress: Progress = NULL_PROGRESS
) -> CheckReport:
    """Verify every file of the store, then find non-finite pixels, patients in more than one
    partition and images stored more than once.

    A file that does not match the manifest is a StoreError naming it. Uses ``split_path`` or the
    default split file beside the store; without a split only duplicates are reported. Blank images
    (e.g. empty slices) are identical by nature and are counted, not reported as duplicates.
    """
    store = Store(path)
    store.verify(progress=progress)
    split, split_file = _resolve_split(store, split_path)
    part_of = np.full(len(store), _NO_PARTITION, dtype=object)
    if split is not None:
        for name in PARTITIONS:
            part_of[split.partitions[name]] = name
    patients = store.patient_ids
    report = CheckReport(str(store.path), None if split_file is None else str(split_file), len(store))
    report.verified, report.uncovered = list(store.checksums), store.uncovered

    if split is not None:
        report.patient_leaks = patient_leaks(patients, split.partitions)

    scan = scan_images(store, progress=progress)
    digests, blank = scan.digests, scan.blank
    report.blank_images = int(blank.sum())
    report.nonfinite_images = [int(i) for i in np.flatnonzero(scan.nonfinite)]
    report.nonfinite_pixels = int(scan.nonfinite.sum())
    same: dict[bytes, list[int]] = defaultdict(list)
    for i, digest in enumerate(digests):
        if not blank[i]:
            same[digest].append(i)
    for indices in same.values():
        if len(indices) > 1:
            parts = sorted({part_of[i] for i in indices} - {_NO_PARTITION})
            report.duplicates.append(
                {
                    "indices": indices,
                    "patients": sorted({patients[i] for i in indices}),
                    "partitions": parts,
                    "cross_partition": len(parts) > 1,
                }
            )
    report.duplicates.sort(key=lambda d: (not d["cross_partition"], d["indices"][0]))
    return report
