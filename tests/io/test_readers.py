"""Readers: PNG/JPEG/TIFF/BMP/GIF via Pillow, DICOM via pydicom, .mat via h5py/scipy, masks."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from medtl.errors import InputError
from medtl.io.readers import image_info, is_dicom, is_image_file, read_image, read_mask, read_mat

RAMP = (np.arange(24 * 32).reshape(24, 32) % 256).astype(np.uint8)


def dicom_file(name: str):
    # Only files bundled with pydicom: get_testdata_file would try to download others.
    path = get_testdata_file(name, download=False)
    assert path is not None, f"pydicom test file {name} missing"
    return path


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".gif"])
def test_lossless_grayscale_formats_keep_values(tmp_path, suffix):
    path = tmp_path / f"x{suffix}"
    Image.fromarray(RAMP).save(path)
    image, meta = read_image(path)
    assert image.dtype == np.float32 and image.shape == (24, 32)
    np.testing.assert_array_equal(image, RAMP.astype(np.float32))
    assert meta.channels == 1 and meta.value_range == (0.0, 255.0)
    assert image_info(path) == (24, 32, 1)


def test_jpeg_and_rgb(tmp_path):
    rgb = np.stack([RAMP, 255 - RAMP, np.full_like(RAMP, 7)], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "x.jpg", quality=100, subsampling=0)
    image, meta = read_image(tmp_path / "x.jpg")
    assert image.shape == (24, 32, 3) and meta.channels == 3
    assert np.abs(image - rgb).mean() < 3  # lossy, but close
    assert image_info(tmp_path / "x.jpg") == (24, 32, 3)


def test_rgba_and_palette_become_rgb(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, 255
    Image.fromarray(rgba).save(tmp_path / "a.png")
    image, meta = read_image(tmp_path / "a.png")
    assert image.shape == (16, 16, 3) and meta.channels == 3 and image[0, 0].tolist() == [200, 0, 0]
    Image.fromarray(RAMP).convert("P").save(tmp_path / "p.png")
    image, meta = read_image(tmp_path / "p.png")
    assert image.shape == (24, 32, 3) and meta.value_range == (0.0, 255.0)


def test_16bit_png_has_16bit_range_and_float_tiff_none(tmp_path):
    deep = (np.arange(16 * 16).reshape(16, 16) * 250).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "d.png")
    image, meta = read_image(tmp_path / "d.png")
    np.testing.assert_array_equal(image, deep.astype(np.float32))
    assert meta.value_range == (0.0, 65535.0)
    Image.fromarray(deep.astype(np.float32) / 7).save(tmp_path / "f.tif")
    image, meta = read_image(tmp_path / "f.tif")
    assert meta.value_range is None and image.max() == pytest.approx(deep.max() / 7)


def test_dicom_rescale_slope_intercept_is_applied():
    path = dicom_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    image, meta = read_image(path)
    assert meta.format == "dicom" and meta.channels == 1
    np.testing.assert_array_equal(image, ds.pixel_array.astype(np.float32) - 1024)  # HU
    assert meta.value_range is None  # rescaled: scaled from the data
    assert image_info(path) == (128, 128, 1)


def test_dicom_monochrome1_is_inverted(tmp_path):
    ds = pydicom.dcmread(dicom_file("MR_small.dcm"))
    original = ds.pixel_array.astype(np.float32)
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "m1.dcm")
    image, _ = read_image(tmp_path / "m1.dcm")
    np.testing.assert_array_equal(image, original.min() + original.max() - original)
    assert image.argmax() == original.argmin()


def test_dicom_without_suffix_and_colour_dicom(tmp_path):
    shutil.copy(dicom_file("MR_small.dcm"), tmp_path / "IM0001")
    shutil.copy(dicom_file("MR_small.dcm"), tmp_path / "1.2.840.113619.2.55")  # UID-style name
    (tmp_path / "notes.txt").write_text("not an image")
    assert is_dicom(tmp_path / "IM0001") and is_image_file(tmp_path / "1.2.840.113619.2.55")
    assert not is_image_file(tmp_path / "notes.txt")
    assert read_image(tmp_path / "IM0001")[0].shape == (64, 64)
    image, meta = read_image(dicom_file("SC_ybr_full_422_uncompressed.dcm"))
    assert image.shape == (100, 100, 3) and meta.channels == 3


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: p.write_bytes(b"this is not a png at all"), "not a readable image"),
        (lambda p: p.write_bytes(_png_bytes()[:120]), "not a readable image"),
        (lambda p: None, "file not found"),
    ],
    ids=["garbage", "truncated", "missing"],
)
def test_unreadable_images_name_the_file(tmp_path, make, problem):
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(InputError) as err:
        read_image(path)
    assert str(err.value).startswith(str(path)) and problem in str(err.value)
    assert "\n" not in str(err.value)


def _png_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 48), dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    ("name", "problem"),
    [("MR_truncated.dcm", "cannot be decoded"), ("SC_rgb_rle_2frame.dcm", r"multi-frame DICOM \(2 frames\)")],
)
def test_bad_dicom(name, problem):
    with pytest.raises(InputError, match=problem):
        read_image(dicom_file(name))


def test_dicom_suffix_with_other_content(tmp_path):
    (tmp_path / "x.dcm").write_bytes(b"\0" * 10)
    with pytest.raises(InputError, match="not a readable DICOM file"):
        read_image(tmp_path / "x.dcm")


def _write_v73(path, image, pid):
    with h5py.File(path, "w", userblock_size=512) as fh:
        group = fh.create_group("cjdata")
        group.create_dataset("image", data=image.T)  # MATLAB arrays are stored transposed
        codes = group.create_dataset("PID", data=np.array([[ord(c)] for c in pid], dtype=np.uint16))
        codes.attrs["MATLAB_class"] = np.bytes_("char")
    with open(path, "r+b") as fh:
        fh.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema")


def test_read_mat_v73_transposes_and_decodes_chars(tmp_path):
    image = np.arange(6 * 10, dtype=np.int16).reshape(6, 10)
    _write_v73(tmp_path / "1.mat", image, "MR-042")
    data = read_mat(tmp_path / "1.mat")
    np.testing.assert_array_equal(data["cjdata/image"], image)
    assert data["cjdata/PID"] == "MR-042"
    assert read_mat(tmp_path / "1.mat", ["cjdata/PID"]) == {"cjdata/PID": "MR-042"}
    with pytest.raises(InputError, match="no variable 'cjdata/label'"):
        read_mat(tmp_path / "1.mat", ["cjdata/label"])


def test_read_mat_v5_with_scipy(tmp_path):
    from scipy.io import savemat

    image = np.arange(12, dtype=np.int16).reshape(3, 4)
    savemat(tmp_path / "old.mat", {"cjdata": {"image": image, "label": 2.0, "PID": "77"}})
    data = read_mat(tmp_path / "old.mat", ["cjdata/image", "cjdata/label", "cjdata/PID"])
    np.testing.assert_array_equal(data["cjdata/image"], image)
    assert data["cjdata/label"] == 2.0 and data["cjdata/PID"] == "77"


@pytest.mark.parametrize("content", [b"garbage" * 20, b"", b"MATLAB 5.0"], ids=["garbage", "empty", "cut"])
def test_read_mat_garbage(tmp_path, content):
    (tmp_path / "x.mat").write_bytes(content)
    with pytest.raises(InputError, match=r"x\.mat: not a readable \.mat file"):
        read_mat(tmp_path / "x.mat")


def test_read_mask_modes(tmp_path):
    labels = np.zeros((16, 16), np.uint8)
    labels[2:6, 2:6], labels[8:12, 8:12] = 1, 2
    img = Image.fromarray(labels, mode="L").convert("P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    img.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png", binary=False), labels)  # palette indices
    red = np.zeros((16, 16, 3), np.uint8)
    red[labels > 0, 0] = 255
    Image.fromarray(red).save(tmp_path / "red.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "red.png") > 0, labels > 0)
    with pytest.raises(InputError, match="channels differ"):
        read_mask(tmp_path / "red.png", binary=False)
    Image.fromarray(labels.astype(np.float32) + 0.5).save(tmp_path / "f.tif")
    with pytest.raises(InputError, match="not integers"):
        read_mask(tmp_path / "f.tif", binary=False)
