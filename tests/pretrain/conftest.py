"""A small paired image-report dataset and a tiny BERT for the pretraining tests."""

from __future__ import annotations

import pytest

from tests.data.conftest import write_store
from tests.tiny_text import write_tiny_bert

PHRASES = ["no acute process", "large left pleural effusion", "mild edema", "right lower lobe opacity"]


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory):
    return write_tiny_bert(tmp_path_factory.mktemp("text") / "tiny-bert")


@pytest.fixture
def paired(tmp_path):
    """(store, reports.csv): 12 patients x 2 images at 32 px, one report per patient but P011's."""
    store = write_store(tmp_path / "cxr", patients=12, per_patient=2, size=32, channels=1, classes=2)
    lines = ["patient_id,findings,impression"]
    lines += [f"P{p:03d},{PHRASES[p % 4]},stable" for p in range(11)]
    reports = tmp_path / "reports.csv"
    reports.write_text("\n".join(lines) + "\n")
    return store, reports
