"""What the 2-D image converters (ce-mri, folder, list, seg) share.

* ``ImageFormat``: the store's pixel layout (size, channels, dtype, intensity scaling), decided
  once per conversion by ``decide_format`` and carried, picklable, in every job.
* ``store_image`` / ``store_mask``: one read image or mask -> one store row.
* ``write_store``: open the StoreWriter, record what the listing already rejected, run the jobs.

Output size: kept when every image has the same size, else ``size`` is required (images are
resized bilinearly, masks by nearest neighbour). Channels: 1 or 3; by default 3 when any image
is colour. Intensities are scaled to [0, 1] and stored as float16, or as 0..255 in uint8.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medtl.errors import ConfigError, InputError, SkipSample, UnknownChoiceError
from medtl.io.normalise import Intensity, fit_intensity, resize_images, resize_masks, to_uint8
from medtl.io.paths import STORE, guard_output
from medtl.io.prepare import Job, PrepareSummary, Unit, convert
from medtl.io.readers import ImageMeta, image_info
from medtl.io.store import StoreWriter
from medtl.progress import NULL_PROGRESS, Progress

# How raw pixel values become [0, 1]:
#   auto       - 8-bit data: x / 255, so relative brightness between images is kept; anything
#                else per-image min-max (16-bit files often hold 10-12 bit data, which x / 65535
#                would squeeze into a few uint8 levels; float images; rescaled DICOM such as CT;
#                .mat arrays);
#   minmax     - per image, (x - min) / (max - min);
#   percentile - per image, clipped to the 0.5th/99.5th percentiles of its non-zero pixels, then min-max.
INTENSITIES = ("auto", "minmax", "percentile")
DTYPES = ("float16", "uint8")
CHANNELS = (1, 3)
# ITU-R 601 luma, the weights Pillow uses for RGB -> L.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass(frozen=True)
class ImageFormat:
    """How images are written to the store."""

    size: tuple[int, int]  # (height, width)
    channels: int
    dtype: str = "float16"
    intensity: str = "auto"

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, *self.size)


@dataclass(frozen=True)
class Rejected:
    """An input the listing already found unusable (missing file, unknown label, ...)."""

    key: str
    path: str
    reason: str


def check_choices(dtype: str, intensity: str, channels: int | None) -> None:
    if dtype not in DTYPES:
        raise UnknownChoiceError("dtype", dtype, DTYPES)
    if intensity not in INTENSITIES:
        raise UnknownChoiceError("intensity scaling", intensity, INTENSITIES)
    if channels is not None and channels not in CHANNELS:
        raise ConfigError(f"channels must be 1 (grayscale) or 3 (RGB), not {channels}")


def check_output(out: str | Path, overwrite: bool, inputs: Iterable[str | Path | None] = ()) -> Path:
    """Fail before any reading when the output may not be written: it exists (and may not be
    replaced, or is not a store), or it is, contains or lies inside one of ``inputs``."""
    return guard_output(out, STORE, inputs=inputs, overwrite=overwrite)


def parse_size(size: int | Sequence[int] | None) -> tuple[int, int] | None:
    """``S`` -> (S, S); ``(H, W)`` as given; None keeps the images' own size."""
    if size is None:
        return None
    hw = (int(size), int(size)) if isinstance(size, (int, np.integer)) else tuple(int(s) for s in size)
    if len(hw) != 2 or min(hw) < 1:
        raise ConfigError(f"size must be a positive S or (H, W), not {size!r}")
    return hw  # type: ignore[return-value]


def decide_format(
    paths: Iterable[str | Path],
    *,
    size: int | Sequence[int] | None,
    channels: int | None,
    dtype: str,
    intensity: str,
    root: str | Path,
    probe: Callable[[Path], tuple[int, int, int]] = image_info,
    progress: Progress = NULL_PROGRESS,
) -> ImageFormat:
    """Store layout for ``paths``; their headers are read only for what ``size``/``channels`` leave open.

    Unreadable files are ignored here: converting them records the skip.
    """
    check_choices(dtype, intensity, channels)
    hw = parse_size(size)
    if hw is not None and channels is not None:
        return ImageFormat(hw, channels, dtype, intensity)
    paths = list(paths)
    sizes: dict[tuple[int, int], Path] = {}
    colour = False
    task = progress.start("reading image headers", total=len(paths))
    for path in paths:
        try:
            h, w, c = probe(Path(path))
        except InputError:
            h = w = c = 0
        if h:
            sizes.setdefault((h, w), Path(path))
            colour = colour or c > 1
        progress.advance(task)
    progress.end(task)
    if hw is None:
        if not sizes:
            raise InputError(root, "no readable image found")
        if len(sizes) > 1:
            examples = ", ".join(f"{h}x{w} ({p.name})" for (h, w), p in list(sizes.items())[:3])
            raise InputError(
                root,
                f"images have {len(sizes)} different sizes ({examples}); pass --size S to resize them",
            )
        hw = next(iter(sizes))
    return ImageFormat(hw, channels if channels is not None else (3 if colour else 1), dtype, intensity)


def _intensity(image: np.ndarray, meta: ImageMeta, method: str) -> Intensity:
    if method == "auto" and meta.value_range == (0.0, 255.0):
        lo, hi = meta.value_range
        return Intensity(1.0 / (hi - lo), -lo / (hi - lo), lo, hi)
    return fit_intensity(image, "minmax" if method == "auto" else method)


def store_image(image: np.ndarray, meta: ImageMeta, fmt: ImageFormat, path: str | Path) -> np.ndarray:
    """``(H, W)`` or ``(H, W, C)`` pixels -> one ``(C, H', W')`` store row in the store dtype.

    Raises SkipSample for an image that cannot be scaled (NaN/Inf, or constant under min-max).
    """
    if not np.isfinite(image).all():
        raise SkipSample(path, "image has NaN or infinite values")
    try:
        unit = _intensity(image, meta, fmt.intensity).apply(image)
    except ValueError as exc:  # constant image under min-max/percentile
        raise SkipSample(path, f"{exc}") from None
    unit = np.clip(unit, 0.0, 1.0)
    unit = unit[None] if unit.ndim == 2 else np.moveaxis(unit, -1, 0)  # -> (C, H, W)
    if unit.shape[0] != fmt.channels:
        if fmt.channels == 1:
            unit = np.tensordot(_LUMA, unit[:3], axes=1)[None]
        else:
            unit = np.repeat(unit[:1], 3, axis=0)
    unit = np.clip(resize_images(unit, fmt.size), 0.0, 1.0)
    if fmt.dtype == "uint8":
        return to_uint8(unit, (0.0, 1.0))
    return unit.astype(np.float16)


def store_mask(mask: np.ndarray, size: tuple[int, int], *, binary: bool, path: str | Path) -> np.ndarray:
    """Integer ``(H, W)`` label image -> one ``(1, H', W')`` uint8 store row (nearest-neighbour resize).

    ``binary`` maps every non-zero value to 1; otherwise labels are kept and must lie in 0..255.
    """
    if binary:
        mask = (mask > 0).astype(np.uint8)
    else:
        if mask.min(initial=0) < 0 or mask.max(initial=0) > 255:
            raise SkipSample(path, f"mask labels {int(mask.min())}..{int(mask.max())} do not fit 0..255")
        mask = mask.astype(np.uint8)
    return resize_masks(mask, size)[None]


def compile_patient_regex(pattern: str | None) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(f"patient regex {pattern!r} is not a valid regular expression ({exc})") from None


def patient_from_name(name: str, regex: re.Pattern[str] | None) -> str | None:
    """The named group ``patient``, else the first group, else the whole match; None without a match.

    Without a regex the patient id is the file stem.
    """
    if regex is None:
        return Path(name).stem if "." in name else name
    match = regex.search(name)
    if match is None:
        return None
    if "patient" in regex.groupindex:
        return match.group("patient")
    return match.group(1) if regex.groups else match.group(0)


class FileIndex:
    """Finds files under a root by relative path, or by name/stem anywhere below it.

    Datasets scatter images over sub-folders (ChestX-ray14: ``images_001/images/...``; SIIM:
    ``<study>/<series>/<uid>.dcm``) while their label files name only the file; the tree is
    walked once, on the first name that is not found directly.
    """

    def __init__(self, root: str | Path, *, by_stem: bool = False, kind: str = "image") -> None:
        self.root = Path(root)
        self.by_stem = by_stem
        self.kind = kind
        self._index: dict[str, list[Path]] | None = None

    def _build(self) -> dict[str, list[Path]]:
        index: dict[str, list[Path]] = {}
        for folder, _dirs, files in os.walk(self.root):
            for name in files:
                if name.startswith("."):
                    continue
                key = Path(name).stem if self.by_stem else name
                index.setdefault(key, []).append(Path(folder) / name)
        return index

    def find(self, name: str) -> Path | str:
        """The file, or the reason it cannot be used (a str).

        A relative name is tried under the root as written, then without its leading folders
        (a CheXpert ``CheXpert-v1.0-small/train/...`` path under a root that is that folder),
        then by file name anywhere below the root.
        """
        if not name:
            return f"no {self.kind} file named"
        rel = Path(name)
        if rel.is_absolute():
            return rel if rel.is_file() else f"{self.kind} '{name}' not found"
        for k in range(len(rel.parts)):
            candidate = self.root.joinpath(*rel.parts[k:])
            if candidate.is_file():
                return candidate
        if self._index is None:
            self._index = self._build()
        hits = self._index.get(rel.name, [])  # by_stem: the name given is a stem (a SIIM ImageId)
        if len(hits) > 1:
            # Several files share the name: the one whose path ends with the listed folders.
            tail = rel.parent.parts
            hits = [h for h in hits if not tail or h.parent.parts[-len(tail) :] == tail]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            return f"several files match '{name}' under {self.root} ({hits[0]}, {hits[1]}, ...)"
        return f"{self.kind} '{name}' not found under {self.root}"


def stop_if_strict(rejected: Sequence[Rejected], strict: bool) -> None:
    """With ``strict``, the first input rejected while listing stops the conversion."""
    if strict and rejected:
        raise InputError(rejected[0].path, rejected[0].reason)


def write_store(
    out: Path,
    jobs: Sequence[Job],
    load: Callable[[Any], Unit | None],
    *,
    rejected: Sequence[Rejected] = (),
    task: str,
    fmt: ImageFormat,
    class_names: Sequence[str],
    source: Mapping[str, Any],
    label_shape: Sequence[int] | None = None,
    mask_shape: Sequence[int] | None = None,
    mask_names: Sequence[str] | None = None,
    listing: Sequence[str | Path] = (),
    workers: int = 1,
    strict: bool = False,
    overwrite: bool = False,
    wait: bool = False,
    progress: Progress = NULL_PROGRESS,
    description: str = "converting",
) -> PrepareSummary:
    """Write the store: inputs rejected while listing become report entries, then the jobs run.

    With ``strict`` the first rejected input stops everything before the store is opened.
    ``listing`` names the files the jobs were listed from (label lists, pair tables): a resumed
    conversion starts over when they changed.
    """
    stop_if_strict(rejected, strict)
    inputs = {item.key: () for item in rejected} | {job.key: job.inputs for job in jobs}
    with StoreWriter(
        out,
        task=task,  # type: ignore[arg-type]
        image_shape=fmt.shape,
        class_names=class_names,
        dtype=fmt.dtype,
        label_shape=label_shape,
        mask_shape=mask_shape,
        mask_names=mask_names,
        normalisation=fmt.intensity,
        source={**source, "size": list(fmt.size), "channels": fmt.channels},
        overwrite=overwrite,
        inputs=inputs,
        listing=listing,
        wait=wait,
    ) as writer:
        for item in rejected:
            if not writer.done(item.key):
                progress.message(f"skipped {item.path}: {item.reason}")
                writer.skip(item.key, item.path, item.reason)
        return convert(
            jobs, load, writer, workers=workers, strict=strict, progress=progress, description=description
        )


def read_csv_rows(
    path: Path, *, allow_empty: bool = False
) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Header and non-blank rows of a CSV as (line number, {column: value}), values stripped."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            rows = [
                (i, dict(zip(header, (v.strip() for v in row))))
                for i, row in enumerate(reader, start=2)
                if any(v.strip() for v in row)
            ]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(path, f"cannot be read as CSV ({exc})") from None
    if not header and not allow_empty:
        raise InputError(path, "empty file")
    return header, rows
