"""BraTS 2020/2021 volumes -> a store of 2-D slices (``medtl prepare brats``).

Layout: one folder per subject holding ``<subject>_{t1,t1ce,t2,flair,seg}.nii[.gz]``; grades come
from ``name_mapping.csv`` (BraTS 2020) when grade labels are asked for. Every subject is one job,
read by ``load_subject`` in a worker process: memory per worker is bounded by one subject.

Per subject: read the requested modalities (reoriented to canonical RAS), check them (shapes,
NaN/Inf, label values), fit the intensity normalisation on each whole volume, select slices
along the slice axis, then normalise, resize and cast only the selected slices.
"""

from __future__ import annotations

import csv
import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from medtl.errors import ConfigError, InputError, SkipSample, UnknownChoiceError
from medtl.io import nifti, normalise
from medtl.io.paths import STORE, guard_output
from medtl.io.prepare import Job, PrepareSummary, Unit, convert
from medtl.io.store import SampleRecord, StoreWriter
from medtl.progress import NULL_PROGRESS, Progress

log = logging.getLogger("medtl")

MODALITIES = ("t1", "t1ce", "t2", "flair")
SLICE_SELECTIONS = ("tumour", "all")
LABELS = ("grade", "tumour", "mask", "regions")
DTYPES = ("float16", "uint8")
GRADE_CLASSES = ("LGG", "HGG")  # label 0 = LGG, 1 = HGG, as in the study
TUMOUR_CLASSES = ("no-tumour", "tumour")
RAW_LABELS = (0, 1, 2, 4)
RAW_LABEL_NAMES = ("background", "NCR/NET", "ED", "ET")
# BraTS evaluation regions: enhancing tumour, tumour core, whole tumour.
REGIONS = {"ET": (4,), "TC": (1, 4), "WT": (1, 2, 4)}
NAME_MAPPING = "name_mapping.csv"


@dataclass(frozen=True)
class BratsOptions:
    """What to take from each subject and how to store it."""

    modalities: tuple[str, ...] = ("t1",)  # several become channels, in this order
    axis: str = "axial"  # axial | coronal | sagittal, after reorientation to canonical RAS
    slices: str = "tumour"  # tumour: slices with >= min_tumour_area tumour pixels | all
    min_tumour_area: int = 1
    labels: str = "grade"  # grade | tumour (present/absent) | mask (0/1/2/4) | regions (ET/TC/WT)
    normalisation: str = "study-range"
    size: int | None = None  # resize slices to size x size; None keeps them
    dtype: str = "float16"

    def __post_init__(self) -> None:
        modalities = tuple(self.modalities)
        if not modalities:
            raise ConfigError("at least one modality is needed")
        for modality in modalities:
            if modality not in MODALITIES:
                raise UnknownChoiceError("modality", modality, MODALITIES)
        if len(set(modalities)) != len(modalities):
            raise ConfigError(f"modalities repeat: {','.join(modalities)}")
        object.__setattr__(self, "modalities", modalities)
        nifti.slice_axis(self.axis)
        for kind, value, choices in (
            ("slice selection", self.slices, SLICE_SELECTIONS),
            ("label kind", self.labels, LABELS),
            ("dtype", self.dtype, DTYPES),
        ):
            if value not in choices:
                raise UnknownChoiceError(kind, value, choices)
        normalise.check_normalisation(self.normalisation)
        if self.min_tumour_area < 1:
            raise ConfigError(f"minimum tumour area must be >= 1 pixel, got {self.min_tumour_area}")
        if self.size is not None and self.size < 1:
            raise ConfigError(f"size must be a positive number of pixels, got {self.size}")
        if self.labels == "tumour" and self.slices == "tumour":
            # Every tumour slice would be labelled "tumour": a one-class dataset.
            raise ConfigError("tumour present/absent labels need all slices (--slices all)")

    @property
    def needs_seg(self) -> bool:
        return self.slices == "tumour" or self.labels != "grade"

    @property
    def task(self) -> str:
        return "segmentation" if self.labels in ("mask", "regions") else "classification"

    @property
    def class_names(self) -> tuple[str, ...]:
        return {
            "grade": GRADE_CLASSES,
            "tumour": TUMOUR_CLASSES,
            "mask": RAW_LABEL_NAMES,
            "regions": tuple(REGIONS),
        }[self.labels]


@dataclass(frozen=True)
class BratsSubject:
    """One subject folder: the files found for each modality (and ``seg``), and its grade."""

    name: str
    folder: str
    files: dict[str, str] = field(default_factory=dict)
    grade: str | None = None  # as written in name_mapping.csv; None when not listed


# -- discovering subjects ------------------------------------------------------------------------
def _modality_of(name: str) -> str | None:
    stem = nifti.nifti_stem(name).lower()
    for key in (*MODALITIES, "seg"):
        if stem.endswith("_" + key):
            return key
    return None


def find_subjects(root: str | Path) -> list[BratsSubject]:
    """Subject folders under ``root`` (those holding NIfTI files), sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "not a directory")
    subjects = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files: dict[str, str] = {}
        niftis = sorted(p for p in folder.iterdir() if p.is_file() and nifti.is_nifti(p))
        for path in niftis:
            key = _modality_of(path.name)
            if key is not None and key not in files:
                files[key] = str(path)
        if "seg" not in files:
            # BraTS 2020 ships one subject (355) whose mask is named e.g. W39_1998.09.19_Segm.nii.
            segs = [p for p in niftis if "seg" in p.name.lower() and _modality_of(p.name) is None]
            if len(segs) == 1:
                files["seg"] = str(segs[0])
        if niftis:
            subjects.append(BratsSubject(folder.name, str(folder), files))
        else:
            log.debug("%s: no NIfTI files, not a subject folder", folder)
    if not subjects:
        raise InputError(
            root, "no BraTS subject folders found (expected <root>/<subject>/<subject>_t1.nii.gz, ...)"
        )
    return subjects


def read_name_mapping(path: str | Path) -> dict[str, str]:
    """Subject -> grade from a BraTS ``name_mapping.csv``.

    The subject column is the newest ``BraTS_<year>_subject_ID`` column (BraTS 2020 lists the
    2017-2020 ids side by side), so the ids match the folder names of that release.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(path, f"cannot be read ({exc})") from None
    columns = list(rows[0]) if rows else []
    grade_col = next((c for c in columns if c and c.strip().lower() == "grade"), None)
    id_cols = sorted(
        (c for c in columns if c and re.fullmatch(r"BraTS_?\d{4}_subject_ID", c.strip(), re.IGNORECASE)),
        key=lambda c: re.findall(r"\d{4}", c)[0],
    )
    if grade_col is None or not id_cols:
        raise InputError(
            path, f"needs a Grade column and a BraTS_<year>_subject_ID column, found {', '.join(columns)}"
        )
    id_col = id_cols[-1]
    return {row[id_col].strip(): (row[grade_col] or "").strip() for row in rows if row.get(id_col)}


# -- loading one subject (runs in a worker process) ----------------------------------------------
def _skip_on_input_error(exc: InputError) -> SkipSample:
    return SkipSample(exc.path if exc.path is not None else "", exc.problem)


def _slices(volume: np.ndarray, index: np.ndarray, axis: int) -> np.ndarray:
    """Slices ``index`` along ``axis`` as (n, H, W).

    Fancy indexing keeps NIfTI's column-major blocks intact, which is over 10x faster than
    ``np.take`` on these arrays; the transpose to (n, H, W) is left to the next copy.
    """
    where: list[slice | np.ndarray] = [slice(None)] * 3
    where[axis] = index
    return np.moveaxis(volume[tuple(where)], axis, 0)


def _unexpected_labels(seg: np.ndarray) -> list[int]:
    """Label values other than 0/1/2/4 (checked with two reductions; np.unique sorts the volume)."""
    top = int(seg.max()) if seg.size else 0
    if top <= 2 or (top == 4 and not np.any(seg == 3)):
        return []
    return sorted(set(np.unique(seg).tolist()) - set(RAW_LABELS))


def load_subject(
    subject: BratsSubject, options: BratsOptions, slice_shape: tuple[int, int], root: str = ""
) -> Unit | None:
    """Read one subject and return its selected slices in store layout (None when none is selected).

    Bad input raises SkipSample naming the file and the problem.
    """
    wanted = list(options.modalities) + (["seg"] if options.needs_seg else [])
    missing = [m for m in wanted if m not in subject.files]
    if missing:
        names = ", ".join(f"{subject.name}_{m}.nii[.gz]" for m in missing)
        raise SkipSample(subject.folder, f"missing {'/'.join(missing)} (no {names})")
    grade = None
    if options.labels == "grade":
        if subject.grade is None:
            raise SkipSample(subject.folder, f"subject {subject.name} is not listed in {NAME_MAPPING}")
        if subject.grade not in GRADE_CLASSES:
            raise SkipSample(
                subject.folder, f"unknown grade '{subject.grade}' in {NAME_MAPPING} (expected HGG or LGG)"
            )
        grade = GRADE_CLASSES.index(subject.grade)

    axis = nifti.slice_axis(options.axis)
    try:
        volumes, intensities = [], []
        for modality in options.modalities:
            path = subject.files[modality]
            # Stored dtype (int16 in BraTS): only the selected slices are converted to float32.
            volume = nifti.read_volume(path, dtype=None)
            if volumes and volume.shape != volumes[0].shape:
                raise InputError(
                    path, f"shape {volume.shape} differs from {options.modalities[0]}'s {volumes[0].shape}"
                )
            lo_hi = nifti.check_finite(volume, path)
            try:
                intensities.append(normalise.fit_intensity(volume, options.normalisation, lo_hi))
            except ValueError as exc:
                raise InputError(path, str(exc)) from None
            volumes.append(volume)
        seg = None
        if options.needs_seg:
            seg_path = subject.files["seg"]
            seg = nifti.read_label_volume(seg_path)
            if seg.shape != volumes[0].shape:
                raise InputError(
                    seg_path,
                    f"segmentation shape {seg.shape} differs from image shape {volumes[0].shape} "
                    f"({Path(subject.files[options.modalities[0]]).name})",
                )
            unexpected = _unexpected_labels(seg)
            if unexpected:
                raise InputError(
                    seg_path, f"unexpected label values {unexpected} (BraTS labels are 0, 1, 2, 4)"
                )
    except InputError as exc:
        raise _skip_on_input_error(exc) from None

    plane = tuple(s for i, s in enumerate(volumes[0].shape) if i != axis)
    out_shape = (options.size, options.size) if options.size else plane
    if out_shape != tuple(slice_shape):
        raise SkipSample(
            subject.files[options.modalities[0]],
            f"slice shape {plane} differs from the store's {tuple(slice_shape)}; pass --size to resize",
        )

    others = tuple(i for i in range(3) if i != axis)
    area = np.count_nonzero(seg, axis=others) if seg is not None else None
    if options.slices == "tumour":
        index = np.flatnonzero(area >= options.min_tumour_area)
    else:
        index = np.arange(volumes[0].shape[axis])
    if index.size == 0:
        return None

    images = np.empty((index.size, len(volumes), *out_shape), dtype=options.dtype)
    for c, (volume, intensity) in enumerate(zip(volumes, intensities)):
        if options.dtype == "float16":
            _check_fits_float16(intensity, subject.files[options.modalities[c]], options.normalisation)
        image = intensity.apply(_slices(volume, index, axis))
        if options.size:
            image = normalise.resize_images(image, out_shape)
        if options.dtype == "uint8":
            image = normalise.to_uint8(image, intensity.range)
        images[:, c] = image  # casts to the store dtype in the same pass

    labels = masks = None
    if options.labels == "grade":
        labels = np.full(index.size, grade, dtype=np.int64)
        names = [GRADE_CLASSES[grade]] * index.size
    elif options.labels == "tumour":
        labels = (area[index] >= options.min_tumour_area).astype(np.int64)
        names = [TUMOUR_CLASSES[v] for v in labels]
    else:
        raw = _slices(seg, index, axis)
        if options.size:
            raw = normalise.resize_masks(raw, out_shape)
        if options.labels == "mask":
            masks = raw[:, None]
        else:
            masks = np.stack([np.isin(raw, values) for values in REGIONS.values()], axis=1)
        masks = masks.astype(np.uint8)
        names = ["mask"] * index.size

    first = Path(subject.files[options.modalities[0]])
    source = str(first.relative_to(root)) if root and first.is_relative_to(root) else str(first)
    samples = [SampleRecord(subject.name, source, int(k), name) for k, name in zip(index.tolist(), names)]
    return Unit(subject.name, images, samples, labels, masks)


_FLOAT16_MAX = float(np.finfo(np.float16).max)


def _check_fits_float16(intensity: normalise.Intensity, path: str, method: str) -> None:
    """SkipSample when the normalised volume reaches values float16 cannot hold (they become Inf).

    study-range divides by (max - min) without subtracting the minimum: a volume at 100000 + [0, 1]
    lands at 100000.
    """
    top = max(abs(v) for v in intensity.range)
    if top > _FLOAT16_MAX:
        raise SkipSample(
            path,
            f"{method} normalisation gives values up to {top:.4g}, beyond float16's {_FLOAT16_MAX:g}; "
            "use --norm minmax (or zscore/percentile)",
        )


def _load_job(payload: tuple[BratsSubject, BratsOptions, tuple[int, int], str]) -> Unit | None:
    return load_subject(*payload)


# -- the converter -------------------------------------------------------------------------------
def _slice_shape(root: Path, subjects: Sequence[BratsSubject], options: BratsOptions) -> tuple[int, int]:
    """The store's slice shape: --size, else the slice shape most subjects have.

    Only headers are read. A subject of another shape is skipped (and reported) when it is loaded;
    taking the first subject's shape would let one odd subject turn every other one away.
    Ties go to the shape seen first.
    """
    if options.size:
        return options.size, options.size
    axis = nifti.slice_axis(options.axis)
    shapes: Counter[tuple[int, int]] = Counter()
    for subject in subjects:
        path = subject.files.get(options.modalities[0])
        if path is None:
            continue
        try:
            shape = nifti.canonical_shape(path)
        except InputError:
            continue  # reported when the subject itself is loaded
        plane = [s for i, s in enumerate(shape) if i != axis]
        shapes[(plane[0], plane[1])] += 1
    if not shapes:
        raise InputError(root, f"no subject has a readable {options.modalities[0]} volume")
    return shapes.most_common(1)[0][0]


def _subject_files(subject: BratsSubject, options: BratsOptions) -> tuple[str, ...]:
    wanted = [*options.modalities, *(["seg"] if options.needs_seg else [])]
    return tuple(subject.files[m] for m in wanted if m in subject.files)


def convert_brats(
    root: str | Path,
    out: str | Path,
    options: BratsOptions | None = None,
    *,
    name_mapping: str | Path | None = None,
    workers: int = 1,
    strict: bool = False,
    overwrite: bool = False,
    wait: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> PrepareSummary:
    """Convert a BraTS 2020/2021 folder into a store at ``out``.

    ``name_mapping`` defaults to ``<root>/name_mapping.csv``; it is required for grade labels.
    """
    options = options or BratsOptions()
    guard_output(out, STORE, inputs=[root, name_mapping], overwrite=overwrite)  # before any reading
    root = Path(root).resolve()
    listing: list[Path] = []
    subjects = find_subjects(root)
    if options.labels == "grade":
        mapping_path = Path(name_mapping) if name_mapping else root / NAME_MAPPING
        if not mapping_path.is_file():
            raise InputError(
                mapping_path,
                "not found; grade labels need it (or choose --labels tumour, mask or regions)",
            )
        grades = read_name_mapping(mapping_path)
        listing.append(mapping_path)
        subjects = [BratsSubject(s.name, s.folder, s.files, grades.get(s.name)) for s in subjects]
    slice_shape = _slice_shape(root, subjects, options)
    channels = len(options.modalities)
    task = options.task
    writer = StoreWriter(
        out,
        task=task,
        image_shape=(channels, *slice_shape),
        class_names=options.class_names,
        dtype=options.dtype,
        label_shape=() if task == "classification" else None,
        mask_shape=(1 if options.labels == "mask" else len(REGIONS), *slice_shape)
        if task == "segmentation"
        else None,
        mask_names={"mask": ["BraTS label (0/1/2/4)"], "regions": list(REGIONS)}.get(options.labels),
        normalisation=options.normalisation,
        source={
            "converter": "brats",
            "root": str(root),
            "subjects": len(subjects),
            "modalities": list(options.modalities),
            **{k: v for k, v in asdict(options).items() if k not in ("modalities", "dtype")},
        },
        overwrite=overwrite,
        inputs={s.name: _subject_files(s, options) for s in subjects},
        listing=listing,
        wait=wait,
    )
    jobs = [Job(s.name, (s, options, slice_shape, str(root)), path=s.folder) for s in subjects]
    with writer:
        return convert(
            jobs,
            _load_job,
            writer,
            workers=workers,
            strict=strict,
            progress=progress,
            description="prepare brats",
        )
