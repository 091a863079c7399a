"""The features directory: round trip, atomic writing, and one-line errors for bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medtl.errors import InputError, OutputExistsError
from medtl.io.features import FeatureSplit, FeatureWriter, load_features, read_features_meta, save_features


def make_split(n: int, d: int = 8, k: int = 3, multilabel: bool = False, seed: int = 0) -> FeatureSplit:
    rng = np.random.default_rng(seed)
    labels = (rng.random((n, k)) < 0.4).astype(np.float32) if multilabel else rng.integers(0, k, n)
    return FeatureSplit(
        rng.normal(size=(n, d)).astype(np.float32),
        labels,
        np.arange(n) * 2,
        np.array([f"p{i // 2}" for i in range(n)], dtype=object),
    )


def write(tmp_path, multilabel=False, **kw):
    splits = {
        "train": make_split(10, multilabel=multilabel),
        "val": make_split(4, multilabel=multilabel, seed=1),
    }
    return save_features(
        tmp_path / "feats",
        splits,
        backbone="resnet10t",
        task="multilabel" if multilabel else "classification",
        class_names=["a", "b", "c"],
        store=tmp_path / "store",
        store_checksum="sha256:abc",
        extra={"source": "run-1"},
        **kw,
    ), splits


@pytest.mark.parametrize("multilabel", [False, True])
def test_round_trip(tmp_path, multilabel):
    out, splits = write(tmp_path, multilabel)
    assert sorted(p.name for p in out.iterdir()) == [
        "features.json",
        "features_train.npy",
        "features_val.npy",
        "index_train.csv",
        "index_val.csv",
        "labels_train.npy",
        "labels_val.npy",
    ]
    fs = load_features(out)
    assert fs.dim == 8 and fs.class_names == ["a", "b", "c"] and fs.backbone == "resnet10t"
    assert fs.meta["splits"] == {"train": 10, "val": 4} and fs.meta["source"] == "run-1"
    assert fs.meta["store_checksum"] == "sha256:abc"
    for name, part in splits.items():
        got = fs.splits[name]
        np.testing.assert_array_equal(got.features, part.features)
        np.testing.assert_array_equal(got.labels, part.labels)
        np.testing.assert_array_equal(got.indices, part.indices)
        assert got.patient_ids.tolist() == part.patient_ids.tolist()
        assert got.features.dtype == np.float32
        assert got.labels.dtype == (np.float32 if multilabel else np.int64)
    assert list(load_features(out, ["val"]).splits) == ["val"]
    assert not (tmp_path / ".feats.partial").exists()


def test_existing_output_needs_overwrite(tmp_path):
    write(tmp_path)
    with pytest.raises(OutputExistsError):
        write(tmp_path)
    out, _ = write(tmp_path, overwrite=True)
    assert load_features(out).meta["splits"]["train"] == 10


def test_interrupted_write_leaves_nothing(tmp_path):
    with (
        pytest.raises(RuntimeError),
        FeatureWriter(tmp_path / "f", backbone="b", task="classification", class_names=["x", "y"]) as writer,
    ):
        writer.add_split("train", np.zeros((2, 3)), [0, 1], [0, 1], ["a", "b"])
        raise RuntimeError("killed")
    assert not (tmp_path / "f").exists() and not (tmp_path / ".f.partial").exists()


BAD_INPUTS = [
    # (what to break, file named in the message, problem in the message)
    (
        lambda d: (d / "features_val.npy").unlink(),
        "features_val.npy",
        "missing (features.json lists split 'val')",
    ),
    (lambda d: (d / "index_train.csv").unlink(), "index_train.csv", "missing"),
    (
        lambda d: np.save(d / "labels_train.npy", np.zeros(9, dtype=np.int64)),
        "labels_train.npy",
        "has 9 rows but features_train.npy has 10",
    ),
    (
        lambda d: np.save(d / "features_val.npy", np.zeros((4, 5), dtype=np.float32)),
        "features_val.npy",
        "does not match (N, 8)",
    ),
    (
        lambda d: np.save(d / "features_val.npy", np.full((4, 8), np.nan, dtype=np.float32)),
        "features_val.npy",
        "NaN or infinite",
    ),
    (
        lambda d: np.save(d / "labels_val.npy", np.array([0, 1, 2, 7])),
        "labels_val.npy",
        "class indices 0..2",
    ),
    (
        lambda d: (d / "index_val.csv").write_text("index,patient_id\n0,p0\n"),
        "index_val.csv",
        "has 1 rows but features_val.npy has 4",
    ),
    (lambda d: (d / "features_train.npy").write_bytes(b"junk"), "features_train.npy", "cannot be read"),
    (lambda d: (d / "features.json").unlink(), "features.json", "missing: not a features directory"),
    (lambda d: (d / "features.json").write_text("{"), "features.json", "invalid JSON"),
    (
        lambda d: (d / "features.json").write_text('{"format": "x"}'),
        "features.json",
        "not a medtl features file",
    ),
]


@pytest.mark.parametrize(("action", "filename", "problem"), BAD_INPUTS)
def test_bad_inputs_name_the_file(tmp_path, action, filename, problem):
    out, _ = write(tmp_path)
    action(out)
    with pytest.raises(InputError) as info:
        load_features(out)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(out / filename)), message
    assert problem in message


def test_unknown_split_and_missing_directory(tmp_path):
    out, _ = write(tmp_path)
    with pytest.raises(InputError, match=r"features.json: has no split 'test' \(splits: train, val\)"):
        load_features(out, ["train", "test"])
    with pytest.raises(InputError, match="features directory not found") as info:
        read_features_meta(tmp_path / "nope")
    assert "medtl extract" in info.value.hint


def test_meta_lacking_keys(tmp_path):
    out, _ = write(tmp_path)
    meta = json.loads((out / "features.json").read_text())
    del meta["dim"], meta["class_names"]
    (out / "features.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="lacks class_names, dim"):
        load_features(out)


def test_empty_split_takes_the_feature_width(tmp_path):
    with FeatureWriter(tmp_path / "f", backbone="b", task="classification", class_names=["x", "y"]) as writer:
        writer.add_split("val", np.zeros((0, 0), dtype=np.float32), [], [], [])
        writer.add_split("train", np.ones((2, 3)), [0, 1], [0, 1], ["a", "b"])
        out = writer.finish()
    fs = load_features(out)
    assert fs.splits["val"].features.shape == (0, 3) and fs.meta["splits"] == {"val": 0, "train": 2}
    with (
        pytest.raises(ValueError, match="every split is empty"),
        FeatureWriter(tmp_path / "g", backbone="b", task="classification", class_names=["x", "y"]) as writer,
    ):
        writer.add_split("val", np.zeros((0, 0)), [], [], [])
        writer.finish()
