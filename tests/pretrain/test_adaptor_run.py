"""Adaptor pretraining from cached embeddings: the run, its export, and embeddings that do not fit."""

from __future__ import annotations

import json

import pytest

from medtl.errors import ConfigError, StoreError
from medtl.pretrain.adaptor import adaptor_config, pretrain_adaptor
from medtl.pretrain.embeddings import export_embeddings
from medtl.pretrain.export import read_export_metadata
from tests.data.conftest import write_store

BASE = {"batch_size": 4, "num_workers": 0, "device": "cpu", "seed": 0, "checkpoint_interval": 0}


@pytest.fixture
def embeddings(paired, bert_dir, tmp_path):
    store, reports = paired
    return export_embeddings(
        "resnet10t", store.path, reports, bert_dir, tmp_path / "emb", init="random", device="cpu"
    )


def test_adaptor_pretraining_reads_only_embeddings_and_exports(embeddings, tmp_path):
    cfg = adaptor_config(embeddings, epochs=3, lr=1e-3, base={**BASE, "out": tmp_path / "runs"})
    assert cfg.scheduler == "linear" and cfg.warmup_epochs == pytest.approx(0.06) and cfg.patience == 5
    result, exported = pretrain_adaptor(cfg)
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["objective"] == "adaptor" and metrics["monitor"] == "loss"
    assert all("val_loss" in h and "val_recall_i2t" in h for h in metrics["history"])
    spec = read_export_metadata(exported)["spec"]
    assert spec["vision_dim"] == 512 and spec["text_dim"] == 32 and spec["vision"]["backbone"] == "resnet10t"


def test_embeddings_of_another_store_are_refused(embeddings, tmp_path):
    other = write_store(tmp_path / "other", patients=4, per_patient=2, size=32)
    cfg = adaptor_config(embeddings, epochs=1, base={**BASE, "out": tmp_path / "runs"})
    cfg = cfg.model_copy(update={"data": other.path, "split": None})
    from medtl.engine import run

    with pytest.raises(StoreError, match="embeddings were computed from another store"):
        run(cfg)


def test_adaptor_vision_width_must_match_the_embeddings(embeddings, tmp_path):
    from medtl.engine import RunConfig, run

    cfg = adaptor_config(embeddings, epochs=1, base={**BASE, "out": tmp_path / "runs"})
    values = cfg.model_dump()
    values["objective"]["vision_dim"] = 768
    with pytest.raises(ConfigError, match=r"vision width 768 differs from the cached image embeddings \(512"):
        run(RunConfig.parse(values))
