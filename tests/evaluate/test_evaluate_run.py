"""evaluate_run on a real tiny run: own store, external store with a class map, TTA, robustness."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medtl.errors import InputError, UnknownChoiceError
from medtl.evaluate.evaluate import evaluate_run, match_classes, read_class_map
from medtl.io.store import SampleRecord, Store, StoreWriter
from tests.evaluate.evaluate_helpers import write_store

KAGGLE_MAP = {"glioma_tumor": "glioma", "meningioma_tumor": "meningioma", "pituitary_tumor": "pituitary"}


def relabelled_copy(store_path, out, extra: int = 4):
    """The run's store with Kaggle's class names in another order, plus `extra` 'no_tumor' images."""
    src = Store(store_path)
    names = ["glioma_tumor", "meningioma_tumor", "no_tumor", "pituitary_tumor"]
    to_new = np.array([0, 1, 3])  # glioma, meningioma, pituitary -> their Kaggle index
    with StoreWriter(
        out, task="classification", image_shape=src.shape, class_names=names, label_shape=()
    ) as writer:
        for i in range(len(src)):
            label = to_new[int(src.labels[i])]
            writer.add(
                f"u{i}",
                np.asarray(src.images[i : i + 1]),
                [SampleRecord(f"P{i}", f"k{i}.png")],
                labels=np.array([label]),
            )
        for j in range(extra):
            image = np.full((1, *src.shape), 0.3, dtype=np.float32)
            writer.add(f"x{j}", image, [SampleRecord(f"X{j}", f"x{j}.png")], labels=np.array([2]))
        return writer.finish()


def test_own_store_reproduces_the_run_s_test_metrics(tiny_run):
    run_dir, store = tiny_run
    result = evaluate_run(run_dir, store, bootstrap=30)
    recorded = json.loads((run_dir / "metrics.json").read_text())
    assert result.split == "test" and not result.external
    assert result.num_samples == recorded["data"]["counts"]["test"]
    for name in ("auroc", "accuracy", "f1"):
        assert result.metrics[name] == pytest.approx(recorded["test"][name])
    low, high = result.metrics.ci95["auroc"]
    assert low <= result.metrics["auroc"] <= high
    assert result.path == run_dir / "evaluation_cemri-test.json"
    saved = json.loads(result.path.read_text())
    assert saved["metrics"]["confusion_matrix"] == result.metrics["confusion_matrix"]
    assert saved["class_names"] == ["glioma", "meningioma", "pituitary"] and saved["robustness"] is None


def test_external_store_with_class_map_matches_own_store(tiny_run, tmp_path):
    run_dir, store = tiny_run
    kaggle = relabelled_copy(store, tmp_path / "kaggle")
    own = evaluate_run(run_dir, store, split="all", bootstrap=0)
    ext = evaluate_run(run_dir, kaggle, class_map=KAGGLE_MAP, bootstrap=0)
    assert ext.external and ext.split == "all"
    assert ext.dropped == {"no_tumor": 4}
    assert ext.num_samples == own.num_samples == len(Store(store))
    assert ext.class_names == ["glioma", "meningioma", "pituitary"]
    for name in ("auroc", "accuracy", "balanced_accuracy", "f1", "auroc_per_class"):
        assert ext.metrics[name] == pytest.approx(own.metrics[name]), name
    assert ext.metrics["confusion_matrix"] == own.metrics["confusion_matrix"]
    saved = json.loads((run_dir / "evaluation_kaggle-all.json").read_text())
    assert saved["class_map"] == KAGGLE_MAP and saved["dropped"] == {"no_tumor": 4}


def test_class_map_file_json_and_toml(tiny_run, tmp_path):
    run_dir, store = tiny_run
    kaggle = relabelled_copy(store, tmp_path / "kaggle", extra=1)
    toml = tmp_path / "map.toml"
    toml.write_text("".join(f'{k} = "{v}"\n' for k, v in KAGGLE_MAP.items()))
    js = tmp_path / "map.json"
    js.write_text(json.dumps(KAGGLE_MAP))
    assert read_class_map(toml) == read_class_map(js) == KAGGLE_MAP
    a = evaluate_run(run_dir, kaggle, class_map=toml, bootstrap=0, name="a")
    assert a.path.name == "evaluation_a.json" and a.dropped == {"no_tumor": 1}


def test_tta_and_robustness_are_recorded(tiny_run):
    run_dir, store = tiny_run
    result = evaluate_run(
        run_dir,
        store,
        tta="tencrop",
        robustness=True,
        corruptions=["gaussian_noise", "downsample"],
        severities=[1, 5],
        bootstrap=0,
    )
    assert result.path.name == "evaluation_cemri-test-tencrop.json"
    rows = result.robustness.rows
    assert [(r["corruption"], r["severity"]) for r in rows] == [
        ("clean", 0),
        ("gaussian_noise", 1),
        ("gaussian_noise", 5),
        ("downsample", 1),
        ("downsample", 5),
    ]
    # The clean row is the same evaluation as the headline metrics.
    assert rows[0]["auroc"] == pytest.approx(result.metrics["auroc"])
    saved = json.loads(result.path.read_text())
    assert saved["tta"] == "tencrop" and len(saved["robustness"]["rows"]) == 5


def test_external_store_of_another_size_is_resized(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    big = write_store(tmp_path / "big", ["glioma", "meningioma", "pituitary"], size=40, n=9)
    result = evaluate_run(run_dir, big, bootstrap=0)
    assert result.external and result.num_samples == 9


def test_unmatched_classes_need_a_map(tiny_run, tmp_path):
    run_dir, store = tiny_run
    kaggle = relabelled_copy(store, tmp_path / "kaggle", extra=1)
    with pytest.raises(InputError) as info:
        evaluate_run(run_dir, kaggle, bootstrap=0)
    assert str(info.value).startswith(f"{kaggle}: classes glioma_tumor, meningioma_tumor, no_tumor")
    assert "--class-map" in info.value.hint


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"glioma_tumour": "glioma"}, "unknown store class 'glioma_tumour', did you mean 'glioma_tumor'"),
        (
            {"glioma_tumor": "gliomas"},
            "'glioma_tumor' maps to 'gliomas', which is not a run class, did you mean",
        ),
        ({}, "no store class maps to a run class"),
    ],
)
def test_bad_class_map_names_the_file(tmp_path, table, problem):
    path = tmp_path / "map.json"
    path.write_text(json.dumps(table))
    with pytest.raises(InputError) as info:
        match_classes(
            ["glioma_tumor", "no_tumor"],
            ["glioma", "pituitary"],
            read_class_map(path),
            multilabel=False,
            source=path,
        )
    assert str(info.value).startswith(f"{path}: {problem}")


@pytest.mark.parametrize(
    ("text", "problem"),
    [("{", "not valid JSON"), ('{"a": 1}', "a class map must map external class names")],
)
def test_malformed_class_map(tmp_path, text, problem):
    path = tmp_path / "map.json"
    path.write_text(text)
    with pytest.raises(InputError, match=problem):
        read_class_map(path)
    with pytest.raises(InputError, match="class map not found"):
        read_class_map(tmp_path / "none.json")


def test_multilabel_match_keeps_only_mapped_run_classes():
    match = match_classes(
        ["Effusion", "Mass", "Other"],
        ["mass", "effusion", "nodule"],
        {"Effusion": "effusion", "Mass": "mass"},
        multilabel=True,
        source="m.json",
    )
    assert match.run_classes == ["mass", "effusion"] and match.dropped == ["Other"]


def test_wrong_store_kinds(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    multilabel = write_store(tmp_path / "ml", ["glioma", "meningioma", "pituitary"], task="multilabel", n=6)
    with pytest.raises(InputError, match="has multilabel labels but the run is one class per sample"):
        evaluate_run(run_dir, multilabel, bootstrap=0)
    seg = tmp_path / "seg"
    with StoreWriter(
        seg, task="segmentation", image_shape=(1, 8, 8), class_names=[], mask_shape=(1, 8, 8)
    ) as w:
        w.add("a", np.zeros((1, 1, 8, 8)), [SampleRecord("P", "a")], masks=np.zeros((1, 1, 8, 8), np.uint8))
        w.finish()
    with pytest.raises(InputError, match="is a segmentation store"):
        evaluate_run(run_dir, seg, bootstrap=0)


def test_external_store_without_split_file(tiny_run, tmp_path):
    run_dir, _ = tiny_run
    other = write_store(tmp_path / "other", ["glioma", "meningioma", "pituitary"], n=6, seed=5)
    with pytest.raises(InputError, match="external store without a split file") as info:
        evaluate_run(run_dir, other, split="test", bootstrap=0)
    assert "--split all" in info.value.hint


def test_bad_choices(tiny_run):
    run_dir, store = tiny_run
    with pytest.raises(UnknownChoiceError, match="unknown test-time augmentation 'fivecrop'"):
        evaluate_run(run_dir, store, tta="fivecrop")
    with pytest.raises(UnknownChoiceError, match="unknown split 'tests', did you mean 'test'"):
        evaluate_run(run_dir, store, split="tests")
    with pytest.raises(InputError, match="not a medtl run directory"):
        evaluate_run(store, store)


def test_split_file_made_after_the_run_does_not_change_its_test_part(tiny_run):
    from medtl.data.splits import default_split_path, make_fraction_split

    run_dir, store = tiny_run
    before = evaluate_run(run_dir, store, bootstrap=0)
    later = default_split_path(store)
    make_fraction_split(Store(store), val=0.3, test=0.5, seed=9).save(later)
    try:
        after = evaluate_run(run_dir, store, bootstrap=0)
    finally:
        later.unlink()
    assert after.num_samples == before.num_samples
    assert after.metrics["confusion_matrix"] == before.metrics["confusion_matrix"]


def test_multilabel_run_with_partial_class_map(tmp_path):
    from tests.evaluate.evaluate_helpers import train_run

    store = write_store(tmp_path / "cxr", ["effusion", "mass", "nodule"], task="multilabel", n=30)
    run_dir = train_run(store, tmp_path / "runs")
    own = evaluate_run(run_dir, store, bootstrap=0)
    recorded = json.loads((run_dir / "metrics.json").read_text())
    assert own.task == "multilabel" and own.metrics["auroc"] == pytest.approx(recorded["test"]["auroc"])
    # An external set naming two of the three findings differently, plus one the run does not know.
    src = Store(store)
    labels = np.asarray(src.labels)
    with StoreWriter(
        tmp_path / "ext",
        task="multilabel",
        image_shape=src.shape,
        class_names=["Other", "Nodule", "Effusion"],
        label_shape=(3,),
    ) as writer:
        for i in range(len(src)):
            row = np.array([[1.0, labels[i, 2], labels[i, 0]]], dtype=np.float32)
            writer.add(f"u{i}", np.asarray(src.images[i : i + 1]), [SampleRecord(f"P{i}", "x")], labels=row)
        ext_store = writer.finish()
    everything = evaluate_run(run_dir, store, split="all", bootstrap=0)
    # Same images as the training store, so it counts as the run's own store: ask for every sample.
    ext = evaluate_run(
        run_dir, ext_store, split="all", class_map={"Nodule": "nodule", "Effusion": "effusion"}, bootstrap=0
    )
    assert ext.class_names == ["effusion", "nodule"] and ext.dropped == {"Other": len(src)}
    assert ext.num_samples == len(src)
    per_class = dict(zip(everything.class_names, everything.metrics["auroc_per_class"]))
    assert ext.metrics["auroc_per_class"] == pytest.approx([per_class["effusion"], per_class["nodule"]])
