"""Probes on cached features: heads, curves, outputs, early stopping and bad inputs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from safetensors.torch import load_file
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from medtl.errors import ConfigError, InputError, OutputExistsError, UnknownChoiceError
from medtl.evaluate.probe import CURVE_COLUMNS, ProbeSettings, build_head, head_widths, train_probe
from medtl.io.features import FeatureSplit, load_features, save_features


def clusters(n: int, k: int, d: int, seed: int, multilabel: bool = False, shift: float = 2.0):
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(k, d)) * shift
    if multilabel:
        labels = (rng.random((n, k)) < 0.5).astype(np.float32)
        feats = labels @ centres + rng.normal(size=(n, d))
    else:
        labels = rng.integers(0, k, n)
        feats = centres[labels] + rng.normal(size=(n, d))
    return FeatureSplit(feats.astype(np.float32), labels, np.arange(n), np.array([f"p{i}" for i in range(n)]))


def make_features(tmp_path, k=3, multilabel=False, splits=("train", "val", "test"), shift=2.0):
    parts = {
        s: clusters({"train": 60, "val": 20, "test": 20}[s], k, 16, i, multilabel, shift)
        for i, s in enumerate(splits)
    }
    return save_features(
        tmp_path / "feats",
        parts,
        backbone="resnet10t",
        task="multilabel" if multilabel else "classification",
        class_names=[f"c{i}" for i in range(k)],
        store_checksum="sha256:x",
    )


@pytest.mark.parametrize(
    ("head", "k", "multilabel", "task"),
    [
        ("linear", 3, False, "multiclass"),
        ("mlp-64-32", 2, False, "binary"),
        ("mlp-512-256-256-128", 4, True, "multilabel"),
        ("logreg", 3, False, "multiclass"),
        ("logreg", 2, False, "binary"),
        ("logreg", 4, True, "multilabel"),
    ],
)
def test_heads_learn_and_write_their_outputs(tmp_path, head, k, multilabel, task):
    feats = make_features(tmp_path, k, multilabel)
    epochs = 1 if head == "logreg" else 15
    result = train_probe(feats, ProbeSettings(head=head, epochs=epochs, lr=3e-3, batch_size=16))
    assert result.task == task and result.out == feats / f"probe-{head}"
    assert len(result.curves) == epochs
    assert result.final("val") > 0.9 and result.final("test") > 0.9
    with open(result.out / "curves.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CURVE_COLUMNS and len(rows) == epochs
    assert float(rows[-1]["test_auroc"]) == pytest.approx(result.curves[-1]["test_auroc"])
    saved = json.loads((result.out / "probe.json").read_text())
    assert saved["metrics"]["test"]["auroc"] == pytest.approx(result.final("test"))
    assert saved["backbone"] == "resnet10t" and saved["epochs_run"] == epochs
    assert saved["metrics"]["val"]["class_names"] == [f"c{i}" for i in range(k)]
    assert (result.out / "head.safetensors").exists() == (head != "logreg")
    if head != "logreg":
        weights = load_file(result.out / "head.safetensors")
        outputs = 1 if task == "binary" else k
        assert weights[f"{2 * len(head_widths(head))}.weight"].shape[0] == outputs
        assert result.curves[-1]["train_loss"] < result.curves[0]["train_loss"]


def test_logreg_equals_sklearn(tmp_path):
    feats = make_features(tmp_path, 3, shift=0.5)  # overlapping classes: AUROC well below 1
    result = train_probe(feats, ProbeSettings(head="logreg", c=0.3))
    fs = load_features(feats)
    ref = make_pipeline(StandardScaler(), LogisticRegression(C=0.3, max_iter=2000))
    ref.fit(fs.splits["train"].features, fs.splits["train"].labels)
    proba = ref.predict_proba(fs.splits["test"].features)
    expected = roc_auc_score(fs.splits["test"].labels, proba, multi_class="ovr")
    assert result.final("test") == pytest.approx(expected, abs=1e-6)
    assert result.final("test") < 0.99


def test_same_seed_same_curves(tmp_path):
    feats = make_features(tmp_path)
    settings = ProbeSettings(head="mlp-64-32", epochs=4, lr=1e-3, seed=3)
    a = train_probe(feats, settings, out=tmp_path / "a")
    b = train_probe(feats, settings, out=tmp_path / "b")
    c = train_probe(feats, ProbeSettings(head="mlp-64-32", epochs=4, lr=1e-3, seed=4), out=tmp_path / "c")
    assert a.curves == b.curves
    assert a.curves != c.curves


def test_early_stopping_keeps_the_best_epoch(tmp_path):
    feats = make_features(tmp_path, shift=4.0)  # separable: val AUROC reaches 1.0 and cannot improve
    result = train_probe(feats, ProbeSettings(head="linear", epochs=200, lr=1e-2, patience=3))
    assert result.stopped_early
    assert len(result.curves) == result.best_epoch + 3
    best_row = result.curves[result.best_epoch - 1]
    assert result.final("val") == pytest.approx(best_row["val_auroc"])
    assert result.final("test") == pytest.approx(best_row["test_auroc"])


def test_default_lr_is_the_study_s_for_mlp(tmp_path):
    feats = make_features(tmp_path)
    result = train_probe(feats, ProbeSettings(head="mlp-64-32", epochs=1))
    assert result.settings["lr"] == 5e-5
    assert ProbeSettings(head="linear").resolved_lr() == 1e-3


def test_without_test_split_test_auroc_is_empty(tmp_path):
    feats = make_features(tmp_path, splits=("train", "val"))
    result = train_probe(feats, ProbeSettings(head="linear", epochs=2, lr=1e-2))
    assert set(result.metrics) == {"val"}
    with open(result.out / "curves.csv", newline="") as fh:
        assert [r["test_auroc"] for r in csv.DictReader(fh)] == ["", ""]


def test_custom_mlp_widths():
    head = build_head("mlp-8-4-2", 10, 3)
    assert [m.out_features for m in head if hasattr(m, "out_features")] == [8, 4, 2, 3]


@pytest.mark.parametrize("head", ["mlp", "mlp-0", "mlp-a-b", "svm"])
def test_unknown_head(tmp_path, head):
    with pytest.raises(UnknownChoiceError, match=f"unknown probe head '{head}'"):
        train_probe(make_features(tmp_path), ProbeSettings(head=head))


def test_bad_inputs(tmp_path):
    feats = make_features(tmp_path, splits=("val", "test"))
    with pytest.raises(InputError, match=r"features.json: has no 'train' split \(splits: val, test\)"):
        train_probe(feats, ProbeSettings(epochs=1))
    feats2 = make_features(tmp_path / "b", splits=("train",))
    with pytest.raises(ConfigError, match=r"early stopping .* needs a non-empty .val. split"):
        train_probe(feats2, ProbeSettings(epochs=1, patience=2))
    train_probe(feats2, ProbeSettings(epochs=1))
    with pytest.raises(OutputExistsError, match="probe-linear: output already exists"):
        train_probe(feats2, ProbeSettings(epochs=1))
    train_probe(feats2, ProbeSettings(epochs=1), overwrite=True)


def test_one_class_training_labels(tmp_path):
    part = clusters(10, 2, 4, 0)
    part.labels[:] = 1
    feats = save_features(
        tmp_path / "f", {"train": part}, backbone="b", task="classification", class_names=["a", "b"]
    )
    with pytest.raises(InputError) as info:
        train_probe(feats, ProbeSettings(epochs=1))
    assert (
        str(info.value) == f"{feats / 'labels_train.npy'}: holds one class only; a probe needs at least two"
    )
    assert not (feats / "probe-linear").exists() and not (feats / ".probe-linear.partial").exists()


def test_empty_val_split_counts_as_absent(tmp_path):
    train = clusters(30, 2, 4, 0)
    empty = FeatureSplit(np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0), np.array([]))
    feats = save_features(
        tmp_path / "f",
        {"train": train, "val": empty},
        backbone="b",
        task="classification",
        class_names=["a", "b"],
    )
    result = train_probe(feats, ProbeSettings(epochs=2, lr=1e-2))
    assert result.metrics == {} and result.best_epoch is None
    with pytest.raises(ConfigError, match="non-empty 'val' split"):
        train_probe(feats, ProbeSettings(epochs=2, patience=1), overwrite=True)


def test_probe_on_features_exported_from_a_run(tiny_run, tmp_path):
    """The `medtl extract` writer (medtl.engine.export_features) and the probe agree on the format."""
    from medtl.data.splits import make_fraction_split
    from medtl.engine import export_features
    from medtl.io.store import Store

    run_dir, store = tiny_run
    split = make_fraction_split(Store(store), val=0.2, test=0.3, seed=1)
    path = split.save(tmp_path / "split.json")
    feats = export_features(run_dir, store, tmp_path / "feats", split=path, device="cpu")
    result = train_probe(feats, ProbeSettings(head="logreg"))
    saved = json.loads((result.out / "probe.json").read_text())
    assert saved["backbone"] == "resnet10t" and result.task == "multiclass"
    assert set(result.metrics) == {"val", "test"}
    assert result.metrics["test"]["num_samples"] == len(split["test"])
    assert result.metrics["test"]["class_names"] == ["glioma", "meningioma", "pituitary"]
