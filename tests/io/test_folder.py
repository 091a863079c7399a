"""`prepare folder`: one sub-folder per class, several roots, include/exclude, patient regex, DICOM."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from medtl.errors import ConfigError, InputError, OutputError, OutputExistsError, UnknownChoiceError
from medtl.io.converters.folder import convert_folder
from medtl.io.store import Store


def gray(value: int, shape=(20, 28)) -> np.ndarray:
    image = np.full(shape, value, np.uint8)
    image[0, 0] = 0  # not constant
    return image


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture
def kaggle(tmp_path):
    """Training + Testing roots with the same classes, as in the Kaggle brain-tumour dataset."""
    values = {"glioma": 50, "meningioma": 100, "notumor": 150, "pituitary": 200}
    for split, n in (("Training", 2), ("Testing", 1)):
        for name, value in values.items():
            for i in range(n):
                save(tmp_path / split / name / f"{split[:2]}_{name}_{i}.jpg", gray(value + i))
    return tmp_path / "Training", tmp_path / "Testing"


def test_roots_merge_by_class_name(tmp_path, kaggle):
    summary = convert_folder(kaggle, tmp_path / "store")
    store = Store(tmp_path / "store")
    assert summary.samples == 12 and summary.skipped == []
    assert store.class_names == ["glioma", "meningioma", "notumor", "pituitary"]
    assert store.manifest["counts"] == {"glioma": 3, "meningioma": 3, "notumor": 3, "pituitary": 3}
    assert store.images.shape == (12, 1, 20, 28) and store.images.dtype == np.float16
    for row, label in zip(store.samples, store.labels):
        assert store.class_names[label] == row["label"] and f"/{row['label']}/" in row["source_file"]
    # 8-bit images are scaled by their nominal range: x / 255, keeping brightness across images
    first_pituitary = int(np.flatnonzero(store.labels[:] == 3)[0])
    assert float(store.images[first_pituitary, 0, 5, 5]) == pytest.approx(200 / 255, abs=0.03)  # JPEG
    assert store.samples[0]["patient_id"] == "Tr_glioma_0"  # default: the file stem


@pytest.mark.parametrize("intensity", ["auto", "minmax", "percentile"])
def test_12_bit_data_in_16_bit_png_is_scaled_per_image(tmp_path, intensity):
    deep = (np.arange(16 * 16).reshape(16, 16) * 16).astype(np.uint16)  # 0..4080: 12-bit data
    save(tmp_path / "root" / "a" / "x.png", deep)
    convert_folder(tmp_path / "root", tmp_path / "s", intensity=intensity, dtype="uint8")
    images = Store(tmp_path / "s").images
    assert images.max() == 255 and images.min() == 0  # not squeezed into 0..16 by x / 65535


def test_include_exclude_and_did_you_mean(tmp_path, kaggle):
    convert_folder(kaggle, tmp_path / "a", include=["glioma", "pituitary"])
    assert Store(tmp_path / "a").class_names == ["glioma", "pituitary"]
    convert_folder(kaggle, tmp_path / "b", exclude=["notumor"])
    assert Store(tmp_path / "b").class_names == ["glioma", "meningioma", "pituitary"]
    with pytest.raises(UnknownChoiceError, match="unknown class 'pituitry', did you mean 'pituitary'"):
        convert_folder(kaggle, tmp_path / "c", exclude=["pituitry"])


def test_breakhis_patient_regex_and_nested_rgb(tmp_path):
    root = tmp_path / "breast"
    slides = {"benign": "SOB_B_A-14-22549AB", "malignant": "SOB_M_DC-14-2523"}
    rng = np.random.default_rng(0)
    for cls, slide in slides.items():
        for i in (1, 2):
            rgb = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
            save(root / cls / "SOB" / slide.replace("-", "_", 1) / "40X" / f"{slide}-40-00{i}.png", rgb)
    regex = r"SOB_[BM]_[A-Z]+-(?P<patient>[^-]+-[^-]+)-\d+-\d+"
    convert_folder(root, tmp_path / "store", patient_regex=regex)
    store = Store(tmp_path / "store")
    assert list(store.patient_ids) == ["14-22549AB", "14-22549AB", "14-2523", "14-2523"]
    assert store.images.shape == (4, 3, 24, 32)  # colour found: 3 channels by default
    convert_folder(root, tmp_path / "gray", channels=1, size=16, dtype="uint8")
    assert Store(tmp_path / "gray").images.shape == (4, 1, 16, 16)
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        convert_folder(root, tmp_path / "x", patient_regex="(unclosed")


def test_file_not_matching_the_patient_regex_is_skipped(tmp_path, kaggle):
    summary = convert_folder(kaggle[0], tmp_path / "s", patient_regex=r"(?P<patient>\w+)_0\.jpg$")
    assert summary.samples == 4  # only *_0.jpg match
    assert sorted(Store(tmp_path / "s").patient_ids) == [
        "Tr_glioma",
        "Tr_meningioma",
        "Tr_notumor",
        "Tr_pituitary",
    ]
    assert all("does not match the patient regex" in s["reason"] for s in summary.skipped)
    assert len(summary.skipped) == 4


def test_dicom_classes(tmp_path):
    import pydicom

    ct = get_testdata_file("CT_small.dcm", download=False)
    root = tmp_path / "dicom"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
    shutil.copy(ct, root / "a" / "IM0001")  # DICOM without a suffix
    shutil.copy(ct, root / "b" / "x.dcm")
    convert_folder(root, tmp_path / "s")
    store = Store(tmp_path / "s")
    assert store.class_names == ["a", "b"] and store.labels.tolist() == [0, 1]
    hu = pydicom.dcmread(ct).pixel_array.astype(np.float32) - 1024  # rescale intercept applied
    expected = (hu - hu.min()) / (hu.max() - hu.min())  # CT: per-image min-max
    assert store.images.shape == (2, 1, 128, 128)
    np.testing.assert_allclose(store.images[1, 0].astype(np.float32), expected, atol=1e-3)
    shutil.copy(get_testdata_file("MR_small.dcm", download=False), root / "b" / "y.dcm")
    with pytest.raises(InputError, match=r"2 different sizes \(128x128 \(IM0001\), 64x64 \(y.dcm\)\)"):
        convert_folder(root, tmp_path / "x")
    convert_folder(root, tmp_path / "r", size=32)
    assert Store(tmp_path / "r").images.shape == (3, 1, 32, 32)


def test_empty_class_and_unreadable_image_are_reported(tmp_path, kaggle):
    train = kaggle[0]
    (train / "empty").mkdir()
    (train / "empty" / "notes.txt").write_text("no images here")
    (train / "glioma" / "broken.png").write_bytes(b"\x89PNG but not really")
    save(train / "glioma" / ".ipynb_checkpoints" / "copy.png", gray(9))  # hidden folder: not a sample
    summary = convert_folder(train, tmp_path / "s")
    store = Store(tmp_path / "s")
    assert "empty" not in store.class_names and len(store) == 8
    report = json.loads((tmp_path / "s" / "prepare_report.json").read_text())["skipped"]
    assert {"file": str(train / "empty"), "reason": "class folder has no image files"} in report
    assert {
        "file": str(train / "glioma" / "broken.png"),
        "reason": "not a readable image (unknown or damaged format)",
    } in report
    assert len(summary.skipped) == 2


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("empty", "{root}/empty: class folder has no image files"),
        ("broken", "{root}/glioma/broken.png: not a readable image (unknown or damaged format)"),
    ],
)
def test_strict_stops_and_writes_nothing(tmp_path, kaggle, bad, message):
    train = kaggle[0]
    if bad == "empty":
        (train / "empty").mkdir()
    else:
        (train / "glioma" / "broken.png").write_bytes(b"garbage")
    with pytest.raises(InputError) as err:
        convert_folder(train, tmp_path / "s", strict=True)
    assert str(err.value) == message.format(root=train)
    assert not (tmp_path / "s").exists() and not (tmp_path / ".s.partial").exists()


def test_no_class_with_images_and_output_exists(tmp_path):
    (tmp_path / "root" / "a").mkdir(parents=True)
    with pytest.raises(InputError, match="no selected class folder holds image files"):
        convert_folder(tmp_path / "root", tmp_path / "s")
    with pytest.raises(InputError, match="no class sub-folders"):
        convert_folder(tmp_path / "root" / "a", tmp_path / "s")
    with pytest.raises(OutputError, match="is also an input"):
        convert_folder(tmp_path / "root", tmp_path / "root")
    (tmp_path / "s").mkdir()
    with pytest.raises(OutputExistsError):
        convert_folder(tmp_path / "root", tmp_path / "s")
