"""SimCLR and Adaptor objectives in isolation: SyncBatchNorm on request, the partitions' datasets,
and validation batches of one pair (no negative)."""

from __future__ import annotations

import socket

import numpy as np
import torch
from torch import nn

from medtl.objectives import get_objective
from medtl.objectives.configs import SimCLRConfig
from tests.data.conftest import write_store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build(objective, **kw):
    return objective.build_model(
        backbone="resnet10t", in_chans=1, module=None, truncate=None, image_size=32, **kw
    )


def test_sync_bn_only_under_a_process_group(tmp_path, monkeypatch):
    store = write_store(tmp_path / "s", patients=4, per_patient=2, size=32)
    objective = get_objective(SimCLRConfig(sync_bn=True, projection_dim=8))
    objective.check(store)
    plain = build(objective)
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in plain.modules())
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")  # not os.environ: later tests must not inherit it
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    torch.distributed.init_process_group("gloo", rank=0, world_size=1)
    try:
        synced = build(objective)
    finally:
        torch.distributed.destroy_process_group()
    assert any(isinstance(m, nn.SyncBatchNorm) for m in synced.modules())
    assert set(synced.state_dict()) == set(plain.state_dict())  # exports and --init see the same keys


def test_training_partition_mixes_stores_validation_is_labelled(tmp_path):
    store = write_store(tmp_path / "s", patients=6, per_patient=2, size=32, classes=2)
    other = write_store(tmp_path / "o", patients=3, per_patient=2, size=32, task="segmentation")
    objective = get_objective(SimCLRConfig(stores={str(other.path): 1.0}, view_size=24))
    objective.check(store)
    train, val = np.arange(8), np.arange(8, 12)
    objective.setup(store, train, torch.device("cpu"))
    train_data = objective.dataset(store, train, None)
    val_data = objective.dataset(store, val, None)
    assert len(train_data.sources) == 2 and len(train_data) == 8 and not train_data.with_labels
    assert len(val_data.sources) == 1 and val_data.with_labels
    batch = torch.utils.data.default_collate(val_data.__getitems__([0, 1, 2]))
    model = build(objective).eval()
    with torch.no_grad():
        out = objective.forward(model, batch)
        assert out["features"].shape == (3, model.backbone.num_features)
        assert objective.loss(out, batch).item() > 0
        one = {k: v[:1] for k, v in batch.items()}
        assert objective.loss(objective.forward(model, one), one).item() == 0.0  # nothing to contrast


def test_knn_bank_is_labelled_training_images_every_knn_every_epochs(tmp_path):
    """The k-NN monitor's standard form: a bank of training features queried by validation ones."""
    from medtl.metrics.knn import knn_metrics
    from medtl.objectives.base import FEATURES, TARGET

    store = write_store(tmp_path / "s", patients=8, per_patient=2, size=32, classes=2)
    objective = get_objective(SimCLRConfig(knn_every=3, knn_bank=6, knn_k=3, view_size=24))
    objective.check(store)
    train, val = np.arange(12), np.arange(12, 16)
    objective.setup(store, train, torch.device("cpu"))
    assert [objective.reference(store, None, epoch=e) is not None for e in range(6)] == [
        False, False, True, False, False, True,
    ]  # fmt: skip
    bank = objective.reference(store, None, epoch=None)  # a final evaluation always has one
    assert len(bank) == 6 and set(bank.rows[0]) <= set(train) and bank.with_labels
    model = build(objective).eval()
    collate = torch.utils.data.default_collate
    with torch.no_grad():
        bank_batch = collate(bank.__getitems__(list(range(6))))
        features = objective.head_input(model, bank_batch)
        val_batch = collate(objective.dataset(store, val, None).__getitems__([0, 1, 2, 3]))
        outputs = objective.forward(model, val_batch)
    metric = objective.metric()
    metric.update(outputs, val_batch)
    assert "knn_accuracy" not in metric.aggregate()  # an epoch without the bank measures no k-NN
    metric.use_reference({FEATURES: features, TARGET: bank_batch[TARGET]})
    values = metric.aggregate()
    expected = knn_metrics(
        features.numpy(), bank_batch[TARGET].numpy(), outputs["features"].numpy(),
        val_batch[TARGET].numpy(), "binary", k=3, num_classes=2,
    )  # fmt: skip
    assert values["knn_accuracy"] == expected["knn_accuracy"] and values["knn_auroc"] == expected["knn_auroc"]
