"""The phantom BraTS dataset: layout, determinism, and grades that differ in a learnable way."""

from __future__ import annotations

import csv
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medtl.errors import InputError, OutputExistsError
from medtl.io import nifti
from medtl.io.converters.phantom import MODALITIES, NAME_MAPPING_COLUMNS, write_phantom_brats
from tests.helpers import visible

SHAPE = (32, 32, 16)


@pytest.fixture(scope="module")
def phantom(tmp_path_factory) -> Path:
    return write_phantom_brats(tmp_path_factory.mktemp("ph") / "raw", subjects=6, shape=SHAPE, seed=7)


def grades(root: Path) -> dict[str, str]:
    with open(root / "name_mapping.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(NAME_MAPPING_COLUMNS)
    return {row["BraTS_2020_subject_ID"]: row["Grade"] for row in rows}


def test_brats_2020_layout(phantom):
    subjects = sorted(p.name for p in phantom.iterdir() if p.is_dir())
    assert subjects == [f"BraTS20_Training_{i:03d}" for i in range(1, 7)]
    assert sorted(grades(phantom).values()) == ["HGG"] * 3 + ["LGG"] * 3
    files = sorted(p.name for p in (phantom / subjects[0]).iterdir())
    assert files == sorted(f"{subjects[0]}_{m}.nii.gz" for m in (*MODALITIES, "seg"))
    img = nib.load(str(phantom / subjects[0] / f"{subjects[0]}_t1.nii.gz"))
    assert img.shape == SHAPE and img.get_data_dtype() == np.int16
    # Stored in BraTS' LPS-like voxel order, so readers must reorient.
    assert nib.aff2axcodes(img.affine) == ("L", "P", "S")
    assert visible(phantom.parent) == [phantom.name]  # no partial left


def test_grades_differ_in_a_learnable_way(phantom):
    """High grade: larger on average, enhancing rim (label 4, bright on t1); low grade: no ET, dimmer."""
    features = {"HGG": [], "LGG": []}
    for name, grade in grades(phantom).items():
        folder = phantom / name
        seg = nifti.read_label_volume(folder / f"{name}_seg.nii.gz")
        t1 = nifti.read_volume(folder / f"{name}_t1.nii.gz")
        t1ce = nifti.read_volume(folder / f"{name}_t1ce.nii.gz")
        labels = set(np.unique(seg).tolist())
        assert labels == ({0, 1, 2, 4} if grade == "HGG" else {0, 1, 2})
        healthy = (t1 > 0) & (seg == 0)
        if grade == "HGG":
            assert t1ce[seg == 4].mean() > 1.8 * t1ce[healthy].mean()
        brightness = np.percentile(t1[seg > 0], 95) / np.median(t1[healthy])
        features[grade].append((brightness, int((seg > 0).sum())))
    # Learnable, not trivial: the rim's t1 brightness separates the grades; sizes overlap a little
    # (as real tumours do) but differ on average.
    assert min(b for b, _ in features["HGG"]) > max(b for b, _ in features["LGG"]) + 0.05
    assert np.mean([v for _, v in features["HGG"]]) > 1.3 * np.mean([v for _, v in features["LGG"]])


def test_deterministic_by_seed(tmp_path, phantom):
    again = write_phantom_brats(tmp_path / "again", subjects=6, shape=SHAPE, seed=7)
    other = write_phantom_brats(tmp_path / "other", subjects=6, shape=SHAPE, seed=8)
    name = "BraTS20_Training_002/BraTS20_Training_002_flair.nii.gz"
    assert (again / name).read_bytes() == (phantom / name).read_bytes()
    assert (again / "name_mapping.csv").read_bytes() == (phantom / "name_mapping.csv").read_bytes()
    assert not np.array_equal(nifti.read_volume(other / name), nifti.read_volume(phantom / name))


def test_existing_output_and_bad_arguments(tmp_path):
    out = write_phantom_brats(tmp_path / "raw", subjects=1, shape=(8, 8, 6))
    with pytest.raises(OutputExistsError):
        write_phantom_brats(out, subjects=1, shape=(8, 8, 6))
    write_phantom_brats(out, subjects=2, shape=(8, 8, 6), overwrite=True)
    assert len([p for p in out.iterdir() if p.is_dir()]) == 2
    with pytest.raises(InputError, match="--subjects must be at least 1"):
        write_phantom_brats(tmp_path / "x", subjects=0)
    with pytest.raises(InputError, match=r"--shape needs three sizes of at least 4 voxels, got \(8, 2, 8\)"):
        write_phantom_brats(tmp_path / "x", shape=(8, 2, 8))
