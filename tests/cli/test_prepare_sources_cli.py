"""`medtl prepare ce-mri | folder | list | seg`: flags reach the converters; bad input -> one line, exit 2."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from medtl.io.store import Store
from medtl_cli.main import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, ["prepare", *[str(a) for a in args]])


def error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def ramp(value: int, shape=(16, 20)) -> np.ndarray:
    image = np.full(shape, value, np.uint8)
    image[0, :] = 0
    return image


@pytest.fixture
def classes(tmp_path):
    for split in ("Training", "Testing"):
        for i, name in enumerate(("glioma", "notumor", "pituitary")):
            save(tmp_path / split / name / f"{split}-{name}-P{i}.png", ramp(60 * (i + 1)))
    return tmp_path / "Training", tmp_path / "Testing"


def test_folder_merges_roots_and_passes_options(tmp_path, classes):
    out = tmp_path / "s"
    result = invoke(
        "folder", *classes, out, "--exclude", "notumor", "--patient-regex", r"-(?P<patient>P\d)\.png$",
        "--size", "8", "--channels", "3", "--dtype", "uint8", "--workers", "2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    store = Store(out)
    assert store.class_names == ["glioma", "pituitary"] and store.images.shape == (4, 3, 8, 8)
    assert store.images.dtype == np.uint8 and sorted(set(store.patient_ids)) == ["P0", "P2"]
    assert f"{out}: 4 samples from 4 inputs, 0 skipped" in result.stdout


def test_folder_unknown_class_says_did_you_mean(tmp_path, classes):
    result = invoke("folder", classes[0], tmp_path / "s", "--include", "glioma,pituitry")
    assert result.exit_code == 2
    assert error_lines(result) == ["error: unknown class 'pituitry', did you mean 'pituitary'?"]


def test_folder_strict_unreadable_image(tmp_path, classes):
    bad = classes[0] / "glioma" / "broken.png"
    bad.write_bytes(b"not a png")
    result = invoke("folder", classes[0], tmp_path / "s", "--strict")
    assert result.exit_code == 2
    assert error_lines(result) == [f"error: {bad}: not a readable image (unknown or damaged format)"]
    assert not (tmp_path / "s").exists() and not (tmp_path / ".s.partial").exists()
    ok = invoke("folder", classes[0], tmp_path / "s")  # default: skipped and reported
    assert ok.exit_code == 0 and "1 skipped (see prepare_report.json)" in ok.stdout


def test_folder_sizes_differ_and_output_exists(tmp_path, classes):
    save(classes[0] / "glioma" / "big.png", ramp(10, (32, 32)))
    result = invoke("folder", classes[0], tmp_path / "s")
    assert result.exit_code == 2
    assert "images have 2 different sizes" in result.stderr and "pass --size S" in result.stderr
    result = invoke("folder", classes[0], classes[1])
    assert result.exit_code == 2
    assert error_lines(result) == [
        f"error: {classes[1]}: output already exists (pass --overwrite to replace it)"
    ]


def _write_ce(path, label):
    with h5py.File(path, "w", userblock_size=512) as fh:
        group = fh.create_group("cjdata")
        group.create_dataset("image", data=np.arange(16 * 16, dtype=np.int16).reshape(16, 16) * label)
        group.create_dataset("label", data=np.array([[float(label)]]))
        pid = group.create_dataset("PID", data=np.array([[ord(c)] for c in f"pid{label}"], dtype=np.uint16))
        pid.attrs["MATLAB_class"] = np.bytes_("char")
        mask = np.zeros((16, 16), np.uint8)
        mask[4:8, 4:8] = 1
        group.create_dataset("tumorMask", data=mask)


def test_ce_mri(tmp_path):
    for label in (1, 2, 3):
        (tmp_path / "raw").mkdir(exist_ok=True)
        _write_ce(tmp_path / "raw" / f"{label}.mat", label)
    result = invoke("ce-mri", tmp_path / "raw", tmp_path / "s", "--task", "segmentation", "--size", "8")
    assert result.exit_code == 0, result.output
    store = Store(tmp_path / "s")
    assert store.masks.shape == (3, 1, 8, 8) and [s["label"] for s in store.samples] == [
        "meningioma",
        "glioma",
        "pituitary",
    ]
    result = invoke("ce-mri", tmp_path / "raw", tmp_path / "t", "--task", "detection")
    assert result.exit_code == 2 and "unknown task 'detection'" in result.stderr


def test_list_chexpert_uncertainty_and_strict_unknown_label(tmp_path):
    raw = tmp_path / "raw"
    save(raw / "train" / "patient00001" / "study1" / "view1_frontal.jpg", ramp(90))
    csv = raw / "train.csv"
    csv.write_text(
        "Path,Sex,Age,Frontal/Lateral,AP/PA,Edema,Cardiomegaly\n"
        "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Male,60,Frontal,AP,-1.0,1.0\n"
    )
    result = invoke("list", csv, tmp_path / "s", "--classes", "Edema,Cardiomegaly", "--uncertainty", "ignore")
    assert result.exit_code == 0, result.output
    store = Store(tmp_path / "s")
    assert store.labels[:].tolist() == [[-1.0, 1.0]] and list(store.patient_ids) == ["patient00001"]
    labels = raw / "labels.csv"
    labels.write_text("name,label\ntrain/patient00001/study1/view1_frontal.jpg,tbc\n")
    result = invoke("list", labels, tmp_path / "t", "--classes", "normal,tb", "--strict")
    assert result.exit_code == 2
    assert error_lines(result) == [f"error: {labels}:2: unknown label 'tbc', did you mean 'tb'?"]


def test_seg_masks_and_missing_mask(tmp_path):
    mask = np.zeros((16, 16), np.uint8)
    mask[3:9, 5:12] = 255
    for name in ("a", "b"):
        save(tmp_path / "img" / f"{name}.png", ramp(100, (16, 16)))
    save(tmp_path / "msk" / "a_mask.gif", mask)
    result = invoke(
        "seg", tmp_path / "img", tmp_path / "s", "--masks", tmp_path / "msk", "--mask-suffix", "_mask"
    )
    assert result.exit_code == 0, result.output
    assert "1 skipped" in result.stdout
    np.testing.assert_array_equal(Store(tmp_path / "s").masks[0, 0], mask > 0)
    result = invoke(
        "seg",
        tmp_path / "img",
        tmp_path / "t",
        "--masks",
        tmp_path / "msk",
        "--mask-suffix",
        "_mask",
        "--strict",
    )
    assert result.exit_code == 2
    assert error_lines(result) == [
        f"error: {tmp_path / 'img' / 'b.png'}: no mask 'b_mask.*' in {tmp_path / 'msk'}"
    ]
