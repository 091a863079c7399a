"""Figshare CE-MRI brain-tumour dataset (``medtl prepare ce-mri``).

3064 T1 contrast-enhanced slices from 233 patients, one MATLAB v7.3 (HDF5) file per slice with a
struct ``cjdata``: ``image`` (int16, mostly 512x512, a few 256x256), ``label`` (1 meningioma,
2 glioma, 3 pituitary), ``PID`` (patient id as a char array), ``tumorBorder`` and ``tumorMask``.
The Figshare archive splits the files over four folders and adds ``cvind.mat`` (the authors'
cross-validation indices), which is not an image and is left out.

Every image is labelled by its own ``label`` value (the study's notebook tested ``label == 1``
for every class, which put all images in one class). Task ``classification`` stores the class;
``segmentation`` stores ``tumorMask`` (binary) and keeps the tumour type in samples.csv.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medtl.errors import InputError, SkipSample, UnknownChoiceError
from medtl.io.converters.common import (
    ImageFormat,
    check_choices,
    check_output,
    decide_format,
    store_image,
    store_mask,
    write_store,
)
from medtl.io.prepare import Job, PrepareSummary, Unit
from medtl.io.readers import ImageMeta, mat_shape, read_mat
from medtl.io.store import SampleRecord
from medtl.progress import NULL_PROGRESS, Progress

CLASSES = ("meningioma", "glioma", "pituitary")  # label values 1, 2, 3
TASKS = ("classification", "segmentation")
IMAGE, LABEL, PID, MASK = "cjdata/image", "cjdata/label", "cjdata/PID", "cjdata/tumorMask"
NOT_IMAGES = ("cvind.mat",)
_META = ImageMeta("mat", 1, None)  # int16 MRI: no nominal range, scaled per image


@dataclass(frozen=True)
class _Item:
    path: str
    task: str
    fmt: ImageFormat


def find_mat_files(roots: Sequence[str | Path]) -> list[Path]:
    """Every ``*.mat`` below the roots (sorted per root), without the dataset's index file."""
    files: list[Path] = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise InputError(root, "not a directory")
        found = sorted(p for p in root.rglob("*.mat") if p.name.lower() not in NOT_IMAGES)
        if not found:
            raise InputError(root, "no .mat files found (expected the Figshare CE-MRI files, e.g. 1.mat)")
        files.extend(found)
    return files


def _patient_id(value: object, path: str) -> str:
    if isinstance(value, str):
        pid = value
    else:  # char data saved without its MATLAB_class attribute: decode the codes ourselves
        codes = np.asarray(value).ravel()
        if codes.dtype.kind not in "iu":
            raise SkipSample(path, f"cjdata/PID is not text (dtype {codes.dtype})")
        pid = "".join(chr(int(c)) for c in codes if int(c))
    pid = pid.strip()
    if not pid:
        raise SkipSample(path, "cjdata/PID is empty")
    return pid


def load_ce_mri(item: _Item) -> Unit:
    """One .mat file -> one sample (SkipSample for a file that cannot be used)."""
    names = [IMAGE, LABEL, PID] + ([MASK] if item.task == "segmentation" else [])
    try:
        data = read_mat(item.path, names)
    except InputError as exc:
        raise SkipSample(item.path, exc.problem) from None
    image = np.asarray(data[IMAGE], dtype=np.float32)
    if image.ndim != 2:
        raise SkipSample(item.path, f"cjdata/image has shape {image.shape}, expected a 2-D slice")
    raw_label = data[LABEL]
    values = np.asarray(raw_label).ravel() if not isinstance(raw_label, str) else np.array([])
    label = float(values[0]) if values.size == 1 and values.dtype.kind in "iuf" else None
    if label not in (1.0, 2.0, 3.0):
        shown = raw_label if isinstance(raw_label, str) else values.tolist()
        raise SkipSample(
            item.path, f"cjdata/label is {shown}, expected 1 (meningioma), 2 (glioma) or 3 (pituitary)"
        )
    label = int(label)
    class_name = CLASSES[label - 1]
    record = SampleRecord(_patient_id(data[PID], item.path), item.path, -1, class_name)
    pixels = store_image(image, _META, item.fmt, item.path)[None]
    if item.task == "classification":
        return Unit(item.path, pixels, [record], labels=np.array([label - 1], dtype=np.int64))
    mask = np.asarray(data[MASK])
    if mask.shape != image.shape:
        raise SkipSample(item.path, f"cjdata/tumorMask is {mask.shape}, cjdata/image is {image.shape}")
    masks = store_mask(mask, item.fmt.size, binary=True, path=item.path)[None]
    return Unit(item.path, pixels, [record], masks=masks)


def _probe(path: Path) -> tuple[int, int, int]:
    shape = mat_shape(path, IMAGE)
    return (shape[0], shape[1], 1) if len(shape) == 2 else (0, 0, 0)


def convert_ce_mri(
    roots: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    task: str = "classification",
    size: int | Sequence[int] | None = None,
    channels: int = 1,
    dtype: str = "float16",
    intensity: str = "auto",
    workers: int = 1,
    strict: bool = False,
    overwrite: bool = False,
    wait: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> PrepareSummary:
    """Convert the CE-MRI ``.mat`` files under ``roots`` (searched recursively) into a store at ``out``.

    The dataset mixes 512x512 and 256x256 images, so the full set needs ``size``.
    """
    if task not in TASKS:
        raise UnknownChoiceError("task", task, TASKS)
    check_choices(dtype, intensity, channels)
    roots = [Path(roots)] if isinstance(roots, (str, Path)) else [Path(r) for r in roots]
    out = check_output(out, overwrite, roots)
    roots = [r.resolve() for r in roots]
    files = find_mat_files(roots)
    fmt = decide_format(
        files,
        size=size,
        channels=channels,
        dtype=dtype,
        intensity=intensity,
        root=roots[0],
        probe=_probe,
        progress=progress,
    )
    jobs = [Job(str(p), _Item(str(p), task, fmt), path=str(p)) for p in files]
    segmentation = task == "segmentation"
    return write_store(
        out,
        jobs,
        load_ce_mri,
        task=task,
        fmt=fmt,
        class_names=("background", "tumour") if segmentation else CLASSES,
        label_shape=None if segmentation else (),
        mask_shape=(1, *fmt.size) if segmentation else None,
        mask_names=["tumour"] if segmentation else None,
        source={"converter": "ce-mri", "root": str(roots[0]), "roots": [str(r) for r in roots], "task": task},
        workers=workers,
        strict=strict,
        overwrite=overwrite,
        wait=wait,
        progress=progress,
        description="prepare ce-mri",
    )
