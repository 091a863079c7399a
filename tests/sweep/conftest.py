"""A tiny store shared by the sweep tests, and a writer of spec files around it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import tomli_w

from tests.engine.engine_helpers import TINY_BACKBONE, write_signal_store

# Quick CPU runs: resnet10t on 40 32-px samples, head only, two epochs.
BASE: dict[str, Any] = {
    "backbone": TINY_BACKBONE,
    "init": "random",
    "strategy": "linear",
    "phase_epochs": {"head": 2},
    "batch_size": 8,
    "num_workers": 0,
    "normalise": "none",
    "lr": 1e-2,
    "bootstrap": 10,
    "device": "cpu",
    "checkpoint_interval": 0,
}


@pytest.fixture(scope="session")
def sweep_store(tmp_path_factory) -> Path:
    return write_signal_store(tmp_path_factory.mktemp("sweep-store") / "store").path


def write_spec(folder: Path, name: str = "study", *, base: dict | None = None, **sections: Any) -> Path:
    """A TOML spec in ``folder``; ``base`` is merged over BASE (None values dropped)."""
    spec = {
        "name": name,
        **sections,
        "base": {k: v for k, v in {**BASE, **(base or {})}.items() if v is not None},
    }
    path = folder / f"{name}.toml"
    path.write_text(tomli_w.dumps(spec))
    return path


@pytest.fixture
def spec_dir(tmp_path, sweep_store) -> Path:
    """A folder with the store linked in as ./store, so specs can name it relatively."""
    (tmp_path / "store").symlink_to(sweep_store)
    return tmp_path
