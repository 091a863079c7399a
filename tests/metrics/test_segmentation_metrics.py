"""Segmentation metrics: Dice/IoU against MONAI, the empty-mask policy, global scores, HD95, BraTS, CIs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance, compute_iou

from medtl.metrics import DiceMetric, dice_score
from medtl.metrics.segmentation import (
    BRATS_REGIONS,
    SegmentationMetrics,
    brats_labels,
    class_masks,
    hd95,
    region_masks,
)


def _random_masks(seed: int = 0, shape=(6, 3, 16, 16)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    true = (rng.random(shape) < 0.3).astype(np.uint8)
    pred = (true ^ (rng.random(shape) < 0.15)).astype(np.uint8)  # 15% of pixels flipped
    return pred, true


def test_dice_and_iou_match_monai_where_the_truth_is_not_empty():
    pred, true = _random_masks()
    metric = SegmentationMetrics(["a", "b", "c"])
    metric.update(pred[:4], true[:4])
    metric.update(torch.from_numpy(pred[4:]), torch.from_numpy(true[4:]))
    per_image = metric.per_image()
    p, t = torch.from_numpy(pred).float(), torch.from_numpy(true).float()
    np.testing.assert_allclose(per_image["dice"], compute_dice(p, t).numpy(), atol=1e-6)
    np.testing.assert_allclose(per_image["iou"], compute_iou(p, t).numpy(), atol=1e-6)
    out = metric.aggregate()
    np.testing.assert_allclose(out["dice_per_class"], compute_dice(p, t).mean(0).numpy(), atol=1e-6)
    assert out["dice"] == pytest.approx(float(compute_dice(p, t).mean()))
    assert out["num_samples"] == 6 and out["class_names"] == ["a", "b", "c"]


def test_empty_mask_policy():
    true = np.zeros((3, 1, 4, 4), np.uint8)
    pred = np.zeros_like(true)
    true[0, 0, :2] = 1  # image 0: 8 true pixels, 8 predicted, 4 overlap -> Dice 0.5, IoU 1/3
    pred[0, 0, 1:3] = 1
    pred[1, 0, 0, 0] = 1  # image 1: empty truth, one false positive -> 0
    # image 2: both empty -> undefined, left out (or 1 with empty="one")
    skip = SegmentationMetrics(["lesion"])
    skip.update(pred, true)
    per_image = skip.per_image()
    assert per_image["dice"][:2, 0].tolist() == [0.5, 0.0] and math.isnan(per_image["dice"][2, 0])
    assert per_image["iou"][0, 0] == pytest.approx(1 / 3)
    out = skip.aggregate()
    assert out["dice"] == pytest.approx(0.25) and out["num_defined_per_class"] == [2]
    # global: 4 overlapping of 8 + 9 pixels
    assert out["dice_global"] == pytest.approx(8 / 17) and out["iou_global"] == pytest.approx(4 / 13)
    one = SegmentationMetrics(["lesion"], empty="one")
    one.update(pred, true)
    assert one.aggregate()["dice"] == pytest.approx(0.5)
    # MONAI's ignore_empty drops image 1's false positive; medtl scores it 0.
    monai = compute_dice(torch.from_numpy(pred).float(), torch.from_numpy(true).float())
    assert math.isnan(float(monai[1, 0])) and dice_score(pred, true)[1, 0] == 0.0


def test_channel_empty_everywhere_is_null_and_left_out_of_the_mean():
    true = np.zeros((2, 2, 4, 4))
    true[:, 0, :2] = 1
    pred = true.copy()
    pred[1, 0, 2] = 1  # sample 1: 8 true pixels, 12 predicted -> 2*8/20 = 0.8
    metric = DiceMetric(["tumour", "oedema"])
    metric.update(pred[:1], true[:1])
    metric.update(torch.from_numpy(pred[1:]), torch.from_numpy(true[1:]))
    out = metric.aggregate()
    assert out["dice_per_class"] == [pytest.approx(0.9), None]
    assert out["dice"] == pytest.approx(0.9)
    assert out["class_names"] == ["tumour", "oedema"]


def test_hd95_matches_monai_and_is_undefined_for_empty_masks():
    pred, true = _random_masks(1, (3, 2, 24, 24))
    true[2, 1], pred[1, 0] = 0, 0
    ours = hd95(pred, true)
    ref = compute_hausdorff_distance(
        torch.from_numpy(pred), torch.from_numpy(true), include_background=True, percentile=95
    ).numpy()
    both = np.array([[True, True], [False, True], [True, False]])
    np.testing.assert_allclose(ours[both], ref[both], rtol=1e-6)
    assert np.isnan(ours[~both]).all()
    metric = SegmentationMetrics(["a", "b"], hd95=True)
    metric.update(pred, true)
    assert metric.aggregate()["hd95_per_class"][0] == pytest.approx(float(ref[[0, 2], 0].mean()))


def test_shape_mismatch():
    with pytest.raises(ValueError, match="must both be"):
        dice_score(np.zeros((1, 1, 4, 4)), np.zeros((1, 2, 4, 4)))


def test_brats_regions_from_raw_labels_equal_those_of_a_region_store():
    rng = np.random.default_rng(0)
    raw = rng.choice([0, 1, 2, 4], size=(4, 8, 8), p=[0.6, 0.1, 0.2, 0.1])
    labels = brats_labels(raw)
    assert set(np.unique(labels)) <= {0, 1, 2, 3} and (labels[raw == 4] == 3).all()
    from_labels = region_masks(labels, BRATS_REGIONS)
    # what `prepare brats --labels regions` writes: ET = {4}, TC = {1, 4}, WT = {1, 2, 4}
    stored = np.stack([np.isin(raw, v) for v in ((4,), (1, 4), (1, 2, 4))], axis=1)
    np.testing.assert_array_equal(from_labels, stored)
    classes = class_masks(labels, 4)
    assert classes.shape == (4, 3, 8, 8)
    np.testing.assert_array_equal(classes[:, 2], raw == 4)


def test_patient_bootstrap_keeps_patients_together_and_brackets_the_estimate():
    pred, true = _random_masks(2, (40, 2, 8, 8))
    metric = SegmentationMetrics(["a", "b"])
    metric.update(pred, true)
    groups = np.repeat(np.arange(20), 2)
    ci = metric.bootstrap(groups, n=200, seed=0)
    out = metric.aggregate()
    for key in ("dice", "dice_global", "iou", "iou_global"):
        low, high = ci[key]
        assert low <= out[key] <= high and low < high
    assert len(ci["dice_per_class"]) == 2
    again = metric.bootstrap(groups, n=200, seed=0)
    assert again == ci
    # one patient holding every image: every resample is the whole set, the interval is a point
    single = metric.bootstrap(np.zeros(40), n=20, seed=0)
    assert single["dice"][0] == pytest.approx(single["dice"][1]) == pytest.approx(out["dice"])
