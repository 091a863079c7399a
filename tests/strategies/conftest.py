"""Fixtures for the strategy tests."""

from __future__ import annotations

import pytest
import torch

from tests.strategies.toy_model import ToyModel


@pytest.fixture
def toy() -> ToyModel:
    torch.manual_seed(0)
    return ToyModel(num_outputs=2)
