"""`prepare seg`: image/mask pairs from folders (DRIVE, Montgomery), a pairs CSV, SIIM RLE + DICOM."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from medtl.errors import ConfigError, InputError, OutputError, OutputExistsError
from medtl.io.converters.seg_pairs import convert_seg_pairs, decode_rle, encode_rle
from medtl.io.store import Store


def save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def disc(shape, centre, radius):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2).astype(np.uint8)


@pytest.fixture
def drive(tmp_path):
    """DRIVE naming: images/21_training.tif (RGB) + 1st_manual/21_manual1.gif (0/255)."""
    rng = np.random.default_rng(0)
    masks = {}
    for i in (21, 22, 23):
        save(tmp_path / "images" / f"{i}_training.tif", rng.integers(0, 255, (20, 24, 3), dtype=np.uint8))
        masks[i] = disc((20, 24), (10, i - 12), 4)
        save(tmp_path / "1st_manual" / f"{i}_manual1.gif", masks[i] * 255)
    return tmp_path / "images", tmp_path / "1st_manual", masks


def test_drive_folders_with_suffixes(tmp_path, drive):
    images, manual, masks = drive
    summary = convert_seg_pairs(
        images, tmp_path / "s", masks=[manual], image_suffix="_training", mask_suffix="_manual1"
    )
    store = Store(tmp_path / "s")
    assert summary.samples == 3 and store.task == "segmentation"
    assert store.images.shape == (3, 3, 20, 24) and store.masks.shape == (3, 1, 20, 24)
    assert store.masks.dtype == np.uint8 and store.class_names == ["background", "foreground"]
    for k, i in enumerate((21, 22, 23)):
        np.testing.assert_array_equal(store.masks[k, 0], masks[i])  # 255 binarised to 1
    assert list(store.patient_ids) == ["21_training", "22_training", "23_training"]
    assert {s["label"] for s in store.samples} == {"foreground"}


def test_montgomery_left_and_right_masks_are_combined(tmp_path):
    left, right = disc((32, 32), (16, 8), 5), disc((32, 32), (16, 24), 5)
    save(
        tmp_path / "CXR_png" / "MCUCXR_0001_0.png",
        (np.arange(32 * 32).reshape(32, 32) % 200).astype(np.uint8),
    )
    save(tmp_path / "ManualMask" / "leftMask" / "MCUCXR_0001_0.png", left * 255)
    save(tmp_path / "ManualMask" / "rightMask" / "MCUCXR_0001_0.png", right * 255)
    masks = [tmp_path / "ManualMask" / "leftMask", tmp_path / "ManualMask" / "rightMask"]
    convert_seg_pairs(tmp_path / "CXR_png", tmp_path / "s", masks=masks, size=16, class_names=["bg", "lung"])
    store = Store(tmp_path / "s")
    both = np.asarray(Image.fromarray((left | right) * 255).resize((16, 16), Image.NEAREST)) > 0
    np.testing.assert_array_equal(store.masks[0, 0], both.astype(np.uint8))
    assert store.class_names == ["bg", "lung"] and store.manifest["mask_names"] == ["lung"]


def test_images_and_masks_in_one_folder_with_labels(tmp_path):
    labels = np.zeros((16, 16), np.uint8)
    labels[2:6, 2:6], labels[9:14, 9:14] = 1, 2
    for name in ("a", "b"):
        save(tmp_path / "data" / f"{name}.png", np.full((16, 16), 90, np.uint8) + labels)
        save(tmp_path / "data" / f"{name}_mask.png", labels)
    convert_seg_pairs(
        tmp_path / "data",
        tmp_path / "s",
        masks=[tmp_path / "data"],
        mask_suffix="_mask",
        binary=False,
        class_names=["background", "liver", "tumour"],
    )
    store = Store(tmp_path / "s")
    assert len(store) == 2 and [s["label"] for s in store.samples] == ["tumour", "tumour"]
    np.testing.assert_array_equal(store.masks[1, 0], labels)
    with pytest.raises(InputError, match=r"a_mask\.png: mask label 2 is not among the 2 classes"):
        convert_seg_pairs(
            tmp_path / "data",
            tmp_path / "t",
            masks=[tmp_path / "data"],
            mask_suffix="_mask",
            binary=False,
            class_names=["background", "liver"],
            strict=True,
        )


def test_pairs_csv(tmp_path, tmp_path_factory, drive):
    masks = drive[2]
    table = tmp_path / "pairs.csv"
    table.write_text(
        "image,mask\nimages/21_training.tif,1st_manual/21_manual1.gif\nimages/22_training.tif,1st_manual/nope.gif\n"
    )
    out = tmp_path_factory.mktemp("out") / "s"  # not inside the image root
    summary = convert_seg_pairs(tmp_path, out, pairs_csv=table)
    assert summary.samples == 1
    np.testing.assert_array_equal(Store(out).masks[0, 0], masks[21])
    assert summary.skipped == [
        {"file": f"{table}:3", "reason": f"mask '1st_manual/nope.gif' not found under {tmp_path}"}
    ]


def test_rle_round_trip_and_siim_conventions():
    mask = np.zeros((4, 5), np.uint8)
    mask[1:3, 1] = 1  # column 1, rows 1-2: column-major pixels 5, 6
    mask[0, 2] = 1  # column 2, row 0: pixel 8
    assert encode_rle(mask) == "5 2 1 1"  # second start counts from the end of the first run (7)
    np.testing.assert_array_equal(decode_rle("5 2 1 1", 4, 5), mask)
    assert decode_rle(" -1", 4, 5).sum() == 0 and encode_rle(np.zeros((3, 3))) == "-1"
    rng = np.random.default_rng(1)
    random = (rng.random((17, 13)) > 0.6).astype(np.uint8)
    np.testing.assert_array_equal(decode_rle(encode_rle(random), 17, 13), random)
    with pytest.raises(ValueError, match="run ends at pixel 21"):
        decode_rle("18 3", 4, 5)


def test_siim_rle_with_nested_dicom(tmp_path):
    root = tmp_path / "dicom-images-train"
    uids = ["1.2.276.0.7230010.3.1.4.8323329.1", "1.2.276.0.7230010.3.1.4.8323329.2", "1.2.3.missing"]
    for k, uid in enumerate(uids[:2]):
        folder = root / f"study{k}" / f"series{k}"
        folder.mkdir(parents=True)
        shutil.copy(get_testdata_file("MR_small.dcm", download=False), folder / f"{uid}.dcm")
    a, b = disc((64, 64), (20, 20), 6), disc((64, 64), (40, 44), 5)
    table = tmp_path / "train-rle.csv"
    table.write_text(
        "ImageId, EncodedPixels\n"  # SIIM's header has the space
        f"{uids[0]}, {encode_rle(a)}\n"
        f"{uids[1]}, -1\n"
        f"{uids[0]}, {encode_rle(b)}\n"  # a second region of the same image
        f"{uids[2]}, -1\n"
        f"{uids[1]}, 1 2 x\n"
    )
    summary = convert_seg_pairs(root, tmp_path / "s", rle_csv=table)
    store = Store(tmp_path / "s")
    assert summary.samples == 1
    np.testing.assert_array_equal(store.masks[0, 0], a | b)
    raw = pydicom.dcmread(get_testdata_file("MR_small.dcm", download=False)).pixel_array.astype(np.float32)
    np.testing.assert_allclose(
        store.images[0, 0].astype(np.float32), (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-3
    )
    reasons = sorted(r["reason"] for r in summary.skipped)
    assert reasons[0].startswith("EncodedPixels cannot be decoded")
    assert reasons[1] == f"image '{uids[2]}' not found under {root}"


@pytest.fixture
def bad_pairs(tmp_path):
    images, masks = tmp_path / "img", tmp_path / "msk"
    save(images / "ok.png", np.full((16, 16), 80, np.uint8) + np.eye(16, dtype=np.uint8))
    save(masks / "ok.png", disc((16, 16), (8, 8), 3) * 255)
    save(images / "nomask.png", np.eye(16, dtype=np.uint8) * 9)
    save(images / "small.png", np.eye(16, dtype=np.uint8) * 9)
    save(masks / "small.png", disc((8, 8), (4, 4), 2) * 255)  # half size, same aspect
    save(images / "wide.png", np.eye(16, dtype=np.uint8) * 9)
    save(masks / "wide.png", np.ones((8, 16), np.uint8))  # different aspect ratio
    (images / "broken.png").write_bytes(b"garbage, not a png")
    save(masks / "broken.png", np.ones((16, 16), np.uint8))
    return images, masks


def test_bad_pairs_are_skipped_with_reasons(tmp_path, bad_pairs):
    images, masks = bad_pairs
    summary = convert_seg_pairs(images, tmp_path / "s", masks=[masks])
    reasons = {
        r["file"].rsplit("/", 2)[-2] + "/" + r["file"].rsplit("/", 1)[-1]: r["reason"]
        for r in summary.skipped
    }
    assert summary.samples == 1
    assert reasons == {
        "img/nomask.png": f"no mask 'nomask.*' in {masks}",
        "img/broken.png": "not a readable image (unknown or damaged format)",
        "msk/small.png": "mask is 8x8, its image small.png is 16x16",
        "msk/wide.png": "mask is 8x16, its image wide.png is 16x16",
    }
    # with --size, a mask of another size but the same aspect ratio is resampled; another aspect is not
    summary = convert_seg_pairs(images, tmp_path / "r", masks=[masks], size=16)
    assert summary.samples == 2
    reasons = {r["file"].rsplit("/", 1)[-1]: r["reason"] for r in summary.skipped}
    assert reasons["wide.png"] == "mask is 8x16, its image wide.png is 16x16 (aspect ratios differ)"
    assert Store(tmp_path / "r").masks[1, 0].sum() > 0


def test_strict_stops_at_missing_mask(tmp_path, bad_pairs):
    images, masks = bad_pairs
    with pytest.raises(InputError) as err:
        convert_seg_pairs(images, tmp_path / "s", masks=[masks], strict=True)
    assert str(err.value) == f"{images / 'nomask.png'}: no mask 'nomask.*' in {masks}"
    assert not (tmp_path / "s").exists() and not (tmp_path / ".s.partial").exists()


def test_bad_options_and_output_exists(tmp_path, drive):
    images, manual, _ = drive
    with pytest.raises(ConfigError, match="exactly one mask source"):
        convert_seg_pairs(images, tmp_path / "s")
    with pytest.raises(ConfigError, match="need the class names"):
        convert_seg_pairs(images, tmp_path / "s", masks=[manual], binary=False)
    with pytest.raises(OutputError, match="is also an input"):
        convert_seg_pairs(images, manual, masks=[manual])
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "x").write_text("")
    with pytest.raises(OutputExistsError):
        convert_seg_pairs(images, tmp_path / "s", masks=[manual])
    with pytest.raises(InputError, match="mask folder not found"):
        convert_seg_pairs(images, tmp_path / "s2", masks=[tmp_path / "nowhere"])
