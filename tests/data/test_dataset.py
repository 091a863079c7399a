"""StoreDataset: items, targets per task, transforms, pickling for DataLoader workers."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from medtl.data.dataset import StoreDataset, make_loader
from medtl.data.transforms import build_transforms
from medtl.errors import StoreError


@pytest.mark.parametrize(
    ("task", "target_dtype", "target_shape"),
    [
        ("classification", torch.int64, ()),
        ("multilabel", torch.float32, (3,)),
        ("segmentation", torch.int64, (1, 8, 8)),
    ],
)
def test_items_per_task(make_store, task, target_dtype, target_shape):
    store = make_store(task=task, channels=2)
    ds = StoreDataset(store)
    assert len(ds) == len(store)
    image, target = ds[4]
    assert image.dtype == torch.float32 and image.shape == (2, 8, 8)
    np.testing.assert_array_equal(image.numpy(), np.asarray(store.images[4], dtype=np.float32))
    assert target.dtype == target_dtype and tuple(target.shape) == target_shape
    expected = store.masks[4] if task == "segmentation" else store.labels[4]
    np.testing.assert_array_equal(target.numpy(), expected)


def test_indices_select_rows(store):
    ds = StoreDataset(store, indices=np.array([7, 2]))
    assert len(ds) == 2
    assert int(ds[0][1]) == int(store.labels[7]) and int(ds[1][1]) == int(store.labels[2])
    with pytest.raises(StoreError, match="sample indices outside the store's 30 samples"):
        StoreDataset(store, indices=np.array([30]))


def test_reads_the_memory_map_without_loading_the_store(store):
    ds = StoreDataset(store.path)
    ds[0]
    assert isinstance(ds.store.images, np.memmap)


def test_uint8_store_is_scaled_to_unit_range(make_store):
    store = make_store(dtype="uint8")
    image, _ = StoreDataset(store)[0]
    torch.testing.assert_close(image, torch.from_numpy(store.images[0] / 255.0).float())


def test_transform_applies_to_image_and_mask(make_store):
    store = make_store(task="segmentation")
    transform = build_transforms(True, size=16, augment="hflip", normalise="imagenet", in_chans=3)
    image, mask = StoreDataset(store, transform=transform)[0]
    assert type(image) is torch.Tensor and type(mask) is torch.Tensor  # plain tensors collate cleanly
    assert image.shape == (3, 16, 16) and mask.shape == (1, 16, 16)
    assert set(mask.unique().tolist()) == {0, 1}


def test_segmentation_store_has_no_labels(make_store):
    store = make_store(task="segmentation")
    with pytest.raises(StoreError, match="segmentation store has no class labels") as info:
        StoreDataset(store, target="label")
    assert str(info.value).startswith(str(store.path))


def test_pickles_as_a_path_not_the_arrays(make_store):
    store = make_store(patients=20, size=32)
    ds = StoreDataset(store, transform=build_transforms(False, normalise="half"))
    ds[0]  # memory maps now open
    blob = pickle.dumps(ds)
    assert len(blob) < store.images.nbytes / 10
    clone = pickle.loads(blob)
    torch.testing.assert_close(clone[5][0], ds[5][0])


def test_dataloader_with_workers_sees_every_sample_once(store):
    ds = StoreDataset(store, indices=np.arange(0, 30, 2))
    loader = DataLoader(ds, batch_size=4, num_workers=2, shuffle=False)
    labels = torch.cat([y for _, y in loader])
    np.testing.assert_array_equal(labels.numpy(), store.labels[::2])


@pytest.mark.parametrize(
    ("task", "normalise"),
    [("classification", "imagenet"), ("multilabel", "minmax"), ("segmentation", "clip")],
)
def test_batch_equals_items(make_store, task, normalise):
    store = make_store(task=task)
    ds = StoreDataset(store, transform=build_transforms(False, size=12, normalise=normalise, in_chans=3))
    images, targets = ds.batch([3, 0, 7])
    assert images.shape == (3, 3, 12, 12)
    for k, item in enumerate([3, 0, 7]):
        image, target = ds[item]
        torch.testing.assert_close(images[k], image)
        assert torch.equal(targets[k], target)


def test_batch_with_random_transform_draws_per_sample(make_store):
    torch.manual_seed(0)  # two crops of 16 px can coincide; do not depend on earlier tests' draws
    store = make_store(size=16)
    ds = StoreDataset(
        store, indices=np.zeros(6, dtype=np.int64), transform=build_transforms(True, augment="crop")
    )
    images, labels = ds.batch(list(range(6)))
    assert images.shape == (6, 1, 16, 16) and labels.shape == (6,)
    assert not torch.allclose(images[0], images[1])  # the same image, cropped differently


@pytest.mark.parametrize("workers", [0, 2])
def test_make_loader_yields_whole_batches(store, workers):
    ds = StoreDataset(store, indices=np.arange(1, 30), transform=build_transforms(False, normalise="half"))
    generator = torch.Generator().manual_seed(0)
    loader = make_loader(ds, batch_size=8, shuffle=True, num_workers=workers, generator=generator)
    batches = list(loader)
    assert [len(y) for _, y in batches] == [8, 8, 8, 5]
    images = torch.cat([x for x, _ in batches])
    labels = torch.cat([y for _, y in batches])
    # every sample exactly once, images matching their labels' rows
    expected = torch.from_numpy(np.asarray(store.images, dtype=np.float32)) * 2 - 1  # "half"
    rows = [int((expected - image).abs().flatten(1).amax(1).argmin()) for image in images]
    assert sorted(rows) == list(range(1, 30))
    np.testing.assert_array_equal(labels.numpy(), store.labels[rows])
    assert len(make_loader(ds, batch_size=8, drop_last=True)) == 3


def test_workers_send_stored_rows_and_the_batch_is_finished_here(tmp_path):
    """With a batchable transform and workers, batches equal those of the in-process loader."""
    from medtl.data.dataset import _FinishedBatches, make_loader
    from medtl.data.transforms import build_transforms
    from medtl.io.store import SampleRecord, StoreWriter

    rng = np.random.default_rng(0)
    with StoreWriter(
        tmp_path / "s", task="classification", image_shape=(1, 16, 16), class_names=["a", "b"], label_shape=()
    ) as writer:
        writer.add(
            "u",
            rng.random((10, 1, 16, 16)).astype(np.float16),
            [SampleRecord(f"p{i}", "f") for i in range(10)],
            labels=np.arange(10) % 2,
        )
        writer.finish()
    ds = StoreDataset(tmp_path / "s", transform=build_transforms(False, normalise="imagenet", in_chans=3))
    plain = list(make_loader(ds, batch_size=4, num_workers=0))
    loader = make_loader(ds, batch_size=4, num_workers=2)
    assert isinstance(loader, _FinishedBatches) and len(loader) == 3
    workers = list(loader)
    assert [tuple(x.shape) for x, _ in workers] == [(4, 3, 16, 16), (4, 3, 16, 16), (2, 3, 16, 16)]
    for (a, ya), (b, yb) in zip(plain, workers):
        assert a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(ya, yb)
