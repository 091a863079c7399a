"""Cached embeddings: round trip, atomic write, and the store checksum that ties them to their store."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medtl.errors import InputError, OutputExistsError, StoreError
from medtl.io.embeddings import EmbeddingSplit, load_embeddings, save_embeddings


def split(n, dv=6, dt=4, seed=0):
    rng = np.random.default_rng(seed)
    return EmbeddingSplit(
        rng.standard_normal((n, dv)).astype(np.float32),
        rng.standard_normal((n, dt)).astype(np.float32),
        np.arange(n),
        np.array([f"P{i}" for i in range(n)], dtype=object),
    )


def write(tmp_path, **kwargs):
    return save_embeddings(
        tmp_path / "emb",
        {"train": split(5), "val": split(2, seed=1)},
        store="/data/store",
        store_checksum="sha256:aaaa",
        vision={"backbone": "resnet18"},
        text={"directory": "/enc"},
        **kwargs,
    )


def test_round_trip(tmp_path):
    out = write(tmp_path)
    emb = load_embeddings(out, store_checksum="sha256:aaaa")
    assert (emb.vision_dim, emb.text_dim) == (6, 4)
    assert emb.meta["vision"] == {"backbone": "resnet18", "dim": 6}
    assert np.array_equal(emb.splits["train"].image, split(5).image)
    assert emb.splits["val"].patient_ids.tolist() == ["P0", "P1"]
    assert not list(tmp_path.glob(".*partial"))


def test_embeddings_of_another_store_are_refused(tmp_path):
    out = write(tmp_path)
    with pytest.raises(StoreError, match=r"embeddings.json: embeddings were computed from another store"):
        load_embeddings(out, store_checksum="sha256:bbbb")


def test_existing_output_and_damaged_files(tmp_path):
    out = write(tmp_path)
    with pytest.raises(OutputExistsError):
        write(tmp_path)
    (out / "text_val.npy").unlink()
    with pytest.raises(InputError, match=r"text_val.npy: missing"):
        load_embeddings(out)
    np.save(out / "text_val.npy", np.zeros((2, 5), np.float32))
    with pytest.raises(InputError, match=r"shape \(2, 5\) is not \(2, 4\)"):
        load_embeddings(out)
    meta = json.loads((out / "embeddings.json").read_text())
    meta["format"] = "other"
    (out / "embeddings.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="not a medtl embeddings file"):
        load_embeddings(out)
    with pytest.raises(InputError, match="embeddings directory not found"):
        load_embeddings(tmp_path / "none")
