"""Cached features: same head as training through the frozen backbone; extraction and export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medtl.engine import export_features, extract_features, load_run, run
from medtl.engine.inputs import features_are_fixed
from medtl.engine.runtime import eval_mode
from medtl.errors import InputError, OutputExistsError
from medtl.io.features import load_features
from medtl.io.store import Store
from medtl.models import build_model
from medtl.strategies import apply_phase, get_strategy
from tests.engine.engine_helpers import TINY_BACKBONE


def test_cached_head_phase_equals_training_through_frozen_backbone(make_config):
    common = dict(phase_epochs={"head": 3}, lr=1e-2, deterministic=True, scheduler="cosine", warmup_epochs=1)
    cached = run(make_config(cache_features=True, run_name="cached", **common))
    through = run(make_config(cache_features=False, run_name="through", **common))
    assert cached.metrics.phases[0].cached_features is True
    assert through.metrics.phases[0].cached_features is False
    cached_head, through_head = (load_run(r.run_dir, "last").model.head for r in (cached, through))
    torch.testing.assert_close(cached_head.weight, through_head.weight, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cached_head.bias, through_head.bias, atol=1e-5, rtol=1e-5)
    for a, b in zip(cached.metrics.history, through.metrics.history):
        assert a.train_loss == pytest.approx(b.train_loss, abs=1e-5)
        assert a.val["auroc"] == pytest.approx(b.val["auroc"], abs=1e-5)
    assert cached.metrics.test["auroc"] == pytest.approx(through.metrics.test["auroc"], abs=1e-5)


def test_features_fixed_only_when_nothing_before_the_head_changes_in_train_mode():
    model = build_model(TINY_BACKBONE, 2, in_chans=1)
    model.train()
    apply_phase(model, get_strategy("linear").phases[0])  # head only, BN frozen
    assert features_are_fixed(model, model.head)
    model.train()
    apply_phase(model, get_strategy("full").phases[0])  # BN trains
    assert not features_are_fixed(model, model.head)


def test_extract_features_is_the_head_input_and_keeps_modes(signal_stores):
    store = Store(signal_stores["multiclass"])
    model = build_model(TINY_BACKBONE, 3, in_chans=1)
    model.train()
    model.backbone.model.bn1.eval()
    idx = np.array([5, 1, 7])
    feats = extract_features(model, store, idx, batch_size=2, device="cpu")
    assert feats.shape == (3, 512) and feats.dtype == np.float32
    with eval_mode(model), torch.no_grad():
        images = torch.from_numpy(np.asarray(store.images[idx], dtype=np.float32))
        expected = model.forward_head_input(images)
    np.testing.assert_allclose(feats, expected.numpy(), atol=1e-5)
    assert model.training and not model.backbone.model.bn1.training


def test_export_features_from_backbone_and_from_run(signal_stores, make_config, tmp_path):
    out = export_features(
        TINY_BACKBONE, signal_stores["multiclass"], tmp_path / "feats", init="random", normalise="none"
    )
    loaded = load_features(out)
    assert loaded.meta["backbone"] == TINY_BACKBONE and loaded.dim == 512
    assert loaded.meta["splits"] == {"all": 40}
    assert loaded.splits["all"].labels[:4].tolist() == [0, 1, 2, 0]

    config = make_config()
    run(config)
    from medtl.data.splits import make_fraction_split

    store = Store(signal_stores["multiclass"])
    split = make_fraction_split(store, seed=0).save(tmp_path / "split.json")
    out = export_features(config.run_dir, store.path, tmp_path / "run_feats", split=split)
    meta = json.loads((out / "features.json").read_text())
    assert meta["splits"] == {"train": 28, "val": 4, "test": 8}
    assert meta["run"] == str(config.run_dir) and meta["store_checksum"] == store.checksum
    assert (out / "index_test.csv").read_text().splitlines()[0] == "index,patient_id"

    with pytest.raises(OutputExistsError):
        export_features(config.run_dir, store.path, out)


def test_export_refuses_segmentation_store(signal_stores, tmp_path):
    with pytest.raises(InputError, match="is a segmentation store"):
        export_features(TINY_BACKBONE, signal_stores["segmentation"], tmp_path / "f", init="random")
