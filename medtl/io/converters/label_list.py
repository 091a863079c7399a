"""Label lists -> a store (``medtl prepare list``): ChestX-ray14, CheXpert, simple CSV (Shenzhen).

Formats (``list_format="auto"`` picks one from the file):

* ``nih-list``: ChestX-ray14 lists, one image per line, ``filename l1 ... l14`` separated by
  spaces, the 14 findings in the official order (``NIH_CLASSES``). Task ``multilabel``.
* ``nih-csv``: ChestX-ray14 ``Data_Entry_2017.csv``; ``Finding Labels`` joined by ``|``,
  ``No Finding`` = all zeros; patient id from ``Patient ID``. Task ``multilabel``.
* ``chexpert``: CheXpert ``train.csv`` / ``valid.csv`` (``Path`` + 14 observation columns with
  1 positive, 0 negative, -1 uncertain, empty = not mentioned = 0). Uncertain labels follow
  ``uncertainty``: ``ones`` (U -> 1), ``zeros`` (U -> 0), ``ignore`` (U -> -1 is stored: losses
  and metrics must mask targets < 0), ``lsr-ones`` (U ~ Uniform(0.55, 0.85)), ``lsr-zeros``
  (U ~ Uniform(0, 0.3)); the draws are seeded per row, so they do not depend on worker count.
  Patient id from the ``patientNNNNN`` folder of the path. Task ``multilabel``.
* ``csv``: a header row, the image in the first column (or one named image/filename/file/
  name/path), the label in the second (or ``label``). Classes are ``classes`` in that order
  (a label may then also be a 0-based index into them), else the sorted distinct labels.
  Task ``classification``.

Multi-label labels are float32 ``(N, K)`` in the order of ``classes`` (default: all 14; a subset
selects columns). A patient column (``Patient ID``, ``patient_id``, ...) gives patient ids when
present; ``patient_regex`` on the file name overrides it. Names are resolved under ``images``
(default: the list's folder), directly or, when not there, anywhere below it by file name
(ChestX-ray14 spreads its images over ``images_001/images`` ... ``images_012/images``).
``subset`` keeps only the images named in a text file (the official ``train_val_list.txt``).
A row whose label is not valid, or whose image is missing, is skipped and recorded.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medtl.errors import ConfigError, InputError, SkipSample, UnknownChoiceError, did_you_mean
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
    write_store,
)
from medtl.io.prepare import Job, PrepareSummary, Unit
from medtl.io.readers import read_image
from medtl.io.store import SampleRecord
from medtl.progress import NULL_PROGRESS, Progress

NIH_CLASSES = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
NIH_NO_FINDING = "No Finding"
CHEXPERT_CLASSES = (
    "No Finding",
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
)
FORMATS = ("auto", "nih-list", "nih-csv", "chexpert", "csv")
UNCERTAINTY = ("ones", "zeros", "ignore", "lsr-ones", "lsr-zeros")
IGNORED = -1.0  # stored for uncertain labels with uncertainty="ignore"; losses must mask it
LSR_RANGES = {"lsr-ones": (0.55, 0.85), "lsr-zeros": (0.0, 0.3)}
IMAGE_COLUMNS = ("image", "filename", "file", "name", "path", "Image Index")
PATIENT_COLUMNS = ("Patient ID", "patient_id", "patient", "PatientID", "patient id")
# Patient ids the file names carry: ChestX-ray14 "00000001_000.png", CheXpert ".../patient00001/...".
_NAME_PATIENT = {"nih-list": re.compile(r"^(\d+)_"), "chexpert": re.compile(r"(patient\d+)")}


@dataclass(frozen=True)
class _Entry:
    where: str  # "list.csv:12", named in skip reports
    name: str  # as written in the list
    label: Any  # class index (csv) or float vector (multi-label)
    patient: str | None = None


@dataclass(frozen=True)
class _Item:
    path: str
    label: Any
    label_text: str
    patient_id: str
    task: str
    fmt: ImageFormat


# -- reading the list ------------------------------------------------------------------------------
def detect_format(path: str | Path) -> str:
    """The list format of ``path`` from its header (see the module docstring)."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8-sig") as fh:
            first = fh.readline()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot be read ({exc})") from None
    if "," not in first:
        return "nih-list"
    header = {h.strip() for h in first.split(",")}
    if "Finding Labels" in header:
        return "nih-csv"
    if "Path" in header and header & set(CHEXPERT_CLASSES):
        return "chexpert"
    return "csv"


def _select(classes: Sequence[str] | None, known: Sequence[str], kind: str) -> list[str]:
    if classes is None:
        return list(known)
    for name in classes:
        if name not in known:
            raise UnknownChoiceError(kind, name, known)
    return list(classes)


def _patient_column(header: Sequence[str]) -> str | None:
    return next((c for c in PATIENT_COLUMNS if c in header), None)


def _parse_nih_list(path: Path, classes: list[str]) -> tuple[list[_Entry], list[Rejected]]:
    entries, rejected = [], []
    columns = [NIH_CLASSES.index(c) for c in classes]
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot be read ({exc})") from None
    for number, line in enumerate(lines, start=1):
        tokens = line.split()
        if not tokens:
            continue
        where = f"{path}:{number}"
        values = tokens[1:]
        if len(values) != len(NIH_CLASSES):
            reason = f"expected a file name and {len(NIH_CLASSES)} labels, found {len(values)} labels"
            rejected.append(Rejected(where, where, reason))
        elif bad := next((v for v in values if v not in ("0", "1")), None):
            rejected.append(Rejected(where, where, f"label value '{bad}' is not 0 or 1"))
        else:
            vector = np.array([float(values[c]) for c in columns], dtype=np.float32)
            entries.append(_Entry(where, tokens[0], vector))
    return entries, rejected


def _parse_nih_csv(path: Path, classes: list[str]) -> tuple[list[_Entry], list[Rejected]]:
    header, rows = read_csv_rows(path)
    for column in ("Image Index", "Finding Labels"):
        if column not in header:
            raise InputError(path, f"no '{column}' column (not a ChestX-ray14 Data_Entry file)")
    patient_column = _patient_column(header)
    known = (*NIH_CLASSES, NIH_NO_FINDING)
    entries, rejected = [], []
    for number, row in rows:
        where = f"{path}:{number}"
        findings = [f.strip() for f in row.get("Finding Labels", "").split("|") if f.strip()]
        unknown = next((f for f in findings if f not in known), None)
        if unknown is not None:
            reason = f"unknown finding '{unknown}'{did_you_mean(unknown, known)}"
            rejected.append(Rejected(where, where, reason))
            continue
        if not findings:
            rejected.append(Rejected(where, where, "empty 'Finding Labels' (use 'No Finding')"))
            continue
        vector = np.array([float(c in findings) for c in classes], dtype=np.float32)
        patient = row.get(patient_column) if patient_column else None
        entries.append(_Entry(where, row["Image Index"], vector, patient or None))
    return entries, rejected


def _parse_chexpert(
    path: Path, classes: list[str], uncertainty: str, seed: int
) -> tuple[list[_Entry], list[Rejected]]:
    header, rows = read_csv_rows(path)
    for column in ("Path", *classes):
        if column not in header:
            raise InputError(path, f"no '{column}' column (not a CheXpert label file)")
    values = {"1": 1.0, "1.0": 1.0, "0": 0.0, "0.0": 0.0, "": 0.0, "-1": -1.0, "-1.0": -1.0}
    entries, rejected = [], []
    for number, row in rows:
        where = f"{path}:{number}"
        bad = next((c for c in classes if row.get(c, "") not in values), None)
        if bad is not None:
            reason = f"value '{row[bad]}' in column '{bad}' is not 1, 0, -1 or empty"
            rejected.append(Rejected(where, where, reason))
            continue
        vector = np.array([values[row.get(c, "")] for c in classes], dtype=np.float32)
        uncertain = vector < 0
        if uncertainty == "ones":
            vector[uncertain] = 1.0
        elif uncertainty == "zeros":
            vector[uncertain] = 0.0
        elif uncertainty == "ignore":
            vector[uncertain] = IGNORED
        else:
            # One draw per column from a generator seeded by (seed, line): stable across runs and workers.
            low, high = LSR_RANGES[uncertainty]
            draws = np.random.default_rng([seed, number]).uniform(low, high, size=len(classes))
            vector[uncertain] = draws[uncertain].astype(np.float32)
        entries.append(_Entry(where, row["Path"], vector))
    return entries, rejected


def _class_sort_key(label: str) -> tuple[int, float | str]:
    try:
        return (0, float(label))  # "2" before "10"
    except ValueError:
        return (1, label)


def _parse_simple_csv(
    path: Path, classes: Sequence[str] | None
) -> tuple[list[_Entry], list[Rejected], list[str]]:
    header, rows = read_csv_rows(path)
    if len(header) < 2:
        raise InputError(path, "expected a header row and at least two columns (image, label)")
    image_column = next((c for c in IMAGE_COLUMNS if c in header), header[0])
    label_column = "label" if "label" in header else next(c for c in header if c != image_column)
    patient_column = _patient_column(header)
    labels = [row.get(label_column, "") for _, row in rows]
    names = list(classes) if classes else sorted({v for v in labels if v}, key=_class_sort_key)
    if not names:
        raise InputError(path, f"column '{label_column}' holds no labels")
    index = {name: i for i, name in enumerate(names)}
    entries, rejected = [], []
    for (number, row), label in zip(rows, labels):
        where = f"{path}:{number}"
        if label in index:
            k = index[label]
        elif classes and label.isdigit() and int(label) < len(names):
            k = int(label)
        else:
            reason = (
                f"empty label in column '{label_column}'"
                if not label
                else f"unknown label '{label}'{did_you_mean(label, names)}"
            )
            rejected.append(Rejected(where, where, reason))
            continue
        patient = row.get(patient_column) if patient_column else None
        entries.append(_Entry(where, row.get(image_column, ""), k, patient or None))
    return entries, rejected, names


def _read_subset(path: str | Path) -> set[str]:
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(path, f"cannot be read ({exc})") from None
    return {Path(line.split()[0]).name for line in lines if line.split()}


# -- converting --------------------------------------------------------------------------------------
def load_list_image(item: _Item) -> Unit:
    """One listed image -> one sample with its class index or label vector."""
    try:
        image, meta = read_image(item.path)
    except InputError as exc:
        raise SkipSample(item.path, exc.problem) from None
    pixels = store_image(image, meta, item.fmt, item.path)[None]
    record = SampleRecord(item.patient_id, item.path, -1, item.label_text)
    if item.task == "classification":
        labels = np.array([item.label], dtype=np.int64)
    else:
        labels = np.asarray(item.label, dtype=np.float32)[None]
    return Unit(item.path, pixels, [record], labels=labels)


def convert_label_list(
    list_file: str | Path,
    out: str | Path,
    *,
    images: str | Path | None = None,
    list_format: str = "auto",
    classes: Sequence[str] | None = None,
    uncertainty: str = "ones",
    seed: int = 0,
    subset: str | Path | None = None,
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
    """Convert the images named in ``list_file`` (labels as described in the module docstring)."""
    if list_format not in FORMATS:
        raise UnknownChoiceError("list format", list_format, FORMATS)
    if uncertainty not in UNCERTAINTY:
        raise UnknownChoiceError("uncertainty policy", uncertainty, UNCERTAINTY)
    check_choices(dtype, intensity, channels)
    image_root = images if images is not None else Path(list_file).parent
    out = check_output(out, overwrite, [list_file, image_root, subset])
    list_file = Path(list_file).resolve()
    if not list_file.is_file():
        raise InputError(list_file, "file not found")
    root = Path(images).resolve() if images is not None else list_file.parent
    if not root.is_dir():
        raise InputError(root, "image folder not found")
    fmt_name = detect_format(list_file) if list_format == "auto" else list_format
    if fmt_name == "csv":
        entries, rejected, class_names = _parse_simple_csv(list_file, classes)
        task = "classification"
    else:
        known = CHEXPERT_CLASSES if fmt_name == "chexpert" else NIH_CLASSES
        class_names = _select(classes, known, "finding")
        task = "multilabel"
        if fmt_name == "nih-list":
            entries, rejected = _parse_nih_list(list_file, class_names)
        elif fmt_name == "nih-csv":
            entries, rejected = _parse_nih_csv(list_file, class_names)
        else:
            entries, rejected = _parse_chexpert(list_file, class_names, uncertainty, seed)
    if len(set(class_names)) != len(class_names):
        raise ConfigError(f"class names repeat: {', '.join(class_names)}")
    stop_if_strict(rejected, strict)
    if subset is not None:
        keep = _read_subset(subset)
        entries = [e for e in entries if Path(e.name).name in keep]
    regex = compile_patient_regex(patient_regex)
    name_patient = _NAME_PATIENT.get(fmt_name)
    index = FileIndex(root)
    first_line: dict[Path, str] = {}
    items: list[tuple[Path, _Entry, str]] = []
    for entry in entries:
        found = index.find(entry.name)
        if isinstance(found, str):
            rejected.append(Rejected(entry.where, entry.where, found))
            continue
        if found in first_line:
            reason = f"'{entry.name}' is listed again (first at {first_line[found]})"
            rejected.append(Rejected(entry.where, entry.where, reason))
            continue
        first_line[found] = entry.where
        if regex is not None:
            patient = patient_from_name(found.name, regex)
            if patient is None:
                reason = f"file name does not match the patient regex {patient_regex!r}"
                rejected.append(Rejected(entry.where, str(found), reason))
                continue
        elif entry.patient:
            patient = entry.patient
        else:
            patient = patient_from_name(entry.name, name_patient) or found.stem
        items.append((found, entry, patient))
        stop_if_strict(rejected, strict)  # stop at the first bad row, before looking at the rest
    if not items:
        raise InputError(list_file, f"no listed image could be used ({len(rejected)} rejected)")
    fmt = decide_format(
        (p for p, *_ in items),
        size=size,
        channels=channels,
        dtype=dtype,
        intensity=intensity,
        root=root,
        progress=progress,
    )
    jobs = []
    for path, entry, patient in items:
        if task == "classification":
            text = class_names[entry.label]
        else:
            text = "|".join(c for c, v in zip(class_names, entry.label) if v > 0.5)
        item = _Item(str(path), entry.label, text, patient, task, fmt)
        jobs.append(Job(str(path), item, path=str(path)))
    return write_store(
        out,
        jobs,
        load_list_image,
        rejected=rejected,
        task=task,
        fmt=fmt,
        class_names=class_names,
        label_shape=() if task == "classification" else (len(class_names),),
        source={
            "converter": "list",
            "root": str(list_file),
            "list": str(list_file),
            "images": str(root),
            "format": fmt_name,
            "uncertainty": uncertainty if fmt_name == "chexpert" else None,
            "seed": seed if fmt_name == "chexpert" and uncertainty in LSR_RANGES else None,
            "subset": None if subset is None else str(subset),
            "patient_regex": patient_regex,
        },
        workers=workers,
        strict=strict,
        overwrite=overwrite,
        wait=wait,
        listing=[list_file] + ([Path(subset)] if subset is not None else []),
        progress=progress,
        description="prepare list",
    )
