"""Unlabelled images: any store, several stores mixed with weights and brought to one size."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from medtl.data.ssl_augment import SampleViews, SimCLRAugment
from medtl.data.unlabelled import Source, UnlabelledImages, fit_size, mixture_order, parse_sources
from medtl.errors import ConfigError, StoreError


def test_mixture_order_follows_the_weights_and_the_seed():
    order = mixture_order([10, 40], [3, 1], 200, seed=0)
    counts = np.bincount(order[:, 0])
    assert counts.tolist() == [150, 50]
    # source 0 (10 rows) is drawn 15 times over: every row equally often
    assert np.bincount(order[order[:, 0] == 0, 1]).tolist() == [15] * 10
    # source 1 (40 rows, 50 draws): each row once before any repeats
    assert np.bincount(order[order[:, 0] == 1, 1], minlength=40).min() == 1
    assert np.array_equal(order, mixture_order([10, 40], [3, 1], 200, seed=0))
    assert not np.array_equal(order, mixture_order([10, 40], [3, 1], 200, seed=1))


def test_parse_sources_reads_optional_weights(tmp_path):
    sources = parse_sources([f"{tmp_path}/a", f"{tmp_path}/b:0.25"])
    assert [(s.path.name, s.weight) for s in sources] == [("a", 1.0), ("b", 0.25)]
    with pytest.raises(ConfigError, match="weight must be positive"):
        parse_sources([f"{tmp_path}/b:0"])


def test_fit_size_resizes_the_shorter_side_and_crops_the_centre():
    x = torch.zeros(1, 1, 20, 40)
    x[..., 10:30] = 1  # the centre half of the width
    y = fit_size(x, 10)
    assert y.shape == (1, 1, 10, 10)
    assert y.mean() == pytest.approx(1.0, abs=0.05)


def test_mixed_stores_of_other_sizes_channels_and_tasks(make_store):
    a = make_store("a", size=8, channels=1, patients=4, per_patient=2)  # 8 images, classification
    b = make_store("b", size=16, channels=3, task="segmentation", patients=2, per_patient=2)  # 4 images
    data = UnlabelledImages([Source(a.path, weight=1), Source(b.path, weight=1)], length=12, seed=3)
    assert (data.channels, data.load_size, len(data)) == (3, 16, 12)
    out = data.batch(np.arange(12))
    assert out["image"].shape == (12, 3, 16, 16)
    assert np.bincount(out["source"].numpy()).tolist() == [6, 6]
    # an image of store a comes back as its (resized, channel-repeated) stored image
    first_a = int(np.flatnonzero(out["source"].numpy() == 0)[0])
    stored = torch.from_numpy(np.array(a.images[int(out["index"][first_a])])).float()[None]
    expected = fit_size(stored, 16).expand(-1, 3, -1, -1)[0]
    assert torch.allclose(out["image"][first_a], expected, atol=1e-6)
    assert "target" not in out  # labels and masks are ignored


def test_per_sample_views_come_from_the_stored_images(make_store):
    a = make_store("a", size=8, channels=1, patients=3, per_patient=2)
    views = SampleViews(SimCLRAugment(size=8), channels=1)
    data = pickle.loads(pickle.dumps(UnlabelledImages([Source(a.path)], views=views)))
    out = data.batch([0, 1, 2])
    assert out["views"].shape == (3, 2, 1, 8, 8)
    assert "image" not in out
    assert out["index"].tolist() == [0, 1, 2]  # one store without weights keeps its order


def test_bad_mixtures(make_store, tmp_path):
    a = make_store("a", size=8, channels=1)
    two = make_store("two", size=8, channels=2)
    with pytest.raises(StoreError, match="2-channel images cannot be mixed with 3"):
        UnlabelledImages([Source(a.path), Source(two.path)], channels=3)
    with pytest.raises(StoreError, match="empty partition"):
        UnlabelledImages([Source(a.path, indices=np.array([], dtype=np.int64))])
    with pytest.raises(StoreError, match=r"manifest\.json missing"):
        UnlabelledImages([Source(tmp_path / "nothing")])


def test_loader_gives_full_batches_and_refuses_a_store_smaller_than_a_batch(make_store):
    from medtl.data.unlabelled import make_unlabelled_loader

    a = make_store("a", size=8, patients=5, per_patient=2)  # 10 images
    data = UnlabelledImages([Source(a.path)])
    batches = list(make_unlabelled_loader(data, batch_size=4, generator=torch.Generator().manual_seed(0)))
    assert [b["image"].shape[0] for b in batches] == [4, 4]  # the incomplete last batch is dropped
    with pytest.raises(ConfigError, match=r"10 images to pretrain on, fewer than the batch size 16"):
        make_unlabelled_loader(data, batch_size=16)


def test_labels_of_one_store_for_a_monitor(make_store):
    a = make_store("a", size=8, patients=4, per_patient=2, classes=2)
    data = UnlabelledImages([Source(a.path, indices=np.array([5, 1, 6]))], with_labels=True)
    out = data.batch([0, 1, 2])
    assert out["index"].tolist() == [5, 1, 6]
    assert out["target"].tolist() == [int(a.labels[5]), int(a.labels[1]), int(a.labels[6])]
    items = torch.utils.data.default_collate(data.__getitems__([0, 2]))
    assert items["target"].tolist() == [int(a.labels[5]), int(a.labels[6])]
    b = make_store("b", size=8)
    with pytest.raises(ConfigError, match="a mixture of stores has none"):
        UnlabelledImages([Source(a.path), Source(b.path)], with_labels=True)


def test_set_epoch_draws_the_mixture_anew_from_the_dataset_and_epoch_seeds(make_store):
    a = make_store("a", size=16, channels=1, patients=4, per_patient=2)  # 8 images
    b = make_store("b", size=16, channels=1, patients=15, per_patient=2)  # 30 images
    data = UnlabelledImages([Source(a.path), Source(b.path, None, 1.0)], length=12, seed=3)

    def extra_rows():
        return sorted(data.order[data.order[:, 0] == 1, 1].tolist())

    data.set_epoch(100)
    first, order = extra_rows(), data.order.copy()
    data.set_epoch(101)
    assert len(first) == len(extra_rows()) == 6 and first != extra_rows()  # exact shares, other images
    data.set_epoch(100)
    assert np.array_equal(data.order, order)  # the same epoch draws the same images
    other_seed = UnlabelledImages([Source(a.path), Source(b.path, None, 1.0)], length=12, seed=4)
    other_seed.set_epoch(100)
    assert not np.array_equal(other_seed.order, order)
    single = UnlabelledImages([Source(a.path)])
    single.set_epoch(5)
    assert single.order[:, 1].tolist() == list(range(8))  # one store keeps its order (the sampler shuffles)
