"""Mask layouts of real stores (phantom BraTS labels/regions, `prepare seg`), targets, refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medtl.data.masks import MaskLayout, check_mask_values, class_frequencies, mask_layout
from medtl.errors import StoreError
from medtl.io.store import Store
from tests.seg_helpers import brats_store, seg_store


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg_stores")
    return {
        "brats": brats_store(root, "mask"),
        "regions": brats_store(root, "regions"),
        "binary": seg_store(root),
        "labels": seg_store(root, classes=3),
    }


def test_brats_label_store_trains_four_classes_and_measures_regions(stores):
    store = stores["brats"]
    layout = mask_layout(store)
    assert layout.mode == "multiclass" and layout.values == (0, 1, 2, 4) and layout.regions
    assert layout.class_names == ("background", "NCR/NET", "ED", "ET") and layout.num_outputs == 4
    assert layout.channels == ("NCR/NET", "ED", "ET") and layout.loss_mode == "multiclass"
    raw = torch.from_numpy(np.asarray(store.masks[:8]).astype(np.int64))
    assert set(raw.unique().tolist()) == {0, 1, 2, 4}  # the phantom has every BraTS label
    target = layout.targets(raw)
    assert target.shape == raw.shape and set(target.unique().tolist()) == {0, 1, 2, 3}
    assert torch.equal(target == 3, raw == 4)  # ET is mapped, not dropped
    regions = layout.region_masks(target)
    np.testing.assert_array_equal(regions[:, 2], (raw[:, 0] > 0).numpy())  # WT = 1, 2, 4
    np.testing.assert_array_equal(regions[:, 0], (raw[:, 0] == 4).numpy())
    check_mask_values(store, layout)
    assert MaskLayout.from_description(layout.describe()) == layout


def test_region_store_trains_overlapping_sigmoid_channels(stores):
    store = stores["regions"]
    layout = mask_layout(store)
    assert layout.mode == "multilabel" and layout.channels == ("ET", "TC", "WT") and layout.num_outputs == 3
    masks = torch.from_numpy(np.asarray(store.masks[:8]).astype(np.int64))
    target = layout.targets(masks)
    assert target.dtype == torch.float32 and torch.equal(target, masks.float())
    logits = 10 * (2 * target - 1)
    assert torch.equal(layout.predicted(logits), target)
    # the same regions as measured from the label store's slices
    labels = stores["brats"]
    from_labels = mask_layout(labels).region_masks(
        mask_layout(labels).targets(torch.from_numpy(np.asarray(labels.masks[:8]).astype(np.int64)))
    )
    np.testing.assert_array_equal(layout.channel_masks(target), from_labels)


def test_seg_stores_binary_and_label_maps(stores):
    binary = mask_layout(stores["binary"])
    assert binary.mode == "binary" and binary.num_outputs == 1 and binary.channels == ("foreground",)
    assert mask_layout(stores["binary"], mode="multiclass").num_outputs == 2
    labels = mask_layout(stores["labels"])
    assert labels.mode == "multiclass" and labels.channels == ("disc", "square") and not labels.regions
    freq = class_frequencies(stores["labels"], labels, np.arange(len(stores["labels"])))
    assert freq.shape == (3,) and freq.sum() == pytest.approx(1.0) and freq[0] > freq[1] > 0


def test_classification_store_given_to_segmentation_names_what_it_holds(make_store):
    store = make_store(task="classification", classes=3)
    with pytest.raises(StoreError) as info:
        mask_layout(store)
    assert str(info.value) == (
        f"{store.path}: holds classification labels of 3 classes (c0, c1, c2), no masks; "
        "a segmentation run needs a mask store"
    )


def test_configured_number_of_classes_must_match_the_store(stores):
    with pytest.raises(
        StoreError, match=r"has 4 classes \(background, NCR/NET, ED, ET\) but the config asks for 3"
    ):
        mask_layout(stores["brats"], num_classes=3)


@pytest.mark.parametrize(
    ("store", "mode", "message"),
    [
        ("regions", "multiclass", "train as 'multilabel', not 'multiclass'"),
        ("brats", "multilabel", "'multilabel' needs channel masks"),
        ("labels", "binary", "has 3 classes .* 'binary' needs 2"),
    ],
)
def test_modes_that_contradict_the_store(stores, store, mode, message):
    with pytest.raises(StoreError, match=message):
        mask_layout(stores[store], mode=mode)


def _copy_store(src: Store, dst, change) -> Store:
    import shutil

    shutil.copytree(src.path, dst)
    change(dst)
    return Store(dst)


def test_mask_values_outside_the_classes_are_refused(stores, tmp_path):
    def corrupt(path):
        masks = np.load(path / "masks.npy", mmap_mode="r+")
        masks[1, 0, 0, :3] = [3, 7, 3]  # a binary store: only 0 and 1 belong
        masks.flush()

    store = _copy_store(stores["binary"], tmp_path / "bad", corrupt)
    layout = mask_layout(store)
    with pytest.raises(StoreError) as info:
        check_mask_values(store, layout)
    assert (
        str(info.value)
        == f"{store.path}: masks hold values 3, 7 outside its classes (0 background, 1 foreground)"
    )
    check_mask_values(store, layout, rows=np.array([0, 2, 3]))  # the bad row is not among them


def test_images_and_masks_of_different_size_are_refused(stores, tmp_path):
    def shrink(path):
        masks = np.load(path / "masks.npy")
        np.save(path / "masks.npy", np.ascontiguousarray(masks[..., :16]))
        manifest = json.loads((path / "manifest.json").read_text())
        manifest["mask_shape"] = [1, masks.shape[2], 16]
        (path / "manifest.json").write_text(json.dumps(manifest))

    store = _copy_store(stores["binary"], tmp_path / "small", shrink)
    with pytest.raises(StoreError, match=r"images are \(32, 32\) but masks \(32, 16\) pixels"):
        mask_layout(store)
