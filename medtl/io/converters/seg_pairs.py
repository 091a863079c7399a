"""Image/mask pairs -> a segmentation store (``medtl prepare seg``): DRIVE, Montgomery, SIIM, ...

Pairs come from one of:

* mask folders: an image ``<key><image_suffix>.*`` pairs with ``<key><mask_suffix>.*`` in every
  mask folder (DRIVE: ``21_training.tif`` + ``21_manual1.gif`` with suffixes ``_training`` and
  ``_manual1``). Masks from several folders are combined (Montgomery's ``leftMask`` and
  ``rightMask``): union when binary, maximum label otherwise. Images and masks may share a
  folder (``x.tif`` + ``x_mask.tif``);
* a pairs CSV with ``image`` and ``mask`` columns (else the first two), paths relative to the
  image root;
* a SIIM run-length CSV (``ImageId``, ``EncodedPixels``): SIIM's relative encoding (each start
  counts from the end of the previous run), pixels numbered column by column, ``-1`` for an
  empty mask, several rows of one image combined. Images are found by ``ImageId`` (file stem)
  anywhere below the image root (SIIM nests ``<study>/<series>/<ImageId>.dcm``).

Masks are PNG, GIF, TIFF or BMP; images also JPEG and DICOM. ``binary`` masks map every non-zero
value to 1 (class names background, foreground); otherwise the values are labels 0..K-1 named by
``class_names`` (background first), and a value outside them skips the pair. A mask whose size
differs from its image is skipped, unless ``size`` is given and both have the same aspect ratio:
then both are resampled to ``size`` (images bilinearly, masks by nearest neighbour). Task
``segmentation``; masks.npy is ``(N, 1, H, W)`` uint8.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medtl.errors import ConfigError, InputError, SkipSample
from medtl.io.converters.common import (
    FileIndex,
    ImageFormat,
    Rejected,
    check_choices,
    check_output,
    compile_patient_regex,
    decide_format,
    patient_from_name,
    read_csv_rows,
    stop_if_strict,
    store_image,
    store_mask,
    write_store,
)
from medtl.io.prepare import Job, PrepareSummary, Unit
from medtl.io.readers import MASK_SUFFIXES, is_image_file, read_image, read_mask
from medtl.io.store import SampleRecord
from medtl.progress import NULL_PROGRESS, Progress

BINARY_CLASSES = ("background", "foreground")
_ASPECT_TOLERANCE = 0.01


# -- SIIM run-length encoding ---------------------------------------------------------------------
def decode_rle(rle: str, height: int, width: int) -> np.ndarray:
    """SIIM ``EncodedPixels`` -> ``(height, width)`` uint8 mask of 0/1 (``-1``: empty).

    Pairs of (start, length): each start counts from the end of the previous run, and pixels
    are numbered column by column (the SIIM ``rle2mask`` reshapes to (width, height) and
    transposes). Raises ValueError for text that is not such a list or runs past the image.
    """
    text = rle.strip()
    flat = np.zeros(height * width, dtype=np.uint8)
    if text in ("-1", ""):
        return flat.reshape(width, height).T
    numbers = [int(v) for v in text.split()]
    if len(numbers) % 2 or any(v < 0 for v in numbers):
        raise ValueError("not a list of (start, length) pairs")
    position = 0
    for start, length in zip(numbers[0::2], numbers[1::2]):
        position += start
        if position + length > flat.size:
            raise ValueError(f"a run ends at pixel {position + length}, the image has {flat.size}")
        flat[position : position + length] = 1
        position += length
    return flat.reshape(width, height).T


def encode_rle(mask: np.ndarray) -> str:
    """Inverse of ``decode_rle`` (``-1`` for an empty mask)."""
    flat = (np.asarray(mask).T.ravel() > 0).astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [0]])))
    if edges.size == 0:
        return "-1"
    starts, ends = edges[0::2], edges[1::2]
    relative = starts - np.concatenate([[0], ends[:-1]])
    return " ".join(f"{s} {e - b}" for s, b, e in zip(relative, starts, ends))


# -- loading one pair -------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Item:
    image: str
    masks: tuple[str, ...]  # mask files, or
    rle: tuple[str, ...]  # SIIM EncodedPixels rows
    patient_id: str
    binary: bool
    class_names: tuple[str, ...]
    resample: bool  # size was given: a mask of another size (same aspect ratio) is resampled
    fmt: ImageFormat


def _same_aspect(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    return abs(a[0] * b[1] - a[1] * b[0]) <= _ASPECT_TOLERANCE * a[0] * b[1]


def load_pair(item: _Item) -> Unit:
    """One image and its mask(s) -> one sample (SkipSample for a pair that cannot be used)."""
    try:
        image, meta = read_image(item.image)
    except InputError as exc:
        raise SkipSample(item.image, exc.problem) from None
    shape = image.shape[:2]
    mask: np.ndarray | None = None
    for path in item.masks:
        try:
            part = read_mask(path, binary=item.binary)
        except InputError as exc:
            raise SkipSample(path, exc.problem) from None
        if part.shape != shape and not (item.resample and _same_aspect(part.shape, shape)):
            reason = f"mask is {part.shape[0]}x{part.shape[1]}, its image {Path(item.image).name} is "
            reason += f"{shape[0]}x{shape[1]}"
            if item.resample:
                reason += " (aspect ratios differ)"
            raise SkipSample(path, reason)
        if mask is not None and part.shape != mask.shape:
            raise SkipSample(path, f"mask is {part.shape[0]}x{part.shape[1]}, the other mask {mask.shape}")
        mask = part if mask is None else np.maximum(mask, part)
    for rle in item.rle:
        try:
            part = decode_rle(rle, *shape).astype(np.int64)
        except ValueError as exc:
            raise SkipSample(item.image, f"EncodedPixels cannot be decoded ({exc})") from None
        mask = part if mask is None else np.maximum(mask, part)
    if mask is None:  # listing gives every item a mask file or an RLE row
        raise SkipSample(item.image, "no mask")
    where = item.masks[0] if item.masks else item.image
    if not item.binary and mask.max(initial=0) >= len(item.class_names):
        raise SkipSample(
            where, f"mask label {int(mask.max())} is not among the {len(item.class_names)} classes (0..K-1)"
        )
    pixels = store_image(image, meta, item.fmt, item.image)[None]
    masks = store_mask(mask, item.fmt.size, binary=item.binary, path=where)[None]
    top = int(masks.max())
    record = SampleRecord(
        item.patient_id, item.image, -1, item.class_names[min(top, len(item.class_names) - 1)]
    )
    return Unit(item.image, pixels, [record], masks=masks)


# -- listing pairs ------------------------------------------------------------------------------------
def _strip_suffix(stem: str, suffix: str) -> str:
    return stem[: -len(suffix)] if suffix and stem.endswith(suffix) else stem


def _pairs_from_folders(
    images: Path, mask_dirs: Sequence[Path], image_suffix: str, mask_suffix: str
) -> tuple[list[tuple[Path, tuple[str, ...], tuple[str, ...]]], list[Rejected]]:
    mask_index: list[dict[str, list[Path]]] = []
    mask_files: set[Path] = set()
    for folder in mask_dirs:
        if not folder.is_dir():
            raise InputError(folder, "mask folder not found")
        index: dict[str, list[Path]] = {}
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.suffix.lower() in MASK_SUFFIXES and not path.name.startswith("."):
                index.setdefault(path.stem, []).append(path)
                mask_files.add(path)
        mask_index.append(index)
    pairs, rejected = [], []
    # Images and masks may share a folder (x.tif + x_mask.tif): a mask file is not an image.
    image_files = [
        p
        for p in sorted(images.rglob("*"))
        if p.is_file() and is_image_file(p) and not (p in mask_files and p.stem.endswith(mask_suffix))
    ]
    if not image_files:
        raise InputError(images, "no image files found")
    for image in image_files:
        wanted = _strip_suffix(image.stem, image_suffix) + mask_suffix
        found = []
        for folder, index in zip(mask_dirs, mask_index):
            hits = index.get(wanted, [])
            if len(hits) != 1:
                reason = (
                    f"no mask '{wanted}.*' in {folder}"
                    if not hits
                    else f"several masks match '{wanted}' in {folder}: {hits[0].name}, {hits[1].name}"
                )
                rejected.append(Rejected(str(image), str(image), reason))
                break
            found.append(str(hits[0]))
        else:
            pairs.append((image, tuple(found), ()))
    return pairs, rejected


def _pairs_from_csv(
    table: Path, root: Path
) -> tuple[list[tuple[Path, tuple[str, ...], tuple[str, ...]]], list[Rejected]]:
    header, rows = read_csv_rows(table, allow_empty=True)
    if len(header) < 2:
        raise InputError(table, "expected a header row with image and mask columns")
    image_column = "image" if "image" in header else header[0]
    mask_column = "mask" if "mask" in header else next(c for c in header if c != image_column)
    images, masks = FileIndex(root), FileIndex(root, kind="mask")
    pairs, rejected, seen = [], [], set()
    for number, row in rows:
        where = f"{table}:{number}"
        image = images.find(row.get(image_column, ""))
        mask = masks.find(row.get(mask_column, ""))
        problem = image if isinstance(image, str) else mask if isinstance(mask, str) else None
        if problem is None and image in seen:
            problem = f"image '{row[image_column]}' is listed again"
        if problem is not None:
            rejected.append(Rejected(where, where, problem))
            continue
        seen.add(image)
        pairs.append((image, (str(mask),), ()))
    return pairs, rejected


def _pairs_from_rle(
    table: Path, root: Path
) -> tuple[list[tuple[Path, tuple[str, ...], tuple[str, ...]]], list[Rejected]]:
    header, rows = read_csv_rows(table, allow_empty=True)
    for column in ("ImageId", "EncodedPixels"):
        if column not in header:
            raise InputError(table, f"no '{column}' column (expected SIIM's train-rle.csv layout)")
    encodings: dict[str, list[str]] = {}
    first_line: dict[str, int] = {}
    for number, row in rows:
        encodings.setdefault(row["ImageId"], []).append(row["EncodedPixels"])
        first_line.setdefault(row["ImageId"], number)
    index = FileIndex(root, by_stem=True)
    pairs, rejected = [], []
    for image_id, rles in encodings.items():
        where = f"{table}:{first_line[image_id]}"
        found = index.find(image_id)
        if isinstance(found, str):
            rejected.append(Rejected(where, where, found))
        else:
            pairs.append((found, (), tuple(rles)))
    return pairs, rejected


def convert_seg_pairs(
    images: str | Path,
    out: str | Path,
    *,
    masks: Sequence[str | Path] = (),
    pairs_csv: str | Path | None = None,
    rle_csv: str | Path | None = None,
    image_suffix: str = "",
    mask_suffix: str = "",
    binary: bool = True,
    class_names: Sequence[str] | None = None,
    patient_regex: str | None = None,
    size: int | Sequence[int] | None = None,
    channels: int | None = None,
    dtype: str = "float16",
    intensity: str = "auto",
    workers: int = 1,
    strict: bool = False,
    overwrite: bool = False,
    wait: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> PrepareSummary:
    """Convert image/mask pairs (from ``masks`` folders, ``pairs_csv`` or ``rle_csv``) into a store."""
    sources = [bool(masks), pairs_csv is not None, rle_csv is not None]
    if sum(sources) != 1:
        raise ConfigError("give exactly one mask source: mask folder(s), a pairs CSV or an RLE CSV")
    if binary:
        names = tuple(class_names) if class_names else BINARY_CLASSES
        if len(names) != 2:
            raise ConfigError(f"binary masks have 2 classes (background, foreground), got {len(names)}")
    else:
        if not class_names or len(class_names) < 2:
            raise ConfigError("masks with label values need the class names of values 0..K-1 (K >= 2)")
        names = tuple(class_names)
        if len(names) > 256:
            raise ConfigError("masks are stored as uint8: at most 256 classes")
    check_choices(dtype, intensity, channels)
    out = check_output(out, overwrite, [images, *masks, pairs_csv, rle_csv])
    root = Path(images).resolve()
    if not root.is_dir():
        raise InputError(root, "image folder not found")
    regex = compile_patient_regex(patient_regex)
    if masks:
        pairs, rejected = _pairs_from_folders(
            root, [Path(m).resolve() for m in masks], image_suffix, mask_suffix
        )
    else:
        table = Path(pairs_csv if pairs_csv is not None else rle_csv).resolve()  # type: ignore[arg-type]
        if not table.is_file():
            raise InputError(table, "file not found")
        pairs, rejected = (_pairs_from_csv if pairs_csv is not None else _pairs_from_rle)(table, root)
    stop_if_strict(rejected, strict)
    items = []
    for image, mask_files, rles in pairs:
        patient = patient_from_name(image.name, regex)
        if patient is None:
            reason = f"file name does not match the patient regex {patient_regex!r}"
            rejected.append(Rejected(str(image), str(image), reason))
            continue
        items.append((image, mask_files, rles, patient))
    stop_if_strict(rejected, strict)
    if not items:
        raise InputError(root, f"no image/mask pair could be used ({len(rejected)} rejected)")
    fmt = decide_format(
        (p for p, *_ in items),
        size=size,
        channels=channels,
        dtype=dtype,
        intensity=intensity,
        root=root,
        progress=progress,
    )
    resample = size is not None
    jobs = [
        Job(
            str(image),
            _Item(str(image), m, r, pid, binary, names, resample, fmt),
            path=str(image),
            files=(str(image), *m),
        )
        for image, m, r, pid in items
    ]
    return write_store(
        out,
        jobs,
        load_pair,
        rejected=rejected,
        task="segmentation",
        fmt=fmt,
        class_names=names,
        mask_shape=(1, *fmt.size),
        mask_names=[names[1] if binary else "label"],
        source={
            "converter": "seg",
            "root": str(root),
            "masks": [str(Path(m).resolve()) for m in masks],
            "pairs_csv": None if pairs_csv is None else str(pairs_csv),
            "rle_csv": None if rle_csv is None else str(rle_csv),
            "image_suffix": image_suffix,
            "mask_suffix": mask_suffix,
            "binary": binary,
            "patient_regex": patient_regex,
        },
        workers=workers,
        strict=strict,
        overwrite=overwrite,
        wait=wait,
        listing=[Path(t) for t in (pairs_csv, rle_csv) if t is not None],
        progress=progress,
        description="prepare seg",
    )
