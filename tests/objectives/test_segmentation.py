"""The segmentation objective on real stores: model, loss, batches, metric, refusals."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medtl.errors import ConfigError, InputError, StoreError
from medtl.objectives import get_objective, kind_for_store
from medtl.objectives.base import IMAGE, INDEX, TARGET
from medtl.objectives.configs import SegmentationConfig
from medtl.objectives.segmentation import balanced_weights
from tests.seg_helpers import brats_store, seg_store


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("objective_stores")
    return {
        "brats": brats_store(root, "mask"),
        "regions": brats_store(root, "regions"),
        "binary": seg_store(root),
    }


def objective(store, **fields):
    seg = get_objective(SegmentationConfig(**fields))
    seg.check(store)
    return seg


def batch_of(store, rows):
    rows = np.asarray(rows)
    return {
        IMAGE: torch.from_numpy(np.asarray(store.images[rows], dtype=np.float32)),
        TARGET: torch.from_numpy(np.asarray(store.masks[rows]).astype(np.int64)),
        INDEX: torch.from_numpy(rows),
    }


def test_mask_stores_pick_segmentation_and_mean_dice_is_the_monitor(stores):
    assert kind_for_store("segmentation") == "segmentation"
    config = SegmentationConfig()
    assert (config.monitor, config.monitor_mode, config.loss) == ("dice", "max", "dice_ce")


@pytest.mark.parametrize(
    ("name", "outputs", "mode"),
    [("brats", 4, "multiclass"), ("regions", 3, "multilabel"), ("binary", 1, "binary")],
)
def test_a_step_on_each_kind_of_store(stores, name, outputs, mode):
    store = stores[name]
    seg = objective(store)
    model = seg.build_model(
        backbone="resnet10t", in_chans=store.shape[0], module=None, truncate=None, image_size=32
    )
    seg.setup(store, np.arange(len(store)), torch.device("cpu"))
    batch = batch_of(store, range(4))
    loss, out = seg.step(model, batch)
    assert out["logits"].shape == (4, outputs, 32, 32) and loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.decoder.decoder.blocks[0].convs.conv_0.conv.weight.grad is not None
    metric = seg.metric(final=True)
    metric.update(out, batch)
    values = metric.aggregate()
    assert seg.describe()["task"] == mode
    assert 0 <= values["dice"] <= 1 and "hd95" in values
    if name == "brats":  # regions measured from the label map
        assert {"dice_ET", "dice_TC", "dice_WT"} <= set(values) and "brats_regions" in values


def test_perfect_logits_score_dice_one_and_overlays_are_kept(stores, tmp_path):
    store = stores["brats"]
    seg = objective(store, overlays=2)
    batch = batch_of(store, range(6))
    target = seg.layout.targets(batch[TARGET])[:, 0]
    logits = 10 * torch.nn.functional.one_hot(target, 4).permute(0, 3, 1, 2).float()
    metric = seg.metric(final=True)
    metric.update({"logits": logits}, batch)
    values = metric.aggregate()
    assert values["dice"] == pytest.approx(1.0) and values["dice_WT"] == pytest.approx(1.0)
    assert values["hd95"] == pytest.approx(0.0)
    paths = seg.write_outputs(metric, tmp_path, "test")
    assert [p.name for p in paths] == ["test_000000.png", "test_000001.png"]
    assert seg.metric().keep == 0  # validation metrics keep no images


def test_per_sample_dice_is_each_image_s_mean_over_its_defined_classes(stores):
    """predictions_test.npz's score: per image, the mean Dice of the classes defined in it."""
    store = stores["brats"]
    seg = objective(store)
    rows = np.arange(3)
    truth = np.zeros((3, 1, 4, 4), dtype=np.int64)
    truth[0, 0, :2] = 1  # image 0: class 1 (8 px)
    truth[1, 0, :2] = 2  # image 1: class 2 (8 px) and class 3 (4 px)
    truth[1, 0, 3] = 4
    pred = np.zeros((3, 4, 4), dtype=np.int64)
    pred[0, :1] = 1  # 4 of the 8 px of class 1: Dice 2*4/(4+8)
    pred[1, :2] = 2  # class 2 exact; class 3 missed: Dice 0
    # image 2: both empty everywhere: no class defined, NaN
    logits = 10 * torch.nn.functional.one_hot(torch.from_numpy(pred), 4).permute(0, 3, 1, 2).float()
    batch = {IMAGE: torch.zeros(3, 1, 4, 4), TARGET: torch.from_numpy(truth), INDEX: torch.from_numpy(rows)}
    metric = seg.metric()
    metric.update({"logits": logits}, batch)
    arrays = metric.per_sample()
    score = arrays["score"]
    assert score[0] == pytest.approx(2 / 3) and score[1] == pytest.approx(0.5) and np.isnan(score[2])
    assert arrays["dice_per_class"].shape == arrays["iou_per_class"].shape == (3, 3)
    assert arrays["iou_per_class"][0, 0] == pytest.approx(0.5)


def test_balanced_weights_are_inverse_frequencies():
    np.testing.assert_allclose(
        balanced_weights(np.array([0.5, 0.25, 0.25]), "multiclass"), [2 / 3, 4 / 3, 4 / 3]
    )
    np.testing.assert_allclose(balanced_weights(np.array([0.2]), "binary"), [4.0])


def test_sliding_window_for_images_larger_than_the_training_size(stores):
    store = stores["binary"]
    seg = objective(store)
    model = seg.build_model(
        backbone="resnet10t", in_chans=1, module=None, truncate=None, image_size=32
    ).eval()
    big = torch.randn(1, 1, 64, 48)
    with torch.no_grad():
        out = seg.predict(model, {IMAGE: big})["logits"]
    assert out.shape == (1, 1, 64, 48)
    seg.train_size = None
    with torch.no_grad():
        whole = seg.predict(model, {IMAGE: big})["logits"]
    assert not torch.allclose(out, whole)  # windows, not one pass


def test_hflip_tta_predicts_masks(stores):
    store = stores["regions"]
    seg = objective(store)
    model = seg.build_model(
        backbone="resnet10t", in_chans=2, module=None, truncate=None, image_size=32
    ).eval()
    with torch.no_grad():
        out = seg.predict(model, batch_of(store, range(2)), "hflip")
    assert out["prediction"].shape == (2, 3, 32, 32) and set(out["prediction"].unique().tolist()) <= {
        0.0,
        1.0,
    }


@pytest.mark.parametrize(
    ("module", "truncate", "message"),
    [("cdtm", None, r"adds a 'cdtm' module \(frt, staged"), (None, 1, "truncates the backbone to 1 stages")],
)
def test_cdtm_and_truncation_are_refused(stores, module, truncate, message):
    seg = objective(stores["binary"])
    with pytest.raises(ConfigError, match=message):
        seg.build_model(backbone="resnet10t", in_chans=1, module=module, truncate=truncate, image_size=32)


def test_region_monitors_need_brats_regions(stores):
    objective(stores["regions"], monitor="dice_WT")
    with pytest.raises(InputError, match="has no BraTS regions, so 'dice_WT' cannot be the monitor"):
        objective(stores["binary"], monitor="dice_WT")


def test_configured_classes_and_loss_kind_must_fit(stores):
    with pytest.raises(StoreError, match=r"has 4 classes .* but the config asks for 2"):
        objective(stores["brats"], num_classes=2)
    seg = objective(stores["regions"], loss="ce")
    with pytest.raises(ConfigError, match="use 'bce' for multi-label"):
        seg.setup(stores["regions"], np.arange(4), torch.device("cpu"))
