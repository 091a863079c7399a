"""`data info` summaries and `data check` leakage / duplicate detection."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medtl.data.info import check_store, store_info
from medtl.data.splits import default_split_path, make_kfold_split
from medtl.errors import StoreError
from medtl.io.store import SampleRecord, StoreWriter


def test_info_without_split(store):
    info = store_info(store.path)
    assert info["task"] == "classification"
    assert info["num_samples"] == 30 and info["num_patients"] == 10
    assert info["shape"] == [1, 8, 8] and info["dtype"] == "float16"
    assert info["normalisation"] == "none"
    assert info["counts"] == {"c0": 12, "c1": 9, "c2": 9}
    assert info["split"] is None


def test_info_reads_the_split_beside_the_store(store):
    split = make_kfold_split(store, folds=5, seed=0)
    split.save(default_split_path(store.path))
    info = store_info(store.path)["split"]
    assert info["method"] == "kfold" and info["params"]["folds"] == 5
    for name in ("train", "val", "test"):
        part = info["partitions"][name]
        assert part["samples"] == len(split[name]) == sum(part["counts"].values())
        assert part["patients"] == len(split[name]) // 3
        assert part["counts"]["c0"] == int((store.labels[split[name]] == 0).sum())


def test_info_of_segmentation_and_multilabel(make_store):
    seg = store_info(make_store("seg", task="segmentation", patients=4, per_patient=3).path)
    assert seg["counts"] == {"with mask": 8, "without mask": 4}
    multi_store = make_store("multi", task="multilabel")
    multi = store_info(multi_store.path)
    assert multi["counts"] == dict(zip(multi_store.class_names, (multi_store.labels > 0.5).sum(0).tolist()))


def test_info_on_a_directory_that_is_not_a_store(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(StoreError) as info:
        store_info(tmp_path / "images")
    assert str(info.value) == f"{tmp_path / 'images'}: not a medtl store (manifest.json missing)"


@pytest.fixture
def dup_store(tmp_path):
    """6 patients x 2 images; image of P1 repeated in P4, P2's repeated within P2, two blank images."""
    rng = np.random.default_rng(0)
    images = rng.random((12, 1, 4, 4)).astype(np.float16)
    images[9] = images[2]  # P1 -> P4: another patient, identical pixels
    images[5] = images[4]  # within P2
    images[10] = images[11] = 0  # blank slices are identical by nature
    with StoreWriter(
        tmp_path / "dup", task="classification", image_shape=(1, 4, 4), class_names=["a", "b"], label_shape=()
    ) as writer:
        for p in range(6):
            rows = slice(2 * p, 2 * p + 2)
            records = [SampleRecord(f"P{p}", f"p{p}_{s}.png", s) for s in range(2)]
            writer.add(f"P{p}", images[rows], records, labels=np.full(2, p % 2, dtype=np.int64))
        writer.finish()
    return tmp_path / "dup"


def write_split(path, store_path, partitions):
    from medtl.io.store import Store

    split = make_kfold_split(Store(store_path), folds=3)
    data = split.to_json()
    data["partitions"] = partitions
    path.write_text(json.dumps(data))
    return path


def test_check_finds_duplicates_without_a_split(dup_store):
    report = check_store(dup_store)
    assert report.split is None and report.patient_leaks == []
    assert [d["indices"] for d in report.duplicates] == [[2, 9], [4, 5]]
    assert report.duplicates[0]["patients"] == ["P1", "P4"]
    assert report.blank_images == 2
    assert not report.leakage  # no partitions, so nothing can leak


def test_check_reports_patient_leakage_and_cross_partition_duplicates(dup_store, tmp_path):
    # P0 is split between train and test; P1 (train) and P4 (test) share an image.
    partitions = {"train": [0, 2, 3, 4, 5], "val": [6, 7], "test": [1, 8, 9, 10, 11]}
    split = write_split(tmp_path / "leaky.json", dup_store, partitions)
    report = check_store(dup_store, split)
    assert report.split == str(split)
    assert report.patient_leaks == [{"patient": "P0", "partitions": {"train": 1, "test": 1}}]
    cross = report.cross_partition_duplicates
    assert [d["indices"] for d in cross] == [[2, 9]] and cross[0]["partitions"] == ["test", "train"]
    assert report.leakage and report.to_dict()["leakage"] is True


def test_check_of_a_sound_split(dup_store):
    from medtl.io.store import Store

    store = Store(dup_store)
    partitions = {"train": [0, 1, 2, 3, 8, 9], "val": [4, 5], "test": [6, 7, 10, 11]}
    split = write_split(default_split_path(dup_store), dup_store, partitions)
    report = check_store(store.path)  # the default split file beside the store is used
    assert report.split == str(split)
    assert report.patient_leaks == [] and report.cross_partition_duplicates == []
    assert not report.leakage
