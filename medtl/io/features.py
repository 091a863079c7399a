"""Cached features: the directory ``medtl extract`` writes and ``medtl probe`` (and head-only
training) reads.

Layout::

    <dir>/features.json           format, backbone, source, task, class_names, store, store_checksum,
                                  dim, splits {name: N}, medtl_version
    <dir>/features_<split>.npy    float32 (N, D) pooled features
    <dir>/labels_<split>.npy      int64 (N,) classification, float32 (N, K) multilabel
    <dir>/index_<split>.csv       index (store row), patient_id

``task`` is the store's task ("classification" or "multilabel"). The directory is written into a
hidden ``.<name>.partial`` directory and renamed into place when complete, like the store, so a
features directory with a ``features.json`` is always whole.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medtl import __version__
from medtl.errors import InputError
from medtl.io.paths import FEATURES, check_replaceable, replace_dir

FORMAT = "medtl-features"
FORMAT_VERSION = 1
META_FILE = "features.json"
TASKS = ("classification", "multilabel")
EXTRACT_HINT = "run `medtl extract RUN_OR_BACKBONE --data STORE --out DIR` first"


def features_file(directory: Path, split: str) -> Path:
    return Path(directory) / f"features_{split}.npy"


def labels_file(directory: Path, split: str) -> Path:
    return Path(directory) / f"labels_{split}.npy"


def index_file(directory: Path, split: str) -> Path:
    return Path(directory) / f"index_{split}.csv"


@dataclass
class FeatureSplit:
    """One split's features (N, D), labels, store row indices (N,) and patient ids (N,)."""

    features: np.ndarray
    labels: np.ndarray
    indices: np.ndarray
    patient_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.features.shape[0])


@dataclass
class FeatureSet:
    """A loaded features directory."""

    path: Path
    meta: dict[str, Any]
    splits: dict[str, FeatureSplit] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    @property
    def backbone(self) -> str:
        return str(self.meta["backbone"])


class FeatureWriter:
    """Writes a features directory split by split; use as a context manager and call ``finish()``.

    An interrupted write leaves only the hidden partial directory, which the next writer replaces.
    """

    def __init__(
        self,
        out: str | Path,
        *,
        backbone: str,
        task: str,
        class_names: Sequence[str],
        store: str | Path | None = None,
        store_checksum: str | None = None,
        extra: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"features task must be one of {TASKS}, got '{task}'")
        self.out = Path(out)
        check_replaceable(self.out, FEATURES, overwrite=overwrite)
        self.tmp = self.out.parent / f".{self.out.name}.partial"
        self.meta: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "backbone": backbone,
            "task": task,
            "class_names": list(class_names),
            "store": None if store is None else str(store),
            "store_checksum": store_checksum,
            "dim": None,
            "splits": {},
            "medtl_version": __version__,
            **dict(extra or {}),
        }
        self._finished = False
        self._empty: list[str] = []

    def __enter__(self) -> FeatureWriter:
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._finished:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def add_split(
        self,
        split: str,
        features: np.ndarray,
        labels: np.ndarray,
        indices: Sequence[int] | np.ndarray,
        patient_ids: Sequence[str] | np.ndarray,
    ) -> None:
        features = np.asarray(features, dtype=np.float32)
        n = features.shape[0]
        if features.ndim != 2:
            raise ValueError(f"features must be (N, D), got {features.shape}")
        if n == 0:
            # An empty partition (e.g. no validation part) may come as (0, 0); it gets the
            # features' width when the directory is finished.
            self._empty.append(split)
        elif self.meta["dim"] not in (None, features.shape[1]):
            raise ValueError(
                f"split '{split}' has dim {features.shape[1]}, earlier splits {self.meta['dim']}"
            )
        label_dtype = np.int64 if self.meta["task"] == "classification" else np.float32
        labels = np.asarray(labels, dtype=label_dtype)
        indices = np.asarray(indices, dtype=np.int64)
        if labels.shape[0] != n or indices.shape[0] != n or len(patient_ids) != n:
            raise ValueError(f"split '{split}': features, labels, indices and patient ids differ in length")
        np.save(features_file(self.tmp, split), features)
        np.save(labels_file(self.tmp, split), labels)
        with open(index_file(self.tmp, split), "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(("index", "patient_id"))
            writer.writerows(zip(indices.tolist(), (str(p) for p in patient_ids)))
        if n:
            self.meta["dim"] = int(features.shape[1])
        self.meta["splits"][split] = int(n)

    def finish(self) -> Path:
        if self.meta["dim"] is None:
            raise ValueError("no features were added (every split is empty)")
        for split in self._empty:
            np.save(features_file(self.tmp, split), np.zeros((0, self.meta["dim"]), dtype=np.float32))
        (self.tmp / META_FILE).write_text(json.dumps(self.meta, indent=2))
        replace_dir(self.tmp, self.out)
        self._finished = True
        return self.out


def save_features(
    out: str | Path,
    splits: Mapping[str, FeatureSplit],
    *,
    backbone: str,
    task: str,
    class_names: Sequence[str],
    store: str | Path | None = None,
    store_checksum: str | None = None,
    extra: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a whole features directory at once (see ``FeatureWriter`` to write split by split)."""
    with FeatureWriter(
        out,
        backbone=backbone,
        task=task,
        class_names=class_names,
        store=store,
        store_checksum=store_checksum,
        extra=extra,
        overwrite=overwrite,
    ) as writer:
        for name, part in splits.items():
            writer.add_split(name, part.features, part.labels, part.indices, part.patient_ids)
        return writer.finish()


def read_features_meta(directory: str | Path) -> dict[str, Any]:
    """features.json of a features directory, checked."""
    directory = Path(directory)
    meta_path = directory / META_FILE
    if not directory.is_dir():
        raise InputError(directory, "features directory not found", hint=EXTRACT_HINT)
    if not meta_path.is_file():
        raise InputError(meta_path, "missing: not a features directory", hint=EXTRACT_HINT)
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as exc:
        raise InputError(meta_path, f"invalid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(meta_path, "not a medtl features file")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise InputError(
            meta_path, f"features format {meta['format_version']} is newer than this medtl; upgrade"
        )
    missing = [k for k in ("backbone", "task", "class_names", "dim", "splits") if k not in meta]
    if missing:
        raise InputError(meta_path, f"lacks {', '.join(missing)}")
    if meta["task"] not in TASKS:
        raise InputError(meta_path, f"task '{meta['task']}' is not one of {', '.join(TASKS)}")
    return meta


def _load_split(directory: Path, split: str, meta: dict[str, Any]) -> FeatureSplit:
    paths = features_file(directory, split), labels_file(directory, split), index_file(directory, split)
    for path in paths:
        if not path.is_file():
            raise InputError(path, f"missing (features.json lists split '{split}')", hint=EXTRACT_HINT)
    arrays = []
    for path in paths[:2]:
        try:
            arrays.append(np.load(path))
        except (ValueError, OSError) as exc:
            raise InputError(path, f"cannot be read ({exc})") from None
    features, labels = arrays
    n = features.shape[0]
    if features.ndim != 2 or features.shape[1] != meta["dim"]:
        raise InputError(
            paths[0], f"shape {features.shape} does not match (N, {meta['dim']}) of features.json"
        )
    if not np.isfinite(features).all():
        raise InputError(paths[0], "holds NaN or infinite values")
    if labels.shape[0] != n:
        raise InputError(paths[1], f"has {labels.shape[0]} rows but {paths[0].name} has {n}")
    k = len(meta["class_names"])
    if meta["task"] == "classification":
        if labels.ndim != 1 or (n and (labels.min() < 0 or labels.max() >= k)):
            raise InputError(paths[1], f"classification labels must be (N,) class indices 0..{k - 1}")
        labels = labels.astype(np.int64)
    elif labels.shape != (n, k):
        raise InputError(paths[1], f"multilabel labels must be (N, {k}), got {labels.shape}")
    with open(paths[2], newline="") as fh:
        rows = list(csv.DictReader(fh))
    if len(rows) != n:
        raise InputError(paths[2], f"has {len(rows)} rows but {paths[0].name} has {n}")
    try:
        indices = np.array([int(r["index"]) for r in rows], dtype=np.int64)
        patient_ids = np.array([r["patient_id"] for r in rows], dtype=object)
    except (KeyError, TypeError, ValueError):
        raise InputError(paths[2], "needs integer 'index' and 'patient_id' columns") from None
    return FeatureSplit(features.astype(np.float32, copy=False), labels, indices, patient_ids)


def load_features(directory: str | Path, splits: Sequence[str] | None = None) -> FeatureSet:
    """Load and check a features directory (all its splits, or those named)."""
    directory = Path(directory)
    meta = read_features_meta(directory)
    names = list(meta["splits"]) if splits is None else list(splits)
    for name in names:
        if name not in meta["splits"]:
            listed = ", ".join(meta["splits"]) or "none"
            raise InputError(
                directory / META_FILE, f"has no split '{name}' (splits: {listed})", hint=EXTRACT_HINT
            )
    return FeatureSet(directory, meta, {name: _load_split(directory, name, meta) for name in names})
