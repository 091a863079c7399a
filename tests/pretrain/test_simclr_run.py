"""SimCLR runs end to end on tiny stores: k-NN monitor, exports that --init loads, bad inputs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from medtl.errors import ConfigError
from medtl.models import build_model, load_init
from medtl.pretrain.simclr import pretrain_simclr, simclr_config
from tests.data.conftest import write_store

BASE = {"batch_size": 8, "num_workers": 0, "device": "cpu", "seed": 0, "checkpoint_interval": 0}


def config(tmp_path, data, **kwargs):
    base = {**BASE, "out": tmp_path / "runs"}
    objective = kwargs.pop("objective", {})
    return simclr_config(
        [str(d) for d in data], backbone="resnet10t", epochs=kwargs.pop("epochs", 2), lr=0.05,
        objective={"projection_dim": 16, "view_size": 24, **objective}, base=base, **kwargs,
    )  # fmt: skip


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_store(
        tmp_path_factory.mktemp("ssl") / "store", patients=12, per_patient=3, size=32, classes=2
    )


def test_simclr_run_monitors_knn_and_exports_a_backbone(store, tmp_path):
    cfg = config(tmp_path, [store.path], epochs=3, objective={"monitor": "knn_accuracy", "knn_every": 2})
    result, exported = pretrain_simclr(cfg)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["objective"] == "simclr" and metrics["monitor"] == "knn_accuracy"
    history = metrics["history"]
    assert [h["epoch"] for h in history] == [0, 1, 2] and all(h["train_loss"] > 0 for h in history)
    # k-NN every second epoch (a bank of training features queried by the validation ones); the
    # best checkpoint is that epoch's, the others neither improve on it nor count for patience
    assert ["val_knn_accuracy" in h for h in history] == [False, True, False]
    assert "val_knn_auroc" in history[1] and all("val_loss" in h for h in history)
    assert metrics["best"]["global_epoch"] == 1 and metrics["best"]["value"] == history[1]["val_knn_accuracy"]
    assert "knn_accuracy" in metrics["val"] and "knn_auroc" in metrics["test"]  # final evaluations
    assert metrics["energy"]["kwh"] >= 0
    # the exported backbone fills a classifier with zero missing keys; the projector is apart
    model = build_model("resnet10t", 2, in_chans=1, image_size=32)
    report = load_init(model, str(exported))
    assert report.missing == [] and report.mismatched == [] and report.unexpected == []
    best = load_file(result.run_dir / "checkpoints" / "best.safetensors")
    for key, value in model.backbone.native_state_dict().items():
        assert torch.equal(value, best["backbone.model." + key]), key
    projector = load_file(result.run_dir / "export" / "projector.safetensors")
    assert (
        set(projector) == {"0.weight", "0.bias", "2.weight", "2.bias"}
        and projector["2.weight"].shape[0] == 16
    )


def test_views_in_workers_and_a_mixture_of_stores(store, tmp_path):
    other = write_store(
        tmp_path / "other", patients=4, per_patient=2, size=40, channels=1, task="segmentation"
    )
    cfg = config(tmp_path, [store.path, f"{other.path}:0.5"], epochs=1,
                 objective={"augment_on": "workers", "projector": "study"})  # fmt: skip
    assert cfg.objective.stores == {str(other.path.resolve()): 0.5}
    result, _ = pretrain_simclr(cfg)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert len(metrics["history"]) == 1 and metrics["history"][0]["train_loss"] > 0
    assert set(load_file(result.run_dir / "export" / "projector.safetensors")) == {
        "0.weight",
        "2.weight",
        "4.weight",
    }


def test_a_mixture_is_drawn_anew_every_epoch(store, tmp_path, monkeypatch):
    """The engine tells the training dataset each epoch's seed (``set_epoch``): the extra store
    contributes its share of other images each epoch, reproducibly."""
    from medtl.data.unlabelled import UnlabelledImages
    from medtl.engine.trainer import epoch_seed

    other = write_store(tmp_path / "other", patients=12, per_patient=2, size=32, classes=2)
    draws: list[tuple[int, frozenset[int]]] = []
    original = UnlabelledImages.set_epoch

    def recording(self, seed):
        original(self, seed)
        picked = self.order[self.order[:, 0] == 1, 1]
        draws.append((seed, frozenset(self.rows[1][picked].tolist())))

    monkeypatch.setattr(UnlabelledImages, "set_epoch", recording)
    cfg = config(tmp_path, [store.path, f"{other.path}:0.5"], epochs=2)
    pretrain_simclr(cfg)
    assert [seed for seed, _ in draws] == [epoch_seed(cfg.seed, 0, 0), epoch_seed(cfg.seed, 0, 1)]
    (_, first), (_, second) = draws
    assert 0 < len(first) < 24 and first != second  # a third of each epoch, other images each time


def test_batch_of_one_is_refused(store, tmp_path):
    with pytest.raises(ConfigError, match=r"at least 2 images per batch .* got --batch-size 1"):
        simclr_config(
            [str(store.path)], backbone="resnet10t", base={**BASE, "batch_size": 1, "out": tmp_path}
        )


def test_store_smaller_than_a_batch_is_refused(tmp_path):
    tiny = write_store(tmp_path / "tiny", patients=3, per_patient=2, size=32)
    cfg = simclr_config(
        [str(tiny.path)], backbone="resnet10t", base={**BASE, "batch_size": 16, "out": tmp_path / "r"}
    )
    with pytest.raises(ConfigError, match=r"training images .* fewer than the batch size 16"):
        pretrain_simclr(cfg)
    assert not (tmp_path / "r").exists()


def test_knn_monitor_needs_labels(tmp_path):
    masks = write_store(tmp_path / "seg", task="segmentation", patients=6, per_patient=2, size=32)
    cfg = config(tmp_path, [masks.path], objective={"monitor": "knn_auroc"})
    with pytest.raises(ConfigError, match="no class labels for the k-NN monitor"):
        pretrain_simclr(cfg)
