"""`export_embeddings`: frozen image and text encoders once per split, only samples with a report."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medtl.errors import InputError
from medtl.io.embeddings import load_embeddings
from medtl.models import build_model
from medtl.models.text_encoders import TextEncoder
from medtl.pretrain.embeddings import export_embeddings


def test_embeddings_of_every_split_for_samples_with_reports(paired, bert_dir, tmp_path):
    store, reports = paired
    torch.manual_seed(0)
    out = export_embeddings(
        "resnet10t",
        store.path,
        reports,
        bert_dir,
        tmp_path / "emb",
        init="random",
        device="cpu",
        batch_size=8,
    )
    emb = load_embeddings(out, store_checksum=store.checksum)
    assert set(emb.splits) <= {"train", "val", "test"}  # the split every run of the store makes
    from medtl.data.splits import load_split

    split = load_split(out / "split.json", store)  # the same partitions, restricted to reported samples
    assert {k: len(v) for k, v in split.partitions.items() if len(v)} == {
        k: len(p) for k, p in emb.splits.items()
    }
    indices = np.concatenate([p.indices for p in emb.splits.values()])
    assert len(indices) == 22 and 22 not in indices and 23 not in indices  # P011 has no report
    part = next(p for p in emb.splits.values() if 2 in p.indices)
    assert emb.vision_dim == 512 and emb.text_dim == 32
    assert emb.meta["reports"]["skipped"] == 2 and emb.meta["vision"]["backbone"] == "resnet10t"
    # the text embedding of a sample is the encoder's output for its report
    text = TextEncoder(bert_dir).encode(["large left pleural effusion stable"])
    row = int(np.flatnonzero(part.indices == 2)[0])  # store row 2 belongs to P001
    assert np.allclose(part.text[row], text[0], atol=1e-5)
    assert np.isfinite(part.image).all() and part.image.std() > 0


def test_strict_refuses_samples_without_report(paired, bert_dir, tmp_path):
    store, reports = paired
    with pytest.raises(InputError, match="2 of 24 samples"):
        export_embeddings(
            "resnet10t",
            store.path,
            reports,
            bert_dir,
            tmp_path / "emb",
            init="random",
            device="cpu",
            strict=True,
        )
    assert not (tmp_path / "emb").exists()


def test_image_embeddings_are_the_backbones_pooled_features(paired, bert_dir, tmp_path):
    store, reports = paired
    torch.manual_seed(0)
    out = export_embeddings(
        "resnet10t",
        store.path,
        reports,
        bert_dir,
        tmp_path / "emb",
        init="random",
        device="cpu",
        normalise="none",
    )
    part = load_embeddings(out).splits["train"]
    torch.manual_seed(0)
    model = build_model("resnet10t", 1, in_chans=1, image_size=32).eval()
    x = torch.from_numpy(np.asarray(store.images[part.indices[:3]], dtype=np.float32))
    with torch.no_grad():
        expected = model.backbone.forward_pooled(x).numpy()
    assert np.allclose(part.image[:3], expected, atol=1e-4)
