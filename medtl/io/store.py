"""The prepared-dataset store: one directory that every later stage reads.

Layout (DESIGN.md): ``manifest.json``, ``images.npy`` (N, C, H, W), ``labels.npy`` and/or
``masks.npy``, ``samples.csv`` (index, patient_id, source_file, slice, label) and
``prepare_report.json`` (skipped inputs).

Writing streams rows into ``.npy`` files whose header is rewritten with the final row count,
so peak memory does not grow with the dataset. Everything is written into a hidden
``.<name>.partial`` directory next to the target and renamed into place only when complete;
``progress.json`` there records which units (subjects, files) are done, so running the same
command again after an interruption continues instead of starting over.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medtl import __version__
from medtl.errors import InputError, OutputExistsError, StoreError

FORMAT = "medtl-store"
FORMAT_VERSION = 1
Task = Literal["classification", "multilabel", "segmentation"]
TASKS: tuple[str, ...] = ("classification", "multilabel", "segmentation")
SAMPLE_COLUMNS = ("index", "patient_id", "source_file", "slice", "label")

_HEADER_BYTES = 256  # fixed .npy header size, room for any (N, C, H, W) shape
_MAGIC = b"\x93NUMPY\x01\x00"


@dataclass(frozen=True)
class SampleRecord:
    """One row of samples.csv; ``label`` is the human-readable label (class name, 'a|b', 'mask')."""

    patient_id: str
    source_file: str
    slice: int = -1
    label: str = ""


def file_checksum(path: Path, chunk: int = 1 << 23) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def store_identity(path: str | Path) -> str:
    """What a store holds, whatever directory it lies in: the sha256 of the checksums its manifest
    records (every file the manifest covers). Two copies of a store share it; a changed label does not."""
    manifest_path = Path(path) / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
        checksums = manifest["checksums"]
    except FileNotFoundError:
        raise StoreError(path, "not a medtl store (manifest.json missing)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StoreError(manifest_path, f"has no readable checksums ({exc})") from None
    canonical = json.dumps(checksums, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class _NpyAppender:
    """Appends rows to a .npy file; the header is rewritten with the row count on close."""

    def __init__(self, path: Path, row_shape: Sequence[int], dtype: np.dtype, rows: int = 0) -> None:
        self.path, self.row_shape, self.dtype = path, tuple(int(s) for s in row_shape), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.rows = rows
        if rows and path.exists():
            self.fh = open(path, "r+b")
            self.fh.truncate(_HEADER_BYTES + rows * self.row_bytes)
            self.fh.seek(0, os.SEEK_END)
        else:
            self.rows = 0
            self.fh = open(path, "wb")
            self._write_header()

    def _write_header(self) -> None:
        shape = (self.rows, *self.row_shape)
        text = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (
            np.lib.format.dtype_to_descr(self.dtype),
            shape,
        )
        room = _HEADER_BYTES - len(_MAGIC) - 2
        body = text.ljust(room - 1).encode("latin1") + b"\n"
        if len(body) != room:
            raise ValueError(f"shape {shape} does not fit the fixed .npy header")
        self.fh.seek(0)
        self.fh.write(_MAGIC + struct.pack("<H", room) + body)
        self.fh.seek(0, os.SEEK_END)

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape:
            raise ValueError(f"{self.path.name}: row shape {rows.shape[1:]} != {self.row_shape}")
        self.fh.write(rows.tobytes())
        self.rows += rows.shape[0]

    def flush(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())

    def close(self) -> None:
        self._write_header()
        self.fh.close()


class StoreWriter:
    """Streams samples into a new store; use as a context manager and call ``finish()``.

    ``fingerprint`` describes the conversion (source, options). A partial directory left by
    an interrupted run with the same fingerprint is continued; one with another fingerprint
    is discarded.
    """

    def __init__(
        self,
        out: str | Path,
        *,
        task: Task,
        image_shape: Sequence[int],
        class_names: Sequence[str],
        dtype: str = "float16",
        label_shape: Sequence[int] | None = None,
        mask_shape: Sequence[int] | None = None,
        mask_names: Sequence[str] | None = None,
        normalisation: str = "none",
        source: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}")
        self.out = Path(out)
        if self.out.exists() and not overwrite:
            raise OutputExistsError(self.out)
        self.task = task
        self.image_shape = tuple(int(s) for s in image_shape)
        self.class_names = list(class_names)
        self.dtype = np.dtype(dtype)
        self.label_shape = None if label_shape is None else tuple(label_shape)
        self.mask_shape = None if mask_shape is None else tuple(mask_shape)
        self.mask_names = list(mask_names) if mask_names else None
        self.normalisation = normalisation
        self.source = dict(source or {})
        self.overwrite = overwrite
        self.fingerprint = hashlib.sha256(
            json.dumps(
                {
                    "task": task,
                    "shape": self.image_shape,
                    "dtype": self.dtype.str,
                    "classes": self.class_names,
                    "labels": self.label_shape,
                    "masks": self.mask_shape,
                    "norm": normalisation,
                    "source": self.source,
                },
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()
        self.tmp = self.out.parent / f".{self.out.name}.partial"
        self.skipped: list[dict[str, str]] = []
        self.units_done: set[str] = set()
        self.resumed_units = 0
        self._finished = False

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> StoreWriter:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        state = self._read_progress()
        if state is None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp.mkdir(parents=True)
            rows, csv_offset = 0, 0
        else:
            rows, csv_offset = state["rows"], state["csv_offset"]
            self.units_done = set(state["units_done"])
            self.skipped = list(state["skipped"])
            self.resumed_units = len(self.units_done)
        self._images = _NpyAppender(self.tmp / "images.npy", self.image_shape, self.dtype, rows)
        self._labels = None
        if self.label_shape is not None:
            label_dtype = np.int64 if self.task == "classification" else np.float32
            self._labels = _NpyAppender(self.tmp / "labels.npy", self.label_shape, label_dtype, rows)
        self._masks = None
        if self.mask_shape is not None:
            self._masks = _NpyAppender(self.tmp / "masks.npy", self.mask_shape, np.uint8, rows)
        self._csv = open(self.tmp / "samples.csv", "r+" if csv_offset else "w", newline="")
        if csv_offset:
            self._csv.truncate(csv_offset)
            self._csv.seek(csv_offset)
        else:
            csv.writer(self._csv).writerow(SAMPLE_COLUMNS)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._finished:
            # Keep the partial directory (with its progress record) so a rerun continues;
            # it is hidden and has no manifest, so nothing loads it as a store.
            for appender in (self._images, self._labels, self._masks):
                if appender is not None and not appender.fh.closed:
                    appender.fh.close()
            if not self._csv.closed:
                self._csv.close()

    def abort(self) -> None:
        """Remove everything written so far (used when --strict stops at a bad input)."""
        self.__exit__(None, None, None)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._finished = True

    def _read_progress(self) -> dict[str, Any] | None:
        try:
            state = json.loads((self.tmp / "progress.json").read_text())
        except (OSError, ValueError):
            return None
        return state if state.get("fingerprint") == self.fingerprint else None

    # -- writing -----------------------------------------------------------------------------
    @property
    def rows(self) -> int:
        return self._images.rows

    def done(self, unit: str) -> bool:
        """True when ``unit`` was written (or skipped) by an earlier, interrupted run."""
        return unit in self.units_done

    def add(
        self,
        unit: str,
        images: np.ndarray,
        samples: Sequence[SampleRecord],
        labels: np.ndarray | None = None,
        masks: np.ndarray | None = None,
    ) -> None:
        """Append one unit's samples (a subject's slices, one image file) and commit it."""
        n = images.shape[0]
        if len(samples) != n:
            raise ValueError("one SampleRecord per image is required")
        if images.shape[1:] != self.image_shape:
            raise ValueError(f"image shape {images.shape[1:]} != store shape {self.image_shape}")
        for name, appender, arr in (("labels", self._labels, labels), ("masks", self._masks, masks)):
            if (appender is None) != (arr is None):
                raise ValueError(f"{name} given/expected mismatch for unit {unit}")
            if arr is not None and arr.shape[0] != n:
                raise ValueError(f"{name}: {arr.shape[0]} rows for {n} images")
        start = self.rows
        self._images.append(images)
        if self._labels is not None:
            self._labels.append(labels)
        if self._masks is not None:
            self._masks.append(masks)
        writer = csv.writer(self._csv)
        for i, rec in enumerate(samples):
            writer.writerow((start + i, rec.patient_id, rec.source_file, rec.slice, rec.label))
        self._commit(unit)

    def skip(self, unit: str, path: str | Path, reason: str) -> None:
        """Record a skipped input in prepare_report.json."""
        self.skipped.append({"file": str(path), "reason": reason})
        self._commit(unit)

    def _commit(self, unit: str) -> None:
        self.units_done.add(unit)
        for appender in (self._images, self._labels, self._masks):
            if appender is not None:
                appender.flush()
        self._csv.flush()
        state = {
            "fingerprint": self.fingerprint,
            "rows": self.rows,
            "csv_offset": self._csv.tell(),
            "units_done": sorted(self.units_done),
            "skipped": self.skipped,
        }
        tmp = self.tmp / "progress.json.tmp"
        tmp.write_text(json.dumps(state))
        os.replace(tmp, self.tmp / "progress.json")

    def finish(self) -> Path:
        """Write the manifest and checksums, then move the store into place."""
        if self.rows == 0:
            self.abort()  # nothing to resume: leave nothing behind
            raise InputError(
                self.source.get("root"),
                f"no samples were converted ({len(self.skipped)} skipped); see the reasons above",
            )
        for appender in (self._images, self._labels, self._masks):
            if appender is not None:
                appender.close()
        self._csv.close()
        files = ["images.npy"] + [
            f"{name}.npy" for name, a in (("labels", self._labels), ("masks", self._masks)) if a
        ]
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "task": self.task,
            "class_names": self.class_names,
            "num_samples": self.rows,
            "counts": self._counts(),
            "shape": list(self.image_shape),
            "dtype": self.dtype.name,
            "label_shape": None if self.label_shape is None else list(self.label_shape),
            "mask_shape": None if self.mask_shape is None else list(self.mask_shape),
            "mask_names": self.mask_names,
            "normalisation": self.normalisation,
            "source": self.source,
            "num_patients": self._num_patients(),
            "skipped": len(self.skipped),
            "medtl_version": __version__,
            "checksums": {name: file_checksum(self.tmp / name) for name in files},
        }
        (self.tmp / "prepare_report.json").write_text(
            json.dumps({"skipped": self.skipped, "num_samples": self.rows}, indent=2)
        )
        (self.tmp / "progress.json").unlink(missing_ok=True)
        (self.tmp / "manifest.json").write_text(json.dumps(manifest, indent=2))
        if self.out.exists():
            trash = self.out.parent / f".{self.out.name}.old"
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(self.out, trash)
            os.replace(self.tmp, self.out)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(self.tmp, self.out)
        self._finished = True
        return self.out

    def _counts(self) -> dict[str, int]:
        if self._labels is None:
            return {}
        labels = np.load(self.tmp / "labels.npy", mmap_mode="r")
        if self.task == "classification":
            counts = np.bincount(np.asarray(labels), minlength=len(self.class_names))
        else:
            counts = (np.asarray(labels) > 0.5).sum(axis=0)
        return {name: int(c) for name, c in zip(self.class_names, counts)}

    def _num_patients(self) -> int:
        with open(self.tmp / "samples.csv", newline="") as fh:
            return len({row["patient_id"] for row in csv.DictReader(fh)})


class Store:
    """Read-only, memory-mapped view of a prepared store (zero-copy array access)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        manifest_path = self.path / "manifest.json"
        if not manifest_path.is_file():
            partial = self.path.parent / f".{self.path.name}.partial"
            hint = (
                "an interrupted prepare left it unfinished; rerun the same command"
                if partial.exists()
                else "run `medtl prepare` first"
            )
            raise StoreError(self.path, "not a medtl store (manifest.json missing)", hint=hint)
        try:
            self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        except ValueError as exc:
            raise StoreError(manifest_path, f"invalid JSON ({exc})") from None
        if self.manifest.get("format") != FORMAT:
            raise StoreError(manifest_path, "not a medtl store manifest")
        if self.manifest.get("format_version", 0) > FORMAT_VERSION:
            raise StoreError(
                manifest_path,
                f"store format {self.manifest['format_version']} is newer than this medtl "
                f"understands ({FORMAT_VERSION}); upgrade medtl",
            )
        self._arrays: dict[str, np.ndarray] = {}
        self._samples: list[dict[str, str]] | None = None

    # -- manifest --------------------------------------------------------------------------
    @property
    def task(self) -> Task:
        return self.manifest["task"]

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest["class_names"])

    @property
    def num_classes(self) -> int:
        return len(self.manifest["class_names"])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.manifest["shape"])  # type: ignore[return-value]

    @property
    def checksum(self) -> str:
        """Identifies the store's content (used to tie split files to their store)."""
        return self.manifest["checksums"]["images.npy"]

    def __len__(self) -> int:
        return int(self.manifest["num_samples"])

    # -- arrays (memory-mapped) ------------------------------------------------------------
    def _array(self, name: str) -> np.ndarray | None:
        if name not in self._arrays:
            path = self.path / f"{name}.npy"
            if not path.exists():
                return None
            try:
                arr = np.load(path, mmap_mode="r")
            except (ValueError, OSError) as exc:
                raise StoreError(path, f"cannot be read ({exc})") from None
            if arr.shape[0] != len(self):
                raise StoreError(path, f"has {arr.shape[0]} rows, manifest says {len(self)}")
            self._arrays[name] = arr
        return self._arrays[name]

    @property
    def images(self) -> np.ndarray:
        arr = self._array("images")
        if arr is None:
            raise StoreError(self.path / "images.npy", "missing")
        return arr

    @property
    def labels(self) -> np.ndarray | None:
        return self._array("labels")

    @property
    def masks(self) -> np.ndarray | None:
        return self._array("masks")

    # -- samples -----------------------------------------------------------------------------
    @property
    def samples(self) -> list[dict[str, str]]:
        if self._samples is None:
            with open(self.path / "samples.csv", newline="") as fh:
                self._samples = list(csv.DictReader(fh))
        return self._samples

    @property
    def patient_ids(self) -> np.ndarray:
        return np.array([row["patient_id"] for row in self.samples], dtype=object)

    def verify(self) -> list[str]:
        """Return the names of array files whose checksum does not match the manifest."""
        return [
            name
            for name, expected in self.manifest["checksums"].items()
            if file_checksum(self.path / name) != expected
        ]
