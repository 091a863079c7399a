"""The prepared-dataset store: one directory that every later stage reads.

Layout (DESIGN.md): ``manifest.json``, ``images.npy`` (N, C, H, W), ``labels.npy`` and/or
``masks.npy``, ``samples.csv`` (index, patient_id, source_file, slice, label) and
``prepare_report.json`` (skipped inputs). The manifest records the SHA-256 of every array and of
samples.csv (``checksums``, a flat ``{file: "sha256:..."}``), their sizes and sampled checksums of
the large arrays; ``Store.checksum`` hashes all of them, so it names the store's *content*: images,
labels, masks and patients. ``Store.verify`` checks a store quickly (sizes, headers, labels and
samples in full, sampled arrays) or fully (every byte).

Writing streams rows into ``.npy`` files whose header is rewritten with the final row count,
so peak memory does not grow with the dataset. Everything is written into a hidden
``.<name>.partial`` directory next to the target and renamed into place only when complete, under
an exclusive lock on the target (one writer at a time). ``progress.jsonl`` there records which
units (subjects, files) are done and the signature of the files each one read, so running the
same command again after an interruption continues instead of starting over, unless the options
or the inputs changed: then it starts over rather than mix old and new rows.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import struct
from collections.abc import Mapping, Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medtl import __version__
from medtl.errors import InputError, StoreError
from medtl.io.checksums import file_checksum, input_signature, sampled_checksum
from medtl.io.paths import STORE, check_replaceable, replace_dir, resolved, write_errors
from medtl.io.progress_log import PROGRESS_FILE, ProgressEntry, ProgressLog, ProgressRecord, read_progress
from medtl.progress import NULL_PROGRESS, Progress

__all__ = ["SampleRecord", "Store", "StoreWriter", "file_checksum"]

log = logging.getLogger("medtl")

FORMAT = "medtl-store"
FORMAT_VERSION = 2  # 2: checksums of every array and samples.csv, sizes, sampled checksums
Task = Literal["classification", "multilabel", "segmentation"]
TASKS: tuple[str, ...] = ("classification", "multilabel", "segmentation")
SAMPLE_COLUMNS = ("index", "patient_id", "source_file", "slice", "label")
SAMPLES_FILE = "samples.csv"
# Files a quick verification hashes in full: small next to the images, and what decides what is learnt.
_FULLY_CHECKED = ("labels.npy", SAMPLES_FILE)
_SAMPLED = ("images.npy", "masks.npy")
_HEADER_BYTES = 256  # fixed .npy header size, room for any (N, C, H, W) shape
_MAGIC = b"\x93NUMPY\x01\x00"
_REQUIRED = ("task", "class_names", "num_samples", "shape", "dtype")


@dataclass(frozen=True)
class SampleRecord:
    """One row of samples.csv; ``label`` is the human-readable label (class name, 'a|b', 'mask')."""

    patient_id: str
    source_file: str
    slice: int = -1
    label: str = ""


def content_checksum(checksums: Mapping[str, str]) -> str:
    """One checksum of a store's content from the manifest's per-file checksums."""
    canonical = json.dumps(dict(sorted(checksums.items())), separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


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
    if not isinstance(checksums, dict):
        raise StoreError(manifest_path, "has no readable checksums")
    return content_checksum(checksums).removeprefix("sha256:")  # Store.checksum, without the prefix


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

    ``source`` describes the conversion (options) and ``listing`` names the files the jobs were
    listed from (a label list, ``name_mapping.csv``); with the store's layout they form a fingerprint.
    ``inputs`` maps each unit to the input files it reads. A partial directory left by an interrupted
    run is continued when its fingerprint matches and no input file of a unit it finished has
    changed (size or modification time); otherwise it is discarded and ``notice`` says why.

    Entering takes the exclusive lock on ``out`` (``wait``: wait for another writer rather than
    fail); leaving releases it.
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
        inputs: Mapping[str, Sequence[str]] | None = None,
        listing: Sequence[str | Path] = (),
        wait: bool = False,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}")
        self.out = Path(out)
        check_replaceable(self.out, STORE, overwrite=overwrite)
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
        self.inputs = None if inputs is None else {k: [str(f) for f in v] for k, v in inputs.items()}
        self.wait = wait
        listing_files = sorted(str(resolved(p)) for p in listing)
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
                    "listing": dict(zip(listing_files, input_signature(listing_files))),
                },
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()
        self.tmp = self.out.parent / f".{self.out.name}.partial"
        self.skipped: list[dict[str, str]] = []
        self.units_done: set[str] = set()
        self.resumed_units = 0
        self.notice: str | None = None  # why an interrupted run's work was discarded
        self._finished = False
        self._stack = ExitStack()
        self._log: ProgressLog | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> StoreWriter:
        # Imported here: reading a store (RunConfig computes a store's identity) needs no filelock.
        from medtl.io.locks import exclusive

        self._stack.enter_context(exclusive(self.out, wait=self.wait, what="store"))
        try:
            # Again under the lock: another writer may have published the store meanwhile.
            check_replaceable(self.out, STORE, overwrite=self.overwrite)
            with write_errors(self.tmp):
                self._open(self._resume_record())
        except BaseException:
            self._close_files()
            self._stack.close()
            raise
        return self

    def _open(self, state: ProgressRecord | None) -> None:
        if state is None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp.mkdir(parents=True)
            rows, csv_offset = 0, 0
        else:
            rows, csv_offset = state.rows, state.csv_offset
            self.units_done = {e.unit for e in state.entries}
            self.skipped = [e.skip for e in state.entries if e.skip is not None]
            self.resumed_units = len(self.units_done)
        self._images = _NpyAppender(self.tmp / "images.npy", self.image_shape, self.dtype, rows)
        self._labels = None
        if self.label_shape is not None:
            label_dtype = np.int64 if self.task == "classification" else np.float32
            self._labels = _NpyAppender(self.tmp / "labels.npy", self.label_shape, label_dtype, rows)
        self._masks = None
        if self.mask_shape is not None:
            self._masks = _NpyAppender(self.tmp / "masks.npy", self.mask_shape, np.uint8, rows)
        self._csv = open(self.tmp / SAMPLES_FILE, "r+" if csv_offset else "w", newline="", encoding="utf-8")
        if csv_offset:
            self._csv.truncate(csv_offset)
            self._csv.seek(csv_offset)
        else:
            csv.writer(self._csv).writerow(SAMPLE_COLUMNS)
            self._csv.flush()
        self._log = ProgressLog(self.tmp / PROGRESS_FILE, self.fingerprint, state)

    def __exit__(self, exc_type, exc, tb) -> None:
        # Unfinished: keep the partial directory (with its progress log) so a rerun continues;
        # it is hidden and has no manifest, so nothing loads it as a store.
        self._close_files()
        self._stack.close()

    def _close_files(self) -> None:
        # After a failed write (a full disk) closing flushes the same buffer again and fails again;
        # the error that matters was raised already, and the log vouches only for committed rows.
        handles = [getattr(self, name, None) for name in ("_images", "_labels", "_masks")]
        files = [a.fh for a in handles if a is not None] + [getattr(self, "_csv", None)]
        for fh in files:
            if fh is not None and not fh.closed:
                with suppress(OSError):
                    fh.close()
        if self._log is not None:
            with suppress(OSError):
                self._log.close()

    def abort(self) -> None:
        """Remove everything written so far (used when --strict stops at a bad input)."""
        self._close_files()
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._finished = True

    def _resume_record(self) -> ProgressRecord | None:
        """What an interrupted run committed, when it may be continued; else None (and ``notice``)."""
        state = read_progress(self.tmp / PROGRESS_FILE)
        if state is None:
            return None
        if state.fingerprint != self.fingerprint:
            self.notice = (
                f"{self.out}: the options or listed inputs differ from the interrupted run; starting over"
            )
            return None
        if self.inputs is None:
            return state
        for entry in state.entries:
            files = self.inputs.get(entry.unit)
            if files is None:
                self.notice = f"{self.out}: {entry.unit} is no longer an input; starting over"
                return None
            if entry.signature is not None and input_signature(files) != entry.signature:
                changed = next(
                    (f for f, a, b in zip(files, input_signature(files), entry.signature) if a != b),
                    files[0] if files else entry.unit,
                )
                self.notice = f"{self.out}: {changed} changed since the interrupted run; starting over"
                return None
        return state

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
        with write_errors(self.tmp):
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
        entry = {"file": str(path), "reason": reason}
        with write_errors(self.tmp):
            self._commit(unit, entry)
        self.skipped.append(entry)

    def _commit(self, unit: str, skip: dict[str, str] | None = None) -> None:
        # Rows first (flushed to disk), then the log line that vouches for them.
        for appender in (self._images, self._labels, self._masks):
            if appender is not None:
                appender.flush()
        self._csv.flush()
        files = self.inputs.get(unit) if self.inputs is not None else None
        signature = input_signature(files) if files else None
        assert self._log is not None
        self._log.append(ProgressEntry(unit, self.rows, self._csv.tell(), signature, skip))
        self.units_done.add(unit)

    def finish(self) -> Path:
        """Write the manifest and checksums, then move the store into place (atomically)."""
        if self.rows == 0:
            self.abort()  # nothing to resume: leave nothing behind
            raise InputError(
                self.source.get("root"),
                f"no samples were converted ({len(self.skipped)} skipped); see the reasons above",
            )
        with write_errors(self.tmp):
            for appender in (self._images, self._labels, self._masks):
                if appender is not None:
                    appender.close()
            self._csv.close()
            manifest = self._manifest()
            _write_text(self.tmp / "prepare_report.json", {"skipped": self.skipped, "num_samples": self.rows})
            _write_text(self.tmp / "manifest.json", manifest)
            assert self._log is not None
            self._log.remove()
        with write_errors(self.out):
            replace_dir(self.tmp, self.out)
        self._finished = True
        return self.out

    def _manifest(self) -> dict[str, Any]:
        files = ["images.npy"] + [
            f"{name}.npy" for name, a in (("labels", self._labels), ("masks", self._masks)) if a
        ]
        files.append(SAMPLES_FILE)
        return {
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
            "sizes": {name: os.path.getsize(self.tmp / name) for name in files},
            "sampled_checksums": {
                name: sampled_checksum(self.tmp / name) for name in files if name in _SAMPLED
            },
        }

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
        with open(self.tmp / SAMPLES_FILE, newline="", encoding="utf-8") as fh:
            return len({row["patient_id"] for row in csv.DictReader(fh)})


def _write_text(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2), encoding="utf-8")
    os.replace(tmp, path)


class Store:
    """Read-only, memory-mapped view of a prepared store (zero-copy array access).

    Opening reads only the manifest and checks it is whole; a damaged manifest, samples.csv or
    array is a StoreError naming the file.
    """

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
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (ValueError, OSError) as exc:  # UnicodeDecodeError is a ValueError
            raise StoreError(manifest_path, f"cannot be read as JSON ({exc})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise StoreError(manifest_path, "not a medtl store manifest")
        if manifest.get("format_version", 0) > FORMAT_VERSION:
            raise StoreError(
                manifest_path,
                f"store format {manifest['format_version']} is newer than this medtl "
                f"understands ({FORMAT_VERSION}); upgrade medtl",
            )
        missing = [key for key in _REQUIRED if key not in manifest]
        if missing:
            raise StoreError(manifest_path, f"has no '{missing[0]}' entry; prepare the store again")
        checksums = manifest.get("checksums")
        if not isinstance(checksums, dict) or "images.npy" not in checksums:
            raise StoreError(
                manifest_path, "has no checksums, so the store cannot be verified; prepare it again"
            )
        self.manifest: dict[str, Any] = manifest
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
    def checksums(self) -> dict[str, str]:
        """The manifest's ``{file: "sha256:..."}``."""
        return dict(self.manifest["checksums"])

    @property
    def checksum(self) -> str:
        """Identifies the store's content: images, labels, masks and samples (patients) together.

        Split files, features and run state are tied to it, so a store prepared again with other
        labels or patients is a different store.
        """
        return content_checksum(self.checksums)

    @property
    def uncovered(self) -> list[str]:
        """Store files no checksum covers (stores written before format 2 covered images only)."""
        names = ["labels.npy", "masks.npy", SAMPLES_FILE]
        return [n for n in names if (self.path / n).exists() and n not in self.checksums]

    def __len__(self) -> int:
        return int(self.manifest["num_samples"])

    # -- arrays (memory-mapped) ------------------------------------------------------------
    def _array(self, name: str) -> np.ndarray | None:
        if name not in self._arrays:
            path = self.path / f"{name}.npy"
            if not path.exists():
                if f"{name}.npy" in self.checksums:
                    raise StoreError(path, "missing (the manifest lists it)")
                return None
            try:
                arr = np.load(path, mmap_mode="r")
            except (ValueError, OSError) as exc:
                reason = " ".join(str(exc).split())[:160]  # numpy's header errors span lines
                raise StoreError(path, f"cannot be read as .npy ({reason})") from None
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
            self._samples = _read_samples(self.path / SAMPLES_FILE, len(self))
        return self._samples

    @property
    def patient_ids(self) -> np.ndarray:
        return np.array([row["patient_id"] for row in self.samples], dtype=object)

    # -- verification ------------------------------------------------------------------------
    def verify(self, *, quick: bool = False, progress: Progress = NULL_PROGRESS) -> None:
        """Check every file against the manifest; the first mismatch is a StoreError naming the file.

        ``quick`` (milliseconds to a second): sizes, .npy headers, labels and samples.csv hashed in
        full, the large arrays by their sampled checksum. Otherwise every byte is hashed.
        """
        self.samples  # noqa: B018  (parses samples.csv: readable, its columns, one row per sample)
        sizes = self.manifest.get("sizes", {})
        for name in self.checksums:
            path = self.path / name
            if not path.is_file():
                raise StoreError(path, "missing (the manifest lists it)")
            if name in sizes and path.stat().st_size != sizes[name]:
                raise StoreError(
                    path, f"is {path.stat().st_size} bytes, the manifest says {sizes[name]} (truncated?)"
                )
            if name.endswith(".npy"):
                self._array(name[: -len(".npy")])  # parses the header, checks the row count
        if quick:
            self._verify_quick()
            return
        total = sum(os.path.getsize(self.path / n) for n in self.checksums)
        task = progress.start(f"verifying {self.path.name}", total=total)
        try:
            for name, expected in self.checksums.items():
                actual = file_checksum(self.path / name, on_bytes=lambda n: progress.advance(task, n))
                _check_sum(self.path / name, actual, expected)
        finally:
            progress.end(task)

    def _verify_quick(self) -> None:
        sampled = self.manifest.get("sampled_checksums", {})
        for name, expected in self.checksums.items():
            path = self.path / name
            if name in sampled:
                _check_sum(path, sampled_checksum(path), sampled[name])
            elif name in _FULLY_CHECKED:
                _check_sum(path, file_checksum(path), expected)


def _check_sum(path: Path, actual: str, expected: str) -> None:
    if actual != expected:
        raise StoreError(
            path,
            "content does not match the checksum in manifest.json (changed or damaged since prepare)",
            hint="prepare the store again from the raw data",
        )


def _read_samples(path: Path, expected_rows: int) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            columns = reader.fieldnames or []
    except FileNotFoundError:
        raise StoreError(path, "missing; the store is incomplete (prepare it again)") from None
    except UnicodeDecodeError as exc:
        raise StoreError(path, f"is not UTF-8 text (byte {exc.start}); the file is damaged") from None
    except (OSError, csv.Error) as exc:
        raise StoreError(path, f"cannot be read as CSV ({exc})") from None
    absent = [c for c in SAMPLE_COLUMNS if c not in columns]
    if absent:
        raise StoreError(path, f"has no '{absent[0]}' column (columns: {', '.join(columns) or 'none'})")
    if len(rows) != expected_rows:
        raise StoreError(path, f"has {len(rows)} rows, the manifest says {expected_rows} samples")
    return rows
