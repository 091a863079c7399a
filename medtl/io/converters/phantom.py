"""Synthetic raw datasets for demos, tests and benchmarks (``medtl prepare phantom ...``).

``write_phantom_brats`` writes a dataset in the BraTS 2020 layout: one folder per subject with
``<subject>_{t1,t1ce,t2,flair,seg}.nii.gz`` and a ``name_mapping.csv`` with grades. Its bytes
are determined by the arguments (seed, subjects, shape), and the grades differ in a learnable
way: high-grade tumours are larger on average and have an enhancing rim (label 4, slightly bright
on t1 and very bright on t1ce) around a dark necrotic core; low-grade tumours are smaller, have no
enhancing tumour and are dimmer than the brain on t1. The sizes of the grades overlap a little and
the t1 contrast is modest, so a classifier has something to learn and strategies differ (the
quickstart's study), rather than every model scoring 1.0.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from medtl.errors import InputError
from medtl.io.locks import exclusive
from medtl.io.paths import PHANTOM, check_replaceable, replace_dir, write_errors
from medtl.progress import NULL_PROGRESS, Progress

MODALITIES = ("t1", "t1ce", "t2", "flair")
NAME_MAPPING_COLUMNS = (
    "Grade",
    "BraTS_2017_subject_ID",
    "BraTS_2018_subject_ID",
    "TCGA_TCIA_subject_ID",
    "BraTS_2019_subject_ID",
    "BraTS_2020_subject_ID",
)
# BraTS volumes are stored in LPS-like voxel order (x and y flipped against RAS); the phantom
# does the same, so reading it exercises the reorientation to canonical RAS.
_AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])

# Mean intensity of healthy brain per modality, and the factor each tumour region multiplies it by.
_BRAIN = {"t1": 520.0, "t1ce": 560.0, "t2": 420.0, "flair": 360.0}
_FACTORS = {
    "hgg": {  # label: factors for t1, t1ce, t2, flair
        1: (0.55, 0.50, 1.60, 0.90),  # necrotic core
        4: (1.18, 2.30, 1.20, 1.30),  # enhancing rim
        2: (0.85, 0.90, 1.70, 1.80),  # oedema
    },
    "lgg": {
        1: (0.78, 0.75, 1.45, 1.50),  # non-enhancing tumour
        2: (0.90, 0.92, 1.35, 1.40),
    },
}


def subject_name(index: int, total: int) -> str:
    return f"BraTS20_Training_{index + 1:0{max(3, len(str(total)))}d}"


def phantom_grades(subjects: int, seed: int) -> list[str]:
    """Balanced grades (one more HGG when odd), shuffled by seed."""
    grades = np.array(["HGG" if i % 2 == 0 else "LGG" for i in range(subjects)])
    np.random.default_rng([seed, 2**31]).shuffle(grades)
    return [str(g) for g in grades]


def phantom_subject(
    shape: Sequence[int], grade: str, seed: int, index: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Volumes (int16, one per modality) and segmentation (uint8, labels 0/1/2/4) of one subject."""
    if grade not in ("HGG", "LGG"):
        raise ValueError(f"grade must be HGG or LGG, got {grade!r}")
    rng = np.random.default_rng([seed, index])
    sx, sy, sz = (int(s) for s in shape)
    x, y, z = np.ogrid[0:sx, 0:sy, 0:sz]
    x = ((x - (sx - 1) / 2) / (sx / 2)).astype(np.float32)
    y = ((y - (sy - 1) / 2) / (sy / 2)).astype(np.float32)
    z = ((z - (sz - 1) / 2) / (sz / 2)).astype(np.float32)

    # Brain: an ellipsoid filling most of the field of view, with a smooth grey/white pattern.
    radii = rng.uniform(0.72, 0.86, 3).astype(np.float32)
    brain = (x / radii[0]) ** 2 + (y / radii[1]) ** 2 + (z / radii[2]) ** 2 <= 1.0
    freq = rng.uniform(3.0, 6.0, 3).astype(np.float32)
    phase = rng.uniform(0, 2 * math.pi, 3).astype(np.float32)
    texture = (
        1.0
        + 0.12 * np.sin(freq[0] * x + phase[0]) * np.sin(freq[1] * y + phase[1])
        + (0.06 * np.sin(freq[2] * z + phase[2]))
    )

    # Tumour: an ellipsoid inside one hemisphere; high grade is larger.
    hgg = grade == "HGG"
    # The grades' sizes overlap a little, as real tumours do: size alone does not decide the grade.
    size = rng.uniform(0.25, 0.35) if hgg else rng.uniform(0.18, 0.27)
    centre = rng.uniform(0.2, 0.35, 3) * rng.choice([-1.0, 1.0], 3) * radii
    centre[2] = rng.uniform(-0.15, 0.15)
    stretch = rng.uniform(0.85, 1.15, 3)
    dist = np.sqrt(
        ((x - centre[0]) / (size * stretch[0])) ** 2
        + ((y - centre[1]) / (size * stretch[1])) ** 2
        + ((z - centre[2]) / (size * stretch[2] * 1.3)) ** 2
    )
    seg = np.zeros((sx, sy, sz), dtype=np.uint8)
    seg[(dist < 1.45) & brain] = 2
    if hgg:
        seg[dist < 0.85] = 4
        seg[dist < 0.5] = 1
    else:
        seg[dist < 0.9] = 1
    del dist

    gain = rng.uniform(0.8, 1.25)  # scanner gain differs between subjects: normalisation matters
    factors = _FACTORS["hgg" if hgg else "lgg"]
    volumes = {}
    for m, modality in enumerate(MODALITIES):
        scale = np.ones((sx, sy, sz), dtype=np.float32)
        for label, per_mod in factors.items():
            scale[seg == label] = per_mod[m]
        noise = rng.standard_normal((sx, sy, sz), dtype=np.float32)
        vol = (_BRAIN[modality] * gain) * texture * scale * (1.0 + 0.06 * noise)
        vol[~brain] = 0.0
        volumes[modality] = np.clip(np.rint(vol), 0, np.iinfo(np.int16).max).astype(np.int16)
    return volumes, seg


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray = _AFFINE) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.header.set_data_dtype(data.dtype)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    nib.save(img, str(path))


def write_phantom_brats(
    out: str | Path,
    *,
    subjects: int = 8,
    shape: Sequence[int] = (240, 240, 155),
    seed: int = 0,
    overwrite: bool = False,
    wait: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> Path:
    """Write a synthetic BraTS 2020-style dataset to ``out`` (atomically) and return it.

    ``overwrite`` replaces only an earlier phantom (it carries a ``.medtl-phantom.json`` marker) or
    an empty directory, never a real dataset.
    """
    out = Path(out)
    if subjects < 1:
        raise InputError(None, f"--subjects must be at least 1, got {subjects}")
    if len(shape) != 3 or min(shape) < 4:
        raise InputError(None, f"--shape needs three sizes of at least 4 voxels, got {tuple(shape)}")
    check_replaceable(out, PHANTOM, overwrite=overwrite)
    with exclusive(out, wait=wait, what="phantom dataset"), write_errors(out):
        check_replaceable(out, PHANTOM, overwrite=overwrite)
        tmp = out.parent / f".{out.name}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            _write_subjects(tmp, subjects, shape, seed, progress)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        (tmp / PHANTOM.marker).write_text(
            json.dumps({"format": "medtl-phantom", "subjects": subjects, "shape": list(shape), "seed": seed})
        )
        replace_dir(tmp, out)
    progress.message(f"{out}: {subjects} phantom subjects of shape {tuple(int(s) for s in shape)}")
    return out


def _write_subjects(tmp: Path, subjects: int, shape: Sequence[int], seed: int, progress: Progress) -> None:
    grades = phantom_grades(subjects, seed)
    task = progress.start("writing phantom BraTS", total=subjects)
    completed = False
    try:
        rows = []
        for i, grade in enumerate(grades):
            name = subject_name(i, subjects)
            folder = tmp / name
            folder.mkdir()
            volumes, seg = phantom_subject(shape, grade, seed, i)
            for modality, vol in volumes.items():
                write_nifti(folder / f"{name}_{modality}.nii.gz", vol)
            write_nifti(folder / f"{name}_seg.nii.gz", seg)
            rows.append({"Grade": grade, "BraTS_2020_subject_ID": name})
            progress.advance(task)
        with open(tmp / "name_mapping.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, NAME_MAPPING_COLUMNS, restval="NA")
            writer.writeheader()
            writer.writerows(rows)
        completed = True
    finally:
        progress.end(task, interrupted=not completed)
