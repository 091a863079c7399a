"""A tiny trained run (resnet10t, 32 px, a learnable signal) shared by the evaluate tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.evaluate.evaluate_helpers import train_run, write_store


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """(run directory, its store): 3 classes, trained for a few seconds."""
    root = tmp_path_factory.mktemp("evaluate_run")
    store = write_store(root / "cemri", ["glioma", "meningioma", "pituitary"])
    return train_run(store, root / "runs"), store
