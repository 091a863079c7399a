"""BraTS conversion: NIfTI reading, normalisation, slice selection, labels, bad inputs, resuming."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medtl.errors import ConfigError, InputError, OutputExistsError, UnknownChoiceError
from medtl.io import nifti, normalise
from medtl.io.converters import brats
from medtl.io.converters.brats import BratsOptions, convert_brats, read_name_mapping
from medtl.io.converters.phantom import write_phantom_brats
from medtl.io.store import Store
from tests.helpers import visible

SHAPE = (6, 7, 5)
# Tumour voxels per axial slice z of the hand-made subjects: slice 1 has 1 voxel, 2 has 4, 3 has 2.
TUMOUR_AREA = [0, 1, 4, 2, 0]
FLIP_XY = np.diag([-1.0, -1.0, 1.0, 1.0])


def save(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    """Write ``data`` (given in canonical RAS order) so that nibabel reads it back through ``affine``."""
    affine = np.eye(4) if affine is None else affine
    ornt = nib.io_orientation(affine)
    # The inverse of the reorientation the reader applies.
    stored = nib.orientations.apply_orientation(
        data, nib.orientations.ornt_transform([[0, 1], [1, 1], [2, 1]], ornt)
    )
    nib.save(nib.Nifti1Image(np.ascontiguousarray(stored), affine), str(path))
    return path


def subject_volumes(seed: int, shape=SHAPE) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(seed)
    volumes = {m: rng.integers(1, 1000, shape).astype(np.int16) for m in brats.MODALITIES}
    for vol in volumes.values():
        vol[0] = 0  # background
    seg = np.zeros(shape, dtype=np.uint8)
    seg[2, 3, 1] = 1
    seg[2:4, 2:4, 2] = [[1, 2], [4, 4]]
    seg[3, 3:5, 3] = 2
    return volumes, seg


def make_dataset(
    root: Path,
    grades=("HGG", "LGG", "HGG"),
    *,
    ext: str = ".nii.gz",
    affine: np.ndarray | None = None,
    mapping: bool = True,
) -> dict[str, tuple[dict[str, np.ndarray], np.ndarray]]:
    """Subjects ``S0..`` with canonical data returned for comparison."""
    root.mkdir(parents=True, exist_ok=True)
    truth = {}
    for i, _ in enumerate(grades):
        name = f"BraTS20_Training_{i:03d}"
        folder = root / name
        folder.mkdir()
        volumes, seg = subject_volumes(i)
        for modality, vol in volumes.items():
            save(folder / f"{name}_{modality}{ext}", vol, affine)
        save(folder / f"{name}_seg{ext}", seg, affine)
        truth[name] = (volumes, seg)
    if mapping:
        with open(root / "name_mapping.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["Grade", "BraTS_2017_subject_ID", "BraTS_2019_subject_ID", "BraTS_2020_subject_ID"])
            for i, grade in enumerate(grades):
                w.writerow([grade, f"Brats17_x_{i}", f"BraTS19_x_{i}", f"BraTS20_Training_{i:03d}"])
    return truth


def study_range(slices: np.ndarray, volume: np.ndarray) -> np.ndarray:
    """What the study's notebook computed: float64 x / (max - min) of the volume, stored as float16."""
    v = volume.astype(np.float64)
    return (slices.astype(np.float64) / (v.max() - v.min())).astype(np.float16)


def report(store_dir: Path) -> list[dict[str, str]]:
    return json.loads((store_dir / "prepare_report.json").read_text())["skipped"]


# -- NIfTI reading ---------------------------------------------------------------------------
AFFINES = {
    "identity": np.eye(4),
    "lps": FLIP_XY,
    "permuted": np.array([[0, 0, 2.0, 0], [-1.0, 0, 0, 0], [0, 1.5, 0, 0], [0, 0, 0, 1]]),
}


@pytest.mark.parametrize("affine", AFFINES.values(), ids=AFFINES.keys())
def test_volumes_are_reoriented_like_as_closest_canonical(tmp_path, affine):
    data = np.arange(np.prod(SHAPE), dtype=np.int16).reshape(SHAPE)
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(path))
    expected = nib.as_closest_canonical(nib.load(str(path))).get_fdata()
    volume = nifti.read_volume(path)
    assert volume.dtype == np.float32
    np.testing.assert_array_equal(volume, expected)
    assert nifti.canonical_shape(path) == expected.shape
    np.testing.assert_array_equal(nifti.read_volume(path, dtype=None), expected)


@pytest.mark.parametrize("ext", [".nii", ".nii.gz"])
@pytest.mark.parametrize("dtype", ["<i2", ">i2", "<f4"])
def test_reading_applies_scaling_and_drops_singleton_dims(tmp_path, ext, dtype):
    img = nib.Nifti1Image(np.arange(24).astype(dtype).reshape(2, 3, 4, 1), np.eye(4))
    img.header.set_slope_inter(0.5, 10)
    nib.save(img, str(tmp_path / f"v{ext}"))
    volume = nifti.read_volume(tmp_path / f"v{ext}")
    assert volume.shape == (2, 3, 4) and volume.dtype == np.float32
    np.testing.assert_array_equal(volume, np.arange(24).reshape(2, 3, 4) * 0.5 + 10)
    nib.save(nib.Nifti1Image(np.zeros((2, 3, 4, 2), np.int16), np.eye(4)), str(tmp_path / "t.nii"))
    with pytest.raises(InputError, match=r"expected a 3-D volume, got shape \(2, 3, 4, 2\)"):
        nifti.read_volume(tmp_path / "t.nii")


def test_label_maps_are_uint8_and_must_be_integers(tmp_path):
    nib.save(nib.Nifti1Image(np.array([[[0.0, 1.0], [2.0, 4.0]]]), np.eye(4)), str(tmp_path / "s.nii.gz"))
    labels = nifti.read_label_volume(tmp_path / "s.nii.gz")
    assert labels.dtype == np.uint8 and labels.tolist() == [[[0, 1], [2, 4]]]
    nib.save(nib.Nifti1Image(np.array([[[0.0, 1.5]]]), np.eye(4)), str(tmp_path / "f.nii.gz"))
    with pytest.raises(InputError, match="non-integer values"):
        nifti.read_label_volume(tmp_path / "f.nii.gz")


# -- normalisation and resizing --------------------------------------------------------------
def test_normalisations_match_their_definitions():
    rng = np.random.default_rng(0)
    volume = np.zeros((10, 10, 10), np.float32)
    volume[2:8, 2:8, 2:8] = rng.normal(300, 50, (6, 6, 6)).astype(np.float32)
    volume[5, 5, 5] = 5000  # an outlier that the percentile clip removes
    brain = volume[volume > 0].astype(np.float64)
    lo, hi = float(volume.min()), float(volume.max())
    cases = {
        "study-range": volume / (hi - lo),
        "minmax": (volume - lo) / (hi - lo),
        "zscore": (volume - brain.mean()) / brain.std(),
    }
    for method, expected in cases.items():
        got = normalise.fit_intensity(volume, method).apply(volume)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5, err_msg=method)
    p_lo, p_hi = np.percentile(brain, [0.5, 99.5])
    got = normalise.fit_intensity(volume, "percentile").apply(volume)
    np.testing.assert_allclose(got, (np.clip(volume, p_lo, p_hi) - p_lo) / (p_hi - p_lo), atol=1e-5)
    assert got.min() == 0 and got.max() == pytest.approx(1)
    with pytest.raises(ValueError, match="constant intensity"):
        normalise.fit_intensity(np.full((3, 3), 7.0), "minmax")
    with pytest.raises(UnknownChoiceError, match="did you mean 'zscore'"):
        normalise.fit_intensity(volume, "z-score")


def test_uint8_scaling_and_resizing():
    np.testing.assert_array_equal(
        normalise.to_uint8(np.array([0.0, 0.5, 1.0, 2.0]), (0.0, 1.0)), [0, 128, 255, 255]
    )
    ramp = np.tile(np.linspace(0, 1, 8, dtype=np.float32), (2, 1, 8, 1))  # (2, 1, 8, 8)
    resized = normalise.resize_images(ramp, (4, 4))
    assert resized.shape == (2, 1, 4, 4) and resized.dtype == np.float32
    assert np.all(np.diff(resized[0, 0, 0]) > 0) and np.all(
        resized[:, :, :, 0] == resized[:, :, :, 0][0, 0, 0]
    )
    masks = np.zeros((1, 8, 8), np.uint8)
    masks[0, 2:6, 2:6] = 4
    masks[0, 3:5, 3:5] = 1
    bigger = normalise.resize_masks(masks, (16, 16))
    assert set(np.unique(bigger)) == {0, 1, 4} and (bigger == 1).sum() == 16


# -- the converter ---------------------------------------------------------------------------
def test_grade_labels_on_tumour_slices_as_in_the_study(tmp_path):
    truth = make_dataset(tmp_path / "raw", affine=FLIP_XY)
    summary = convert_brats(tmp_path / "raw", tmp_path / "s")
    store = Store(tmp_path / "s")
    assert summary.samples == len(store) == 9 and summary.skipped == []
    assert store.task == "classification" and store.class_names == ["LGG", "HGG"]
    assert store.images.shape == (9, 1, 6, 7) and store.images.dtype == np.float16
    np.testing.assert_array_equal(store.labels, [1, 1, 1, 0, 0, 0, 1, 1, 1])
    assert [s["slice"] for s in store.samples] == ["1", "2", "3"] * 3
    assert store.samples[3]["patient_id"] == "BraTS20_Training_001"
    assert store.samples[3]["source_file"] == "BraTS20_Training_001/BraTS20_Training_001_t1.nii.gz"
    assert store.samples[3]["label"] == "LGG"
    t1 = truth["BraTS20_Training_001"][0]["t1"]
    expected = study_range(np.moveaxis(t1[:, :, 1:4], 2, 0), t1)
    np.testing.assert_array_equal(store.images[3:6, 0], expected)
    assert store.manifest["normalisation"] == "study-range"
    assert store.manifest["source"]["modalities"] == ["t1"]


def test_modalities_become_channels_in_order(tmp_path):
    truth = make_dataset(tmp_path / "raw", grades=("HGG",))
    convert_brats(
        tmp_path / "raw", tmp_path / "s", BratsOptions(modalities=("flair", "t1"), normalisation="minmax")
    )
    images = Store(tmp_path / "s").images
    assert images.shape == (3, 2, 6, 7)
    for c, modality in enumerate(("flair", "t1")):
        vol = truth["BraTS20_Training_000"][0][modality].astype(np.float64)
        expected = (vol[:, :, 2] - vol.min()) / (vol.max() - vol.min())
        np.testing.assert_allclose(images[1, c], expected, atol=1e-3)


@pytest.mark.parametrize(
    ("options", "slices", "labels"),
    [
        ({"min_tumour_area": 2}, ["2", "3"], [1, 1]),
        ({"slices": "all", "labels": "tumour"}, ["0", "1", "2", "3", "4"], [0, 1, 1, 1, 0]),
        (
            {"slices": "all", "labels": "tumour", "min_tumour_area": 3},
            ["0", "1", "2", "3", "4"],
            [0, 0, 1, 0, 0],
        ),
        ({"slices": "all"}, ["0", "1", "2", "3", "4"], [1, 1, 1, 1, 1]),
    ],
)
def test_slice_selection_and_tumour_labels(tmp_path, options, slices, labels):
    make_dataset(tmp_path / "raw", grades=("HGG",))
    convert_brats(tmp_path / "raw", tmp_path / "s", BratsOptions(**options))
    store = Store(tmp_path / "s")
    assert [s["slice"] for s in store.samples] == slices
    np.testing.assert_array_equal(store.labels, labels)


@pytest.mark.parametrize(("axis", "plane", "count"), [("sagittal", (7, 5), 2), ("coronal", (6, 5), 3)])
def test_other_slice_axes(tmp_path, axis, plane, count):
    truth = make_dataset(tmp_path / "raw", grades=("LGG",))
    convert_brats(tmp_path / "raw", tmp_path / "s", BratsOptions(axis=axis))
    store = Store(tmp_path / "s")
    assert store.images.shape == (count, 1, *plane)
    t1 = truth["BraTS20_Training_000"][0]["t1"]
    first = int(store.samples[0]["slice"])
    ax = nifti.slice_axis(axis)
    np.testing.assert_array_equal(store.images[0, 0], study_range(np.take(t1, first, axis=ax), t1))


def test_segmentation_masks_raw_and_regions(tmp_path):
    truth = make_dataset(tmp_path / "raw", grades=("HGG",), mapping=False)
    seg = truth["BraTS20_Training_000"][1]
    convert_brats(tmp_path / "raw", tmp_path / "raw_masks", BratsOptions(labels="mask"))
    store = Store(tmp_path / "raw_masks")
    assert store.task == "segmentation" and store.labels is None
    assert store.masks.shape == (3, 1, 6, 7) and store.masks.dtype == np.uint8
    np.testing.assert_array_equal(store.masks[:, 0], np.moveaxis(seg[:, :, 1:4], 2, 0))

    convert_brats(tmp_path / "raw", tmp_path / "regions", BratsOptions(labels="regions"))
    regions = Store(tmp_path / "regions")
    assert regions.masks.shape == (3, 3, 6, 7) and regions.manifest["mask_names"] == ["ET", "TC", "WT"]
    raw = np.moveaxis(seg[:, :, 1:4], 2, 0)
    np.testing.assert_array_equal(regions.masks[:, 0], raw == 4)
    np.testing.assert_array_equal(regions.masks[:, 1], (raw == 1) | (raw == 4))
    np.testing.assert_array_equal(regions.masks[:, 2], raw > 0)


def test_resize_and_uint8(tmp_path):
    make_dataset(tmp_path / "raw", grades=("HGG", "LGG"))
    convert_brats(tmp_path / "raw", tmp_path / "s", BratsOptions(labels="mask", size=12, dtype="uint8"))
    store = Store(tmp_path / "s")
    assert store.images.shape == (6, 1, 12, 12) and store.images.dtype == np.uint8
    assert store.masks.shape == (6, 1, 12, 12)
    assert set(np.unique(store.masks)) <= {0, 1, 2, 4} and store.masks.max() == 4
    assert store.images.max() <= 255 and store.images.max() > 200


def test_two_workers_and_uncompressed_files_give_the_same_store(tmp_path):
    make_dataset(tmp_path / "gz")
    make_dataset(tmp_path / "nii", ext=".nii")
    convert_brats(tmp_path / "gz", tmp_path / "a")
    convert_brats(tmp_path / "nii", tmp_path / "b", workers=2)
    a, b = Store(tmp_path / "a"), Store(tmp_path / "b")
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.labels, b.labels)


def test_name_mapping_uses_the_newest_id_column(tmp_path):
    path = tmp_path / "name_mapping.csv"
    path.write_text(
        "Grade,BraTS_2017_subject_ID,BraTS_2018_subject_ID,TCGA_TCIA_subject_ID,"
        "BraTS_2019_subject_ID,BraTS_2020_subject_ID\n"
        "HGG,Brats17_CBICA_AAB_1,Brats18_CBICA_AAB_1,NA,BraTS19_CBICA_AAB_1,BraTS20_Training_001\n"
        "LGG,NA,NA,TCGA-CS-4942,BraTS19_TCIA09_141_1,BraTS20_Training_260\n"
    )
    assert read_name_mapping(path) == {"BraTS20_Training_001": "HGG", "BraTS20_Training_260": "LGG"}
    path.write_text("Subject,Age\nx,3\n")
    with pytest.raises(InputError, match="needs a Grade column") as err:
        read_name_mapping(path)
    assert err.value.path == path


def test_brats2020_odd_segmentation_name_is_found(tmp_path):
    make_dataset(tmp_path / "raw", grades=("HGG",))
    folder = tmp_path / "raw" / "BraTS20_Training_000"
    (folder / "BraTS20_Training_000_seg.nii.gz").rename(folder / "W39_1998.09.19_Segm.nii.gz")
    assert len(Store(convert_brats(tmp_path / "raw", tmp_path / "s").store)) == 3


def test_subjects_of_another_size_are_skipped_unless_resized(tmp_path):
    make_dataset(tmp_path / "raw", grades=("HGG", "LGG"))
    folder = tmp_path / "raw" / "BraTS20_Training_001"
    volumes, seg = subject_volumes(1, shape=(8, 7, 5))
    for modality, vol in volumes.items():
        save(folder / f"{folder.name}_{modality}.nii.gz", vol)
    save(folder / f"{folder.name}_seg.nii.gz", seg)
    [skipped] = convert_brats(tmp_path / "raw", tmp_path / "keep").skipped
    assert skipped["reason"] == "slice shape (8, 7) differs from the store's (6, 7); pass --size to resize"
    summary = convert_brats(tmp_path / "raw", tmp_path / "resized", BratsOptions(size=8))
    assert summary.skipped == [] and Store(tmp_path / "resized").images.shape == (6, 1, 8, 8)


def test_a_subject_without_tumour_slices_is_reported(tmp_path):
    make_dataset(tmp_path / "raw", grades=("HGG", "LGG"))
    folder = tmp_path / "raw" / "BraTS20_Training_000"
    save(folder / f"{folder.name}_seg.nii.gz", np.zeros(SHAPE, np.uint8))
    summary = convert_brats(tmp_path / "raw", tmp_path / "s")
    assert summary.skipped == [{"file": str(folder.resolve()), "reason": "no samples selected"}]
    assert len(Store(tmp_path / "s")) == 3


def test_no_readable_volume_at_all_is_an_error(tmp_path):
    make_dataset(tmp_path / "raw", grades=("HGG",))
    (tmp_path / "raw" / "BraTS20_Training_000" / "BraTS20_Training_000_t1.nii.gz").write_bytes(b"junk")
    with pytest.raises(InputError, match="no subject has a readable t1 volume") as err:
        convert_brats(tmp_path / "raw", tmp_path / "s")
    assert err.value.path == (tmp_path / "raw").resolve()


def test_phantom_dataset_converts(tmp_path):
    write_phantom_brats(tmp_path / "raw", subjects=4, shape=(32, 32, 16), seed=0)
    summary = convert_brats(tmp_path / "raw", tmp_path / "s", BratsOptions(modalities=("t1", "t1ce")))
    store = Store(tmp_path / "s")
    assert summary.skipped == [] and store.manifest["num_patients"] == 4
    assert set(store.labels.tolist()) == {0, 1}
    assert store.images.min() >= 0 and store.images.max() <= 1


# -- bad inputs ------------------------------------------------------------------------------
def corrupt_gzip(root: Path) -> tuple[Path, str]:
    path = root / "BraTS20_Training_001" / "BraTS20_Training_001_t1.nii.gz"
    path.write_bytes(b"this is not gzip" * 10)
    return path, "corrupt gzip data (Not a gzipped file"


def truncated_gzip(root: Path) -> tuple[Path, str]:
    path = root / "BraTS20_Training_001" / "BraTS20_Training_001_t1.nii.gz"
    path.write_bytes(path.read_bytes()[:-100])  # an interrupted download: header intact, data cut
    return path, "truncated gzip stream (the file is incomplete)"


def truncated_header(root: Path) -> tuple[Path, str]:
    path = root / "BraTS20_Training_001" / "BraTS20_Training_001_t1.nii.gz"
    path.write_bytes(path.read_bytes()[:40])
    return path, "truncated gzip stream (the file is incomplete)"


def truncated_nii(root: Path) -> tuple[Path, str]:
    path = root / "BraTS20_Training_001" / "BraTS20_Training_001_t1.nii"
    save(path, subject_volumes(1)[0]["t1"])
    (root / "BraTS20_Training_001" / "BraTS20_Training_001_t1.nii.gz").unlink()
    path.write_bytes(path.read_bytes()[:-50])
    return path, "image data is truncated or corrupt"


def seg_shape(root: Path) -> tuple[Path, str]:
    path = root / "BraTS20_Training_001" / "BraTS20_Training_001_seg.nii.gz"
    save(path, np.zeros((6, 7, 4), np.uint8))
    return path, "segmentation shape (6, 7, 4) differs from image shape (6, 7, 5)"


def nan_voxels(root: Path) -> tuple[Path, str]:
    path = root / "BraTS20_Training_001" / "BraTS20_Training_001_t1.nii.gz"
    data = subject_volumes(1)[0]["t1"].astype(np.float32)
    data[1, 1, 1] = np.nan
    data[1, 2, 1] = np.inf
    save(path, data)
    return path, "contains NaN/Inf voxels (2 of 210)"


def not_in_mapping(root: Path) -> tuple[Path, str]:
    lines = (root / "name_mapping.csv").read_text().splitlines()
    (root / "name_mapping.csv").write_text("\n".join(line for line in lines if "_001" not in line) + "\n")
    return root / "BraTS20_Training_001", "subject BraTS20_Training_001 is not listed in name_mapping.csv"


def missing_modality(root: Path) -> tuple[Path, str]:
    (root / "BraTS20_Training_001" / "BraTS20_Training_001_seg.nii.gz").unlink()
    return root / "BraTS20_Training_001", "missing seg (no BraTS20_Training_001_seg.nii[.gz])"


def bad_labels(root: Path) -> tuple[Path, str]:
    path = root / "BraTS20_Training_001" / "BraTS20_Training_001_seg.nii.gz"
    seg = subject_volumes(1)[1]
    seg[0, 0, 0] = 3
    save(path, seg)
    return path, "unexpected label values [3]"


BAD_INPUTS = [
    corrupt_gzip,
    truncated_gzip,
    truncated_header,
    truncated_nii,
    seg_shape,
    nan_voxels,
    not_in_mapping,
    missing_modality,
    bad_labels,
]


@pytest.mark.parametrize("damage", BAD_INPUTS, ids=[f.__name__ for f in BAD_INPUTS])
def test_bad_subject_is_skipped_and_reported(tmp_path, damage):
    make_dataset(tmp_path / "raw")
    path, reason = damage(tmp_path / "raw")
    summary = convert_brats(tmp_path / "raw", tmp_path / "s")
    assert len(Store(tmp_path / "s")) == 6  # the two good subjects
    [skipped] = report(tmp_path / "s")
    assert skipped["file"] == str(path.resolve()) and reason in skipped["reason"]
    assert len(summary.skipped) == 1 and "1 skipped" in summary.line()


@pytest.mark.parametrize("damage", BAD_INPUTS, ids=[f.__name__ for f in BAD_INPUTS])
def test_strict_stops_with_one_line_and_writes_nothing(tmp_path, damage):
    make_dataset(tmp_path / "raw")
    path, reason = damage(tmp_path / "raw")
    with pytest.raises(InputError) as err:
        convert_brats(tmp_path / "raw", tmp_path / "out" / "s", strict=True, workers=2)
    assert err.value.message.startswith(f"{path.resolve()}: ") and reason in err.value.message
    assert "\n" not in err.value.message
    assert visible(tmp_path / "out") == []


def test_existing_output_and_overwrite(tmp_path):
    make_dataset(tmp_path / "raw", grades=("HGG",))
    (tmp_path / "s").mkdir()
    with pytest.raises(OutputExistsError) as err:
        convert_brats(tmp_path / "raw", tmp_path / "s")
    assert err.value.message == f"{tmp_path / 's'}: output already exists"
    convert_brats(tmp_path / "raw", tmp_path / "s", overwrite=True)
    assert len(Store(tmp_path / "s")) == 3


def test_grade_labels_need_name_mapping(tmp_path):
    make_dataset(tmp_path / "raw", grades=("HGG",), mapping=False)
    with pytest.raises(InputError) as err:
        convert_brats(tmp_path / "raw", tmp_path / "s")
    assert err.value.message.startswith(f"{tmp_path / 'raw' / 'name_mapping.csv'}: not found; grade labels")
    assert not (tmp_path / "s").exists()


def test_a_folder_without_subjects_is_an_error(tmp_path):
    (tmp_path / "raw" / "notes").mkdir(parents=True)
    with pytest.raises(InputError, match="no BraTS subject folders found") as err:
        convert_brats(tmp_path / "raw", tmp_path / "s", BratsOptions(labels="mask"))
    assert err.value.path == (tmp_path / "raw").resolve()


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"modalities": ("t2ce",)},
            UnknownChoiceError,
            "unknown modality 't2ce', did you mean 't1ce', 't2'?",
        ),
        ({"modalities": ("t1", "t1")}, ConfigError, "modalities repeat: t1,t1"),
        ({"axis": "axail"}, UnknownChoiceError, "unknown slice axis 'axail', did you mean 'axial'"),
        ({"labels": "regoins"}, UnknownChoiceError, "did you mean 'regions'"),
        ({"normalisation": "z-score"}, UnknownChoiceError, "did you mean 'zscore'"),
        ({"labels": "tumour"}, ConfigError, "tumour present/absent labels need all slices"),
        ({"min_tumour_area": 0}, ConfigError, "minimum tumour area must be >= 1"),
    ],
)
def test_invalid_options(options, error, message):
    with pytest.raises(error) as err:
        BratsOptions(**options)
    assert message in err.value.message


def test_interrupted_conversion_resumes_to_identical_arrays(tmp_path, monkeypatch):
    make_dataset(tmp_path / "raw", grades=("HGG", "LGG", "HGG", "LGG"))
    convert_brats(tmp_path / "raw", tmp_path / "ref")
    real_load = brats.load_subject

    def crash_on_third(subject, *args):
        if subject.name.endswith("_002"):
            raise KeyboardInterrupt
        return real_load(subject, *args)

    monkeypatch.setattr(brats, "load_subject", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        convert_brats(tmp_path / "raw", tmp_path / "s")
    assert not (tmp_path / "s").exists()
    monkeypatch.setattr(brats, "load_subject", real_load)
    summary = convert_brats(tmp_path / "raw", tmp_path / "s")
    assert summary.resumed_units == 2
    ref, store = Store(tmp_path / "ref"), Store(tmp_path / "s")
    np.testing.assert_array_equal(ref.images, store.images)
    np.testing.assert_array_equal(ref.labels, store.labels)
    assert ref.samples == store.samples and ref.manifest == store.manifest
