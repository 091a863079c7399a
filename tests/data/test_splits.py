"""Patient-level splits, few-shot subsets and split files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medtl.data.splits import (
    PARTITIONS,
    default_split_path,
    few_shot,
    load_split,
    make_fraction_split,
    make_kfold_split,
    strata,
)
from medtl.errors import ConfigError, InputError, OutputExistsError, StoreError


def patients_of(store, idx) -> set[str]:
    return set(store.patient_ids[idx])


def assert_patient_disjoint(store, split) -> None:
    parts = [patients_of(store, split[name]) for name in PARTITIONS]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not parts[i] & parts[j], (PARTITIONS[i], PARTITIONS[j], parts[i] & parts[j])


@pytest.mark.parametrize("task", ["classification", "multilabel", "segmentation"])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_kfold_never_puts_a_patient_in_two_partitions(make_store, task, seed):
    store = make_store(task=task, patients=12, per_patient=3)
    split = make_kfold_split(store, folds=4, val_fold=2, test_fold=3, seed=seed)
    assert_patient_disjoint(store, split)
    everything = np.sort(np.concatenate([split[p] for p in PARTITIONS]))
    np.testing.assert_array_equal(everything, np.arange(len(store)))
    # 12 patients in 4 folds: 3 patients (9 samples) per fold.
    assert [len(split[p]) for p in PARTITIONS] == [18, 9, 9]


def test_kfold_test_folds_tile_the_store(make_store):
    store = make_store(patients=15)
    tests = [make_kfold_split(store, folds=5, val_fold=-1, test_fold=f, seed=3)["test"] for f in range(5)]
    joined = np.concatenate(tests)
    assert len(joined) == len(store) == len(np.unique(joined))


def test_kfold_is_stratified_and_seeded(make_store):
    store = make_store(patients=15, classes=3)  # 5 patients per class
    split = make_kfold_split(store, folds=5, seed=0)
    for name in PARTITIONS:
        # every partition gets one patient (3 samples) of each class
        np.testing.assert_array_equal(np.bincount(store.labels[split[name]], minlength=3)[:3] > 0, True)
    again = make_kfold_split(store, folds=5, seed=0)
    other = make_kfold_split(store, folds=5, seed=1)
    np.testing.assert_array_equal(split["test"], again["test"])
    assert any(not np.array_equal(split[p], other[p]) for p in PARTITIONS)
    assert split.meta["params"]["stratified_on"] == "class"
    assert split.meta["store"]["checksum"] == store.checksum


def test_segmentation_is_stratified_on_mask_presence(make_store):
    store = make_store(task="segmentation", patients=6, per_patient=3)
    np.testing.assert_array_equal(strata(store)[:3], [1, 0, 1])
    split = make_kfold_split(store, folds=3, seed=0)
    assert split.meta["params"]["stratified_on"] == "mask present"


def test_multilabel_strata_pick_the_most_frequent_positive_label(make_store):
    store = make_store(task="multilabel", patients=20, per_patient=2)
    labels = np.asarray(store.labels) > 0.5
    freq = labels.sum(axis=0)
    y = strata(store)
    for row, chosen in zip(labels, y):
        if not row.any():
            assert chosen == -1
        else:
            assert row[chosen] and freq[chosen] == freq[row].max()


def test_no_labels_falls_back_to_group_kfold(make_store, monkeypatch):
    store = make_store(patients=8)
    monkeypatch.setattr("medtl.data.splits.strata", lambda s: None)
    split = make_kfold_split(store, folds=4, seed=0)
    assert split.meta["params"]["stratified_on"] is None
    assert_patient_disjoint(store, split)
    assert [len(split[p]) for p in PARTITIONS] == [12, 6, 6]


def test_as_many_folds_as_patients_gives_one_patient_per_fold(make_store, caplog):
    # Stratifying 7 patients of 3 classes into 7 folds can leave a fold empty (seed 8 does);
    # the split then falls back to plain patient folds. Every class has 2+ patients, so every
    # training part keeps every class.
    store = make_store(patients=7, classes=3)
    for seed in (0, 8):
        caplog.clear()
        with caplog.at_level("INFO", logger="medtl"):
            tests = [
                make_kfold_split(store, folds=7, val_fold=-1, test_fold=f, seed=seed)["test"]
                for f in range(7)
            ]
        assert [len(patients_of(store, t)) for t in tests] == [1] * 7
        assert ("stratified folds would leave one empty" in caplog.text) == (seed == 8)


@pytest.mark.parametrize("seed", [0, 5])
def test_fraction_split_groups_patients_and_keeps_fractions(make_store, seed):
    store = make_store(patients=60, per_patient=2, classes=3)
    split = make_fraction_split(store, val=0.1, test=0.2, seed=seed)
    assert_patient_disjoint(store, split)
    assert [len(split[p]) for p in PARTITIONS] == [84, 12, 24]
    for name in PARTITIONS:  # stratified: same share of every class
        counts = np.bincount(store.labels[split[name]], minlength=3)
        assert counts.max() - counts.min() <= 2
    assert split.meta["method"] == "fraction" and split.meta["seed"] == seed


def test_fraction_split_gives_tiny_stores_a_patient_per_partition(make_store):
    store = make_store(patients=4, classes=2)  # P0 c0, P1 c1, P2 c0, P3 c1
    for seed in range(5):
        split = make_fraction_split(store, val=0.05, test=0.05, seed=seed)
        assert [len(patients_of(store, split[p])) for p in PARTITIONS] == [2, 1, 1]
        assert set(store.labels[split["train"]].tolist()) == {0, 1}  # the donors keep both classes


def test_a_split_that_leaves_a_class_out_of_training_is_refused(make_store):
    store = make_store(patients=3, classes=3)  # one patient per class
    with pytest.raises(
        InputError, match=r"leaves class 'c\d' out of training \(train 0, val \d, test \d samples\)"
    ):
        make_fraction_split(store, val=0.2, test=0.2)


def test_kfold_without_a_training_fold_is_refused(make_store):
    store = make_store(patients=3, classes=2)
    with pytest.raises(
        ConfigError, match="2 folds with a validation and a test fold leave no fold for training"
    ):
        make_kfold_split(store, folds=2)
    split = make_kfold_split(store, folds=2, test_fold=-1)
    assert len(split["train"]) and len(split["val"]) and not len(split["test"])


def test_few_shot_subsets_train_per_class_and_nests(make_store):
    store = make_store(patients=30, per_patient=4, classes=3)
    split = make_kfold_split(store, folds=5, seed=0)
    train_labels = np.bincount(store.labels[split["train"]], minlength=3)
    small = few_shot(split, store, 0.1, seed=2)
    large = few_shot(split, store, 0.5, seed=2)
    assert set(small["train"]) <= set(large["train"]) <= set(split["train"])
    np.testing.assert_array_equal(
        np.bincount(store.labels[large["train"]], minlength=3), np.floor(train_labels * 0.5 + 0.5)
    )
    np.testing.assert_array_equal(small["val"], split["val"])
    np.testing.assert_array_equal(small["test"], split["test"])
    assert small.meta["few_shot"] == {"fraction": 0.1, "seed": 2, "train_before": len(split["train"])}
    tiny = few_shot(split, store, 0.001, seed=0)
    np.testing.assert_array_equal(np.bincount(store.labels[tiny["train"]], minlength=3), [1, 1, 1])
    np.testing.assert_array_equal(few_shot(split, store, 1.0)["train"], split["train"])


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5])
def test_few_shot_fraction_outside_0_1(store, fraction):
    split = make_kfold_split(store, folds=3)
    with pytest.raises(ConfigError, match=r"fraction must be in \(0, 1\], got"):
        few_shot(split, store, fraction)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"folds": 11}, InputError, "cannot make 11 folds: the store has only 10 patients"),
        ({"folds": 1}, ConfigError, "folds must be at least 2"),
        ({"folds": 3, "test_fold": 3}, ConfigError, r"test fold 3 does not exist with 3 folds \(0..2\)"),
        ({"val_fold": 1, "test_fold": 1}, ConfigError, r"val fold and test fold must differ \(both 1\)"),
    ],
)
def test_bad_kfold_parameters(store, kwargs, error, message):
    with pytest.raises(error, match=message) as info:
        make_kfold_split(store, **kwargs)
    if error is InputError:
        assert str(info.value).startswith(str(store.path))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"val": -0.1}, r"val fraction must be in \[0, 1\)"),
        ({"test": 1.0}, r"test fraction must be in \[0, 1\)"),
        ({"val": 0.5, "test": 0.5}, "val \\+ test fractions must leave a training part"),
    ],
)
def test_bad_fractions(store, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        make_fraction_split(store, **kwargs)


def test_split_file_round_trip(store, tmp_path):
    split = few_shot(make_kfold_split(store, folds=5, seed=4), store, 0.5, seed=1)
    path = split.save(default_split_path(store.path))
    assert path == tmp_path / "store.split.json"
    data = json.loads(path.read_text())
    assert data["format"] == "medtl-split" and data["format_version"] == 1
    assert data["store"] == {"path": str(store.path.resolve()), "checksum": store.checksum}
    assert data["method"] == "kfold" and data["seed"] == 4
    assert data["params"]["folds"] == 5
    assert data["counts"] == {p: len(split[p]) for p in PARTITIONS}
    loaded = load_split(path, store)
    for name in PARTITIONS:
        np.testing.assert_array_equal(loaded[name], split[name])
    assert loaded.meta["few_shot"]["fraction"] == 0.5


def test_save_rewrites_an_identical_split_but_not_another(store, tmp_path):
    path = tmp_path / "s.json"
    make_kfold_split(store, seed=0).save(path)
    make_kfold_split(store, seed=0).save(path)  # the same command again
    with pytest.raises(OutputExistsError, match=r"s\.json: output already exists"):
        make_kfold_split(store, seed=1).save(path)
    make_kfold_split(store, seed=1).save(path, overwrite=True)
    assert json.loads(path.read_text())["seed"] == 1


def test_split_file_from_another_store_is_refused(make_store, tmp_path):
    a, b = make_store("a", seed=0), make_store("b", seed=1)
    path = make_kfold_split(a).save(tmp_path / "a.split.json")
    with pytest.raises(StoreError) as info:
        load_split(path, b)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: split file was made for another store ({a.path.resolve()})")
    assert str(b.path) in message


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a JSON split file"),
        ('{"format": "something-else"}', "not a medtl split file"),
        ("[1, 2, 3]", "not a medtl split file"),
        ('{"format": "medtl-split", "format_version": 99}', "split format 99 is newer"),
    ],
)
def test_malformed_split_files(store, tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(StoreError, match=message) as info:
        load_split(path, store)
    assert str(info.value).startswith(f"{path}: ")


def test_split_file_with_bad_indices(store, tmp_path):
    path = tmp_path / "s.json"
    data = make_kfold_split(store).to_json()
    data["partitions"]["test"].append(len(store) + 5)
    path.write_text(json.dumps(data))
    with pytest.raises(StoreError, match="partition 'test' has indices outside the store's 30 samples"):
        load_split(path, store)
    data["partitions"]["test"] = data["partitions"]["train"][:1]
    path.write_text(json.dumps(data))
    with pytest.raises(StoreError, match="partition 'test' repeats samples"):
        load_split(path, store)


def test_missing_split_file(store, tmp_path):
    with pytest.raises(StoreError, match="split file not found") as info:
        load_split(tmp_path / "nope.json", store)
    assert "medtl data split" in info.value.hint
