"""Shared stores (written once per session) and quick CPU run configs for the engine tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from medtl.engine.run_config import RunConfig
from tests.engine.engine_helpers import TINY_BACKBONE, write_signal_store


@pytest.fixture(scope="session")
def signal_stores(tmp_path_factory) -> dict[str, Path]:
    """Stores shared by the engine tests (written once per session)."""
    root = tmp_path_factory.mktemp("stores")
    return {
        "multiclass": write_signal_store(root / "multiclass").path,
        "binary": write_signal_store(root / "binary", classes=2).path,
        "multilabel": write_signal_store(root / "multilabel", task="multilabel").path,
        "segmentation": write_signal_store(root / "segmentation", task="segmentation").path,
    }


@pytest.fixture
def make_config(tmp_path, signal_stores):
    """``make_config(store="multiclass", **fields)``: a quick CPU config writing under tmp_path."""

    def make(store: str = "multiclass", **fields) -> RunConfig:
        values = {
            "data": signal_stores.get(store, store),
            "backbone": TINY_BACKBONE,
            "init": "random",
            "strategy": "linear",
            "phase_epochs": {"head": 2},
            "batch_size": 8,
            "num_workers": 0,
            "normalise": "none",
            "lr": 1e-2,
            "bootstrap": 20,
            "device": "cpu",
            "out": tmp_path / "runs",
            "checkpoint_interval": 0,
        }
        values.update(fields)
        return RunConfig(**values)

    return make
