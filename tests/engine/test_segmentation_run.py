"""`medtl finetune` on mask stores: a U-Net trains, resumes exactly and evaluates (own and external
stores, corruptions), on a phantom BraTS store and on a `prepare seg` store, with a tiny encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medtl.engine import RunConfig, run
from medtl.errors import ConfigError, InputError, StoreError, TrainingError
from medtl.evaluate.evaluate import evaluate_run
from medtl.models import read_model_metadata
from tests.engine.faults import KILLED
from tests.engine.test_resume import run_killed, without_timing
from tests.seg_helpers import brats_store, seg_store


@pytest.fixture(scope="module")
def seg_stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg_run_stores")
    return {
        "brats": brats_store(root, "mask").path,
        "regions": brats_store(root, "regions").path,
        "binary": seg_store(root).path,
        "binary48": seg_store(root / "big", size=48).path,  # larger images: sliding windows
        "labels": seg_store(root, classes=3).path,
    }


_BASE = {
    "backbone": "resnet10t",
    "init": "random",
    "strategy": "full",
    "phase_epochs": {"all": 2},
    "batch_size": 8,
    "num_workers": 0,
    "normalise": "none",
    "lr": 3e-3,
    "bootstrap": 20,
    "device": "cpu",
    "checkpoint_interval": 0,
}


@pytest.fixture
def seg_config(tmp_path, seg_stores):
    def make(store: str = "brats", **fields) -> RunConfig:
        values = {**_BASE, "data": seg_stores.get(store, store), "out": tmp_path / "runs", **fields}
        return RunConfig.parse(values)

    return make


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory, seg_stores):
    """One finished run on the `prepare seg` store, shared by the evaluation and refusal tests."""
    out = tmp_path_factory.mktemp("binary_run")
    config = RunConfig.parse({**_BASE, "data": seg_stores["binary"], "out": out, "run_name": "binary"})
    return run(config).run_dir


def test_brats_label_store_trains_a_unet_and_writes_dice_iou_hd95_regions_and_overlays(
    seg_config, seg_stores
):
    config = seg_config("brats", phase_epochs={"all": 3})
    assert config.objective.kind == "segmentation"  # picked from the store
    result = run(config)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    # the best checkpoint is the epoch of the highest validation mean Dice
    dices = [h["val_dice"] for h in metrics["history"]]
    assert metrics["monitor"] == "dice"
    best = max(range(len(dices)), key=lambda i: -1.0 if dices[i] is None else dices[i])
    assert metrics["best"]["global_epoch"] == metrics["history"][best]["global_epoch"]
    assert metrics["objective"] == "segmentation" and metrics["task"] == "multiclass"
    assert metrics["class_names"] == ["background", "NCR/NET", "ED", "ET"]
    test = metrics["test"]
    for key in ("dice", "dice_global", "iou", "iou_global", "hd95", "dice_ET", "dice_TC", "dice_WT"):
        assert key in test, key
    assert len(test["dice_per_class"]) == 3 and test["class_names"] == ["NCR/NET", "ED", "ET"]
    assert set(test["ci95"]) >= {"dice", "iou", "hd95", "dice_ET", "dice_TC", "dice_WT"}
    assert all(h["val_dice"] is not None for h in metrics["history"])
    overlays = sorted(p.name for p in (result.run_dir / "overlays").iterdir())
    assert any(n.startswith("val_") for n in overlays) and any(n.startswith("test_") for n in overlays)
    meta = read_model_metadata(result.run_dir / "checkpoints" / "best.safetensors")
    assert meta["objective"] == "segmentation" and meta["spec"]["architecture"] == "unet"
    own = evaluate_run(result.run_dir, seg_stores["brats"], bootstrap=0, num_workers=0)
    assert own.metrics["dice_WT"] == pytest.approx(test["dice_WT"])  # the run's own test partition


def test_frozen_encoder_strategy_trains_decoder_and_head_only(seg_config):
    result = run(seg_config("labels", strategy="linear", phase_epochs={"head": 1}, bootstrap=0))
    phase = json.loads((result.run_dir / "metrics.json").read_text())["phases"][0]
    assert phase["trained_groups"] == ["decoder", "head"] and not phase["cached_features"]


@pytest.mark.parametrize("store", ["brats", "binary"])
def test_killed_segmentation_run_resumes_to_identical_metrics(seg_config, store):
    common = dict(phase_epochs={"all": 2}, augment="default", deterministic=True, bootstrap=0)
    reference = seg_config(store, run_name="reference", **common)
    run(reference)
    config = seg_config(store, run_name="interrupted", **common)
    killed = run_killed(config, 1)
    assert killed.returncode == KILLED, killed.stderr[-2000:]
    result = run(config)
    assert result.resumed
    expected = json.loads((reference.run_dir / "metrics.json").read_text())
    got = json.loads((config.run_dir / "metrics.json").read_text())
    for key in ("history", "best", "val", "test"):
        assert without_timing(got[key]) == without_timing(expected[key]), key


def test_evaluate_own_and_external_stores_with_corruptions_moving_only_images(binary_run, seg_stores):
    own = evaluate_run(binary_run, seg_stores["binary"], bootstrap=10, num_workers=0)
    assert own.split == "test" and not own.external and "dice" in own.metrics.values
    recorded = json.loads((binary_run / "metrics.json").read_text())["test"]
    assert own.metrics["dice"] == pytest.approx(recorded["dice"])  # the same evaluation
    external = evaluate_run(
        binary_run,
        seg_stores["binary48"],
        bootstrap=10,
        num_workers=0,
        robustness=True,
        corruptions=["gaussian_noise"],
        severities=[5],
    )
    assert external.external and external.split == "all" and external.num_samples == 24
    saved = json.loads(external.path.read_text())
    assert saved["task"] == "binary" and "hd95" in saved["metrics"]
    rows = saved["robustness"]["rows"]
    assert [(r["corruption"], r["severity"]) for r in rows] == [("clean", 0), ("gaussian_noise", 5)]
    assert rows[0]["dice"] == pytest.approx(external.metrics["dice"])
    assert saved["robustness"]["metric"] == "dice"
    assert any(p.name.startswith("eval_seg2-all_") for p in (binary_run / "overlays").iterdir())


def test_a_segmentation_run_writes_per_image_test_dice_for_paired_tests(binary_run, seg_stores):
    from medtl.engine.predictions import PREDICTIONS_FILE
    from medtl.io.store import Store
    from medtl.report.reader import read_predictions

    metrics = json.loads((binary_run / "metrics.json").read_text())
    with np.load(binary_run / PREDICTIONS_FILE) as data:
        index, patient, score = data["index"], data["patient"], data["score"]
        assert data["dice_per_class"].shape == (len(index), 1)
    store = Store(seg_stores["binary"])
    assert len(index) == metrics["data"]["counts"]["test"] and len(set(index.tolist())) == len(index)
    assert patient.tolist() == store.patient_ids[index].tolist()
    # one foreground class: the test's mean Dice is the mean of the defined per-image values
    assert float(np.nanmean(score)) == pytest.approx(metrics["test"]["dice"])
    assert read_predictions(binary_run / PREDICTIONS_FILE).score.shape == (len(index),)


def test_corruptions_leave_masks_alone(seg_stores):
    from medtl.evaluate.segmentation import SegmentationPairs
    from medtl.io.store import Store

    store = Store(seg_stores["binary"])
    clean = SegmentationPairs(store, np.arange(4), None)
    noisy = SegmentationPairs(store, np.arange(4), None, "gaussian_noise", 5)
    for a, b in zip(clean, noisy):
        assert not np.allclose(a["image"], b["image"]) and np.array_equal(a["target"], b["target"])


# -- bad input ----------------------------------------------------------------------------------------
def test_classification_objective_on_a_mask_store_and_the_reverse(seg_config, seg_stores, tmp_path):
    with pytest.raises(InputError, match=r"brats_mask: is a segmentation store .* a classifier needs"):
        run(seg_config("brats", objective={"kind": "classification"}))
    from tests.data.conftest import write_store

    cls = write_store(tmp_path / "cls", classes=3)
    config = seg_config(str(cls.path), objective={"kind": "segmentation"})
    with pytest.raises(
        StoreError, match=r"cls: holds classification labels of 3 classes \(c0, c1, c2\), no masks"
    ):
        run(config)
    assert not config.run_dir.exists()


def test_cdtm_strategy_on_a_segmentation_run(seg_config):
    config = seg_config("binary", strategy="frt", phase_epochs={})
    with pytest.raises(ConfigError, match="adds a 'cdtm' module"):
        run(config)
    assert not config.run_dir.exists()


def test_a_run_directory_of_one_objective_resumed_with_another(seg_config, tmp_path):
    from tests.data.conftest import write_store

    cls = write_store(tmp_path / "cls", classes=2)
    classification = RunConfig.parse(
        {**_BASE, "data": cls.path, "out": tmp_path / "runs", "run_name": "shared"}
    )
    classification.run_dir.mkdir(parents=True)
    classification.save(classification.run_dir / "config.toml")
    segmentation = seg_config("binary", run_name="shared")
    with pytest.raises(
        TrainingError, match=r"shared: holds a run with a different config \(differs in: .*objective"
    ):
        run(segmentation)
    assert sorted(p.name for p in segmentation.run_dir.iterdir()) == ["config.toml"]


def test_external_store_with_masks_of_another_size_is_refused(binary_run, seg_stores, tmp_path):
    import shutil

    bad = tmp_path / "bad_store"
    shutil.copytree(seg_stores["binary"], bad)
    masks = np.load(bad / "masks.npy")
    np.save(bad / "masks.npy", np.ascontiguousarray(masks[..., :16]))
    # The verification at the start sees the rewritten file first (its size is not the manifest's).
    with pytest.raises(StoreError, match=r"masks.npy: is \d+ bytes, the manifest says \d+"):
        evaluate_run(binary_run, bad, num_workers=0)
