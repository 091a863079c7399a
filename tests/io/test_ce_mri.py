"""`prepare ce-mri`: Figshare CE-MRI .mat v7.3 files written with h5py, as MATLAB lays them out."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from medtl.errors import InputError, OutputExistsError, UnknownChoiceError
from medtl.io.converters.ce_mri import CLASSES, convert_ce_mri
from medtl.io.store import Store
from tests.helpers import visible

H, W = 24, 32  # non-square, so a missing transpose would show


def ce_image(seed: int, shape=(H, W)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 900, shape).astype(np.int16)
    image[0, :] = 1000 + seed  # a bright top row: orientation check
    return image


def ce_mask(shape=(H, W)) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[3:9, 4:14] = 1
    return mask


def write_ce_mat(
    path,
    *,
    label=1,
    pid="100360",
    image=None,
    mask=None,
    pid_attr=True,
    drop=(),
):
    """One CE-MRI file: struct ``cjdata`` with MATLAB's v7.3 layout (transposed arrays, char codes)."""
    image = ce_image(label) if image is None else image
    mask = ce_mask(image.shape) if mask is None else mask
    fields = {
        "image": (image, "int16"),
        "label": (np.array([[float(label)]]), "double"),
        "PID": (np.array([[ord(c)] for c in pid], dtype=np.uint16), "char"),
        "tumorBorder": (np.array([[3.0, 4.0, 8.0, 4.0, 8.0, 13.0]]), "double"),
        "tumorMask": (mask, "logical"),
    }
    with h5py.File(path, "w", userblock_size=512) as fh:
        group = fh.create_group("cjdata")
        group.attrs["MATLAB_class"] = np.bytes_("struct")
        for name, (value, cls) in fields.items():
            if name in drop:
                continue
            data = value if name == "PID" else value.T  # MATLAB is column-major
            ds = group.create_dataset(name, data=data)
            if name != "PID" or pid_attr:
                ds.attrs["MATLAB_class"] = np.bytes_(cls)
    with open(path, "r+b") as fh:  # the MATLAB header in the userblock
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 .")


@pytest.fixture
def dataset(tmp_path):
    """Six files with all three labels, spread over two folders like the Figshare archive."""
    root = tmp_path / "figshare"
    labels = {1: 1, 2: 2, 3: 3, 4: 3, 5: 2, 6: 1}
    for i, label in labels.items():
        folder = root / ("brainTumorDataPublic_1-3" if i <= 3 else "brainTumorDataPublic_4-6")
        folder.mkdir(parents=True, exist_ok=True)
        write_ce_mat(folder / f"{i}.mat", label=label, pid=f"P{i % 3}", image=ce_image(i))
    with h5py.File(root / "cvind.mat", "w") as fh:  # the dataset's cross-validation index file
        fh.create_dataset("cvind", data=np.arange(6.0)[None])
    return root, labels


def test_every_image_gets_its_own_label(tmp_path, dataset):
    root, labels = dataset
    summary = convert_ce_mri(root, tmp_path / "store")
    store = Store(tmp_path / "store")
    assert summary.samples == 6 and summary.skipped == []
    assert store.task == "classification" and store.class_names == list(CLASSES)
    assert store.labels.tolist() == [labels[i] - 1 for i in range(1, 7)]
    assert store.manifest["counts"] == {"meningioma": 2, "glioma": 2, "pituitary": 2}
    assert [s["label"] for s in store.samples] == [CLASSES[labels[i] - 1] for i in range(1, 7)]
    assert list(store.patient_ids) == ["P1", "P2", "P0", "P1", "P2", "P0"]
    assert not any("cvind" in s["source_file"] for s in store.samples)
    assert store.images.shape == (6, 1, H, W) and store.images.dtype == np.float16
    raw = ce_image(4).astype(np.float32)
    expected = (raw - raw.min()) / (raw.max() - raw.min())  # int16 MRI: per-image min-max
    np.testing.assert_allclose(store.images[3, 0], expected, atol=1e-3)
    assert store.manifest["num_patients"] == 3


def test_segmentation_stores_tumor_mask(tmp_path, dataset):
    root, _ = dataset
    convert_ce_mri(root, tmp_path / "seg", task="segmentation", dtype="uint8")
    store = Store(tmp_path / "seg")
    assert store.task == "segmentation" and store.labels is None
    assert store.masks.shape == (6, 1, H, W) and store.masks.dtype == np.uint8
    np.testing.assert_array_equal(store.masks[0, 0], ce_mask())
    assert store.images.dtype == np.uint8 and store.images[0].max() == 255
    assert store.class_names == ["background", "tumour"]
    assert store.samples[1]["label"] == "glioma"  # tumour type kept for stratified splits


def test_mixed_sizes_need_size_and_resize_masks_nearest(tmp_path):
    root = tmp_path / "mixed"
    root.mkdir()
    write_ce_mat(root / "1.mat", label=1, image=ce_image(1, (32, 32)), mask=ce_mask((32, 32)))
    write_ce_mat(root / "2.mat", label=3, image=ce_image(2, (16, 16)), mask=ce_mask((16, 16)))
    with pytest.raises(InputError, match=r"2 different sizes .*pass --size S"):
        convert_ce_mri(root, tmp_path / "a", task="segmentation")
    convert_ce_mri(root, tmp_path / "b", task="segmentation", size=24, channels=3)
    store = Store(tmp_path / "b")
    assert store.images.shape == (2, 3, 24, 24) and store.masks.shape == (2, 1, 24, 24)
    assert set(np.unique(store.masks)) == {0, 1}
    np.testing.assert_array_equal(store.images[0, 0], store.images[0, 2])  # gray replicated


def test_pid_without_char_attribute_is_decoded(tmp_path):
    root = tmp_path / "r"
    root.mkdir()
    write_ce_mat(root / "1.mat", label=2, pid="MRN 0042", pid_attr=False)
    convert_ce_mri(root, tmp_path / "s")
    assert list(Store(tmp_path / "s").patient_ids) == ["MRN 0042"]


@pytest.fixture
def bad_dataset(tmp_path):
    root = tmp_path / "bad"
    root.mkdir()
    write_ce_mat(root / "1.mat", label=1)
    write_ce_mat(root / "2.mat", label=4)  # not a CE-MRI class
    (root / "3.mat").write_bytes(b"definitely not HDF5" * 10)
    write_ce_mat(root / "4.mat", label=2, drop=("PID",))
    write_ce_mat(root / "5.mat", label=3, mask=np.zeros((8, 8), np.uint8))  # mask size differs
    return root


def test_bad_files_are_skipped_and_reported(tmp_path, bad_dataset):
    summary = convert_ce_mri(bad_dataset, tmp_path / "out", task="segmentation")
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    reasons = {r["file"].rsplit("/", 1)[-1]: r["reason"] for r in report["skipped"]}
    assert summary.samples == 1 and Store(tmp_path / "out").samples[0]["label"] == "meningioma"
    assert "cjdata/label is [4.0], expected 1 (meningioma)" in reasons["2.mat"]
    assert "not a readable .mat file" in reasons["3.mat"]
    assert "no variable 'cjdata/PID'" in reasons["4.mat"]
    assert reasons["5.mat"] == "cjdata/tumorMask is (8, 8), cjdata/image is (24, 32)"


def test_strict_stops_at_the_first_bad_file_and_leaves_nothing(tmp_path, bad_dataset):
    with pytest.raises(InputError) as err:
        convert_ce_mri(bad_dataset, tmp_path / "out", strict=True)
    assert str(err.value) == (
        f"{bad_dataset / '2.mat'}: cjdata/label is [4.0], "
        "expected 1 (meningioma), 2 (glioma) or 3 (pituitary)"
    )
    assert visible(tmp_path) == ["bad"]  # no store, no partial directory


def test_output_exists_and_options(tmp_path, dataset):
    root, _ = dataset
    (tmp_path / "out").mkdir()
    with pytest.raises(OutputExistsError, match="output already exists"):
        convert_ce_mri(root, tmp_path / "out")
    convert_ce_mri(root, tmp_path / "out", overwrite=True)
    assert len(Store(tmp_path / "out")) == 6
    with pytest.raises(UnknownChoiceError, match="did you mean 'segmentation'"):
        convert_ce_mri(root, tmp_path / "x", task="segmentaton")
    with pytest.raises(InputError, match=r"no \.mat files found"):
        convert_ce_mri(tmp_path / "out", tmp_path / "y")


def test_workers_give_the_same_store(tmp_path, dataset):
    root, _ = dataset
    convert_ce_mri(root, tmp_path / "one")
    convert_ce_mri(root, tmp_path / "two", workers=2)
    one, two = Store(tmp_path / "one"), Store(tmp_path / "two")
    assert one.checksum == two.checksum and one.labels.tolist() == two.labels.tolist()
