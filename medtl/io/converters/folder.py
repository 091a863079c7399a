"""One sub-folder per class (``medtl prepare folder``): Kaggle brain-tumour MRI, HMS, BreakHis, ...

Each root holds one folder per class; files are found recursively below a class folder (BreakHis
nests ``benign/SOB/adenosis/<slide>/40X/*.png``), and several roots are merged by class name
(Kaggle's ``Training`` and ``Testing``). Images may be PNG, JPEG, TIFF, BMP, GIF or DICOM.

* Classes are the folder names, sorted; ``include`` / ``exclude`` select them by name.
* A selected class whose folders hold no image file is left out of the class list and recorded
  in prepare_report.json (``strict``: an error); when no class is left, the conversion fails.
* A broken symbolic link in a class folder is recorded in prepare_report.json (``strict``: an
  error): a dataset assembled from links loses samples silently otherwise.
* Patient ids come from ``patient_regex`` applied to the file name (named group ``patient``,
  else the first group, else the whole match); a file it does not match is skipped, since
  guessing would put one patient on both sides of a split. Without a regex: the file stem.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medtl.errors import InputError, SkipSample, UnknownChoiceError
from medtl.io.converters.common import (
    ImageFormat,
    Rejected,
    check_choices,
    check_output,
    compile_patient_regex,
    decide_format,
    patient_from_name,
    stop_if_strict,
    store_image,
    write_store,
)
from medtl.io.prepare import Job, PrepareSummary, Unit
from medtl.io.readers import is_image_file, read_image
from medtl.io.store import SampleRecord
from medtl.progress import NULL_PROGRESS, Progress


@dataclass(frozen=True)
class _Item:
    path: str
    label: int
    class_name: str
    patient_id: str
    fmt: ImageFormat


def find_class_folders(roots: Sequence[str | Path]) -> dict[str, list[Path]]:
    """Class name -> its folders in every root, sorted by class name."""
    classes: dict[str, list[Path]] = {}
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise InputError(root, "not a directory")
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            raise InputError(root, "no class sub-folders (expected one folder per class)")
        for folder in folders:
            classes.setdefault(folder.name, []).append(folder)
    return dict(sorted(classes.items()))


def select_classes(
    names: Sequence[str], include: Sequence[str] | None, exclude: Sequence[str] | None
) -> list[str]:
    for name in [*(include or ()), *(exclude or ())]:
        if name not in names:
            raise UnknownChoiceError("class", name, names)
    chosen = [n for n in names if not include or n in include]
    return [n for n in chosen if n not in (exclude or ())]


def _image_files(folders: Sequence[Path]) -> tuple[list[Path], list[Rejected]]:
    """Image files below the class folders, and the broken links among them."""
    files, broken = [], []
    for folder in folders:
        for path in sorted(folder.rglob("*")):
            # hidden folders hold copies (.ipynb_checkpoints) or OS metadata, not samples
            if any(part.startswith(".") for part in path.relative_to(folder).parts):
                continue
            if path.is_symlink() and not path.exists():
                target = os.readlink(path)
                broken.append(Rejected(str(path), str(path), f"broken symbolic link (to {target}, missing)"))
            elif path.is_file() and is_image_file(path):
                files.append(path)
    return files, broken


def load_folder_image(item: _Item) -> Unit:
    """One image file -> one sample (SkipSample when it cannot be read or scaled)."""
    try:
        image, meta = read_image(item.path)
    except InputError as exc:
        raise SkipSample(item.path, exc.problem) from None
    pixels = store_image(image, meta, item.fmt, item.path)[None]
    record = SampleRecord(item.patient_id, item.path, -1, item.class_name)
    return Unit(item.path, pixels, [record], labels=np.array([item.label], dtype=np.int64))


def convert_folder(
    roots: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] | None = None,
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
    """Convert class folders under one or more ``roots`` into a classification store at ``out``.

    ``channels`` None: 3 when any image is colour, else 1.
    """
    check_choices(dtype, intensity, channels)
    roots = [Path(roots)] if isinstance(roots, (str, Path)) else [Path(r) for r in roots]
    out = check_output(out, overwrite, roots)
    roots = list(dict.fromkeys(r.resolve() for r in roots))
    regex = compile_patient_regex(patient_regex)
    folders = find_class_folders(roots)
    rejected: list[Rejected] = []
    files: dict[str, list[Path]] = {}
    for name in select_classes(list(folders), include, exclude):
        found, broken = _image_files(folders[name])
        rejected.extend(broken)
        if found:
            files[name] = found
        else:
            where = folders[name][0]
            rejected.append(Rejected(f"class:{name}", str(where), "class folder has no image files"))
    if not files:
        raise InputError(roots[0], "no selected class folder holds image files")
    stop_if_strict(rejected, strict)
    class_names = list(files)
    items: list[tuple[Path, int, str, str]] = []
    for label, name in enumerate(class_names):
        for path in files[name]:
            patient = patient_from_name(path.name, regex)
            if patient is None:
                reason = f"file name does not match the patient regex {patient_regex!r}"
                rejected.append(Rejected(str(path), str(path), reason))
            else:
                items.append((path, label, name, patient))
    stop_if_strict(rejected, strict)
    fmt = decide_format(
        (p for p, *_ in items),
        size=size,
        channels=channels,
        dtype=dtype,
        intensity=intensity,
        root=roots[0],
        progress=progress,
    )
    jobs = [Job(str(p), _Item(str(p), label, name, pid, fmt), path=str(p)) for p, label, name, pid in items]
    return write_store(
        out,
        jobs,
        load_folder_image,
        rejected=rejected,
        task="classification",
        fmt=fmt,
        class_names=class_names,
        label_shape=(),
        source={
            "converter": "folder",
            "root": str(roots[0]),
            "roots": [str(r) for r in roots],
            "include": list(include or []),
            "exclude": list(exclude or []),
            "patient_regex": patient_regex,
        },
        workers=workers,
        strict=strict,
        overwrite=overwrite,
        wait=wait,
        progress=progress,
        description="prepare folder",
    )
