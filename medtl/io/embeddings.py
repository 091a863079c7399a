"""Cached image and text embeddings of frozen encoders: what Adaptor pretraining reads.

Layout::

    <dir>/embeddings.json        format, store, store_checksum, vision {...}, text {...},
                                 reports {...}, splits {name: N}, medtl_version
    <dir>/image_<split>.npy      float32 (N, Dv) image embeddings
    <dir>/text_<split>.npy       float32 (N, Dt) text embeddings of the paired reports
    <dir>/index_<split>.csv      index (store row), patient_id

``embeddings.json`` records the sha256 of every other file (``checksums``): ``embeddings_identity``
is what a run id holds of the directory, the same for every copy of it. The embeddings are tied to
the store's content by its checksum: a pretraining run given another store (or a store prepared
again differently) refuses them. Written into a hidden partial directory and renamed into place
when complete.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medtl import __version__
from medtl.errors import InputError, OutputExistsError, StoreError
from medtl.io.store import file_checksum

FORMAT = "medtl-embeddings"
FORMAT_VERSION = 1
META_FILE = "embeddings.json"
EXTRACT_HINT = "run `medtl extract BACKBONE --data STORE --reports FILE --text-encoder DIR --out DIR` first"


@dataclass
class EmbeddingSplit:
    image: np.ndarray
    text: np.ndarray
    indices: np.ndarray
    patient_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.image.shape[0])


@dataclass
class EmbeddingSet:
    path: Path
    meta: dict[str, Any]
    splits: dict[str, EmbeddingSplit] = field(default_factory=dict)

    @property
    def vision_dim(self) -> int:
        return int(self.meta["vision"]["dim"])

    @property
    def text_dim(self) -> int:
        return int(self.meta["text"]["dim"])


def _files(directory: Path, split: str) -> tuple[Path, Path, Path]:
    return directory / f"image_{split}.npy", directory / f"text_{split}.npy", directory / f"index_{split}.csv"


def save_embeddings(
    out: str | Path,
    splits: Mapping[str, EmbeddingSplit],
    *,
    store: str | Path,
    store_checksum: str,
    vision: Mapping[str, Any],
    text: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
    files: Mapping[str, str] | None = None,
    writers: Mapping[str, Callable[[Path], Any]] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an embeddings directory atomically (a partial directory renamed into place); ``files``
    are further text files written with it (the split of the embedded samples), ``writers`` write
    further files to the path they are given (the vision encoder's weights)."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(out)
    splits = {name: part for name, part in splits.items() if len(part)}  # empty partitions: no files
    if not splits:
        raise ValueError("no embeddings to write")
    dims = {(s.image.shape[1], s.text.shape[1]) for s in splits.values() if len(s)}
    if len(dims) != 1:
        raise ValueError(f"splits differ in embedding sizes: {sorted(dims)}")
    (dv, dt) = dims.pop()
    tmp = out.parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name, part in splits.items():
            n = len(part)
            if part.text.shape[0] != n or len(part.indices) != n or len(part.patient_ids) != n:
                raise ValueError(f"split '{name}': image, text, indices and patient ids differ in length")
            image_path, text_path, index_path = _files(tmp, name)
            np.save(image_path, np.asarray(part.image, np.float32).reshape(n, dv))
            np.save(text_path, np.asarray(part.text, np.float32).reshape(n, dt))
            with open(index_path, "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(("index", "patient_id"))
                writer.writerows(zip(np.asarray(part.indices).tolist(), (str(p) for p in part.patient_ids)))
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "store": str(store),
            "store_checksum": store_checksum,
            "vision": {**dict(vision), "dim": int(dv)},
            "text": {**dict(text), "dim": int(dt)},
            "splits": {name: len(part) for name, part in splits.items()},
            "medtl_version": __version__,
            **dict(extra or {}),
        }
        for name, text in (files or {}).items():
            (tmp / name).write_text(text)
        for name, write in (writers or {}).items():
            write(tmp / name)
        meta["checksums"] = {p.name: file_checksum(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def read_embeddings_meta(directory: str | Path) -> dict[str, Any]:
    """embeddings.json of an embeddings directory, checked."""
    directory = Path(directory)
    path = directory / META_FILE
    if not directory.is_dir():
        raise InputError(directory, "embeddings directory not found", hint=EXTRACT_HINT)
    if not path.is_file():
        raise InputError(path, "missing: not an embeddings directory", hint=EXTRACT_HINT)
    try:
        meta = json.loads(path.read_text())
    except ValueError as exc:
        raise InputError(path, f"invalid JSON ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(path, "not a medtl embeddings file")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise InputError(
            path, f"embeddings format {meta['format_version']} is newer than this medtl; upgrade"
        )
    missing = [k for k in ("store_checksum", "vision", "text", "splits") if k not in meta]
    if missing:
        raise InputError(path, f"lacks {', '.join(missing)}")
    return meta


def embeddings_identity(directory: str | Path) -> str:
    """What an embeddings directory holds, wherever it lies: the sha256 of the checksums
    ``embeddings.json`` records (of the files themselves for a directory written without them)."""
    directory = Path(directory)
    meta = read_embeddings_meta(directory)
    checksums = meta.get("checksums")
    if not isinstance(checksums, dict):
        files = sorted(p for p in directory.iterdir() if p.is_file() and p.name != META_FILE)
        checksums = {p.name: file_checksum(p) for p in files}
    canonical = json.dumps(checksums, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_store(meta: Mapping[str, Any], store_checksum: str, directory: Path) -> None:
    """Refuse embeddings computed from a store with other content."""
    if meta["store_checksum"] != store_checksum:
        raise StoreError(
            directory / META_FILE,
            f"embeddings were computed from another store ({meta.get('store')}, images "
            f"{str(meta['store_checksum'])[:19]}...), not this one ({store_checksum[:19]}...)",
            hint=EXTRACT_HINT,
        )


def _load_split(directory: Path, split: str, meta: Mapping[str, Any]) -> EmbeddingSplit:
    image_path, text_path, index_path = _files(directory, split)
    for path in (image_path, text_path, index_path):
        if not path.is_file():
            raise InputError(path, f"missing ({META_FILE} lists split '{split}')", hint=EXTRACT_HINT)
    arrays = []
    for path, dim in ((image_path, meta["vision"]["dim"]), (text_path, meta["text"]["dim"])):
        try:
            arr = np.load(path)
        except (ValueError, OSError) as exc:
            raise InputError(path, f"cannot be read ({exc})") from None
        if arr.ndim != 2 or arr.shape != (meta["splits"][split], dim):
            raise InputError(
                path, f"shape {arr.shape} is not ({meta['splits'][split]}, {dim}) of {META_FILE}"
            )
        if not np.isfinite(arr).all():
            raise InputError(path, "holds NaN or infinite values")
        arrays.append(arr.astype(np.float32, copy=False))
    with open(index_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if len(rows) != arrays[0].shape[0]:
        raise InputError(index_path, f"has {len(rows)} rows but {image_path.name} has {arrays[0].shape[0]}")
    try:
        indices = np.array([int(r["index"]) for r in rows], dtype=np.int64)
        patient_ids = np.array([r["patient_id"] for r in rows], dtype=object)
    except (KeyError, TypeError, ValueError):
        raise InputError(index_path, "needs integer 'index' and 'patient_id' columns") from None
    return EmbeddingSplit(arrays[0], arrays[1], indices, patient_ids)


def load_embeddings(
    directory: str | Path, *, store_checksum: str | None = None, splits: Sequence[str] | None = None
) -> EmbeddingSet:
    """Load and check an embeddings directory; with ``store_checksum``, refuse another store's."""
    directory = Path(directory)
    meta = read_embeddings_meta(directory)
    if store_checksum is not None:
        check_store(meta, store_checksum, directory)
    names = list(meta["splits"]) if splits is None else list(splits)
    for name in names:
        if name not in meta["splits"]:
            raise InputError(
                directory / META_FILE,
                f"has no split '{name}' (splits: {', '.join(meta['splits']) or 'none'})",
            )
    return EmbeddingSet(directory, meta, {name: _load_split(directory, name, meta) for name in names})
