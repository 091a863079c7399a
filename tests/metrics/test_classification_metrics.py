"""Classification metrics against scikit-learn, one table of cases per task type."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from medtl.metrics import (
    ClassificationMetrics,
    auroc,
    auroc_per_class,
    binary_auroc,
    classification_metrics,
    metric_task,
    predict_labels,
)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def make_data(task: str, n: int, k: int, seed: int, ties: bool = False):
    rng = np.random.default_rng(seed)
    if task == "binary":
        y = rng.integers(0, 2, n)
        score = 1 / (1 + np.exp(-(rng.normal(size=n) + 0.8 * y)))
    elif task == "multiclass":
        y = rng.integers(0, k, n)
        logits = rng.normal(size=(n, k))
        logits[np.arange(n), y] += 1.0
        score = _softmax(logits)
    else:
        y = (rng.random((n, k)) < 0.35).astype(np.float32)
        score = 1 / (1 + np.exp(-(rng.normal(size=(n, k)) + 1.2 * y - 0.3)))
    if ties:  # coarse scores exercise the tie handling of AUROC
        score = np.round(score, 1)
    return y, score


CASES = [
    # task, n, k, seed, ties
    ("binary", 60, 2, 0, False),
    ("binary", 200, 2, 1, True),
    ("multiclass", 90, 3, 2, False),
    ("multiclass", 150, 5, 3, True),
    ("multilabel", 80, 4, 4, False),
    ("multilabel", 120, 14, 5, True),
]


def sklearn_reference(task: str, y, score, k: int) -> dict:
    if task == "binary":
        pred = (score >= 0.5).astype(int)
        auc = skm.roc_auc_score(y, score)
        cm = skm.confusion_matrix(y, pred, labels=[0, 1])
        ref_balanced = skm.balanced_accuracy_score(y, pred)
        ref_accuracy = skm.accuracy_score(y, pred)
    elif task == "multiclass":
        pred = score.argmax(1)
        if np.allclose(score.sum(1), 1):
            auc = skm.roc_auc_score(y, score, multi_class="ovr", average="macro")
        else:  # rounded (tied) scores no longer sum to 1, which multi_class="ovr" insists on
            auc = skm.roc_auc_score(np.eye(k)[y], score, average="macro")
        cm = skm.confusion_matrix(y, pred, labels=list(range(k)))
        ref_balanced = skm.balanced_accuracy_score(y, pred)
        ref_accuracy = skm.accuracy_score(y, pred)
    else:
        pred = (score >= 0.5).astype(int)
        auc = skm.roc_auc_score(y, score, average="macro")
        cm = skm.multilabel_confusion_matrix(y, pred)
        ref_balanced = np.mean([skm.balanced_accuracy_score(y[:, c], pred[:, c]) for c in range(k)])
        ref_accuracy = skm.accuracy_score(y, pred)  # subset accuracy
    labels = list(range(k)) if task != "multilabel" else None
    kw = {"labels": labels, "zero_division": 0}
    return {
        "accuracy": ref_accuracy,
        "balanced_accuracy": ref_balanced,
        "auroc": auc,
        "precision": skm.precision_score(y, pred, average="macro", **kw),
        "recall": skm.recall_score(y, pred, average="macro", **kw),
        "f1": skm.f1_score(y, pred, average="macro", **kw),
        "f1_per_class": skm.f1_score(y, pred, average=None, **kw),
        "confusion_matrix": cm,
    }


@pytest.mark.parametrize(("task", "n", "k", "seed", "ties"), CASES)
def test_matches_sklearn(task, n, k, seed, ties):
    y, score = make_data(task, n, k, seed, ties)
    ours = classification_metrics(y, score, task, [f"c{i}" for i in range(k)])
    ref = sklearn_reference(task, y, score, k)
    for name in ("accuracy", "balanced_accuracy", "auroc", "precision", "recall", "f1"):
        assert ours[name] == pytest.approx(ref[name], abs=1e-12), name
    np.testing.assert_allclose(ours["f1_per_class"], ref["f1_per_class"], atol=1e-12)
    np.testing.assert_array_equal(np.array(ours["confusion_matrix"]), ref["confusion_matrix"])
    assert ours["num_samples"] == n
    assert ours["class_names"] == [f"c{i}" for i in range(k)]
    assert ours["auroc_skipped"] == []


@pytest.mark.parametrize(("task", "n", "k", "seed", "ties"), [c for c in CASES if c[0] != "binary"])
def test_per_class_auroc_matches_sklearn(task, n, k, seed, ties):
    y, score = make_data(task, n, k, seed, ties)
    onehot = np.eye(k)[y] if task == "multiclass" else y
    expected = skm.roc_auc_score(onehot, score, average=None)
    np.testing.assert_allclose(auroc_per_class(y, score, task), expected, atol=1e-12)


def test_binary_accepts_two_columns_and_adds_sensitivity_specificity():
    y, p = make_data("binary", 100, 2, 7)
    one = classification_metrics(y, p, "binary")
    two = classification_metrics(y, np.stack([1 - p, p], 1), "binary")
    for name in ("accuracy", "auroc", "f1", "sensitivity", "specificity"):
        assert one[name] == pytest.approx(two[name])
    pred = (p >= 0.5).astype(int)
    assert one["sensitivity"] == pytest.approx(skm.recall_score(y, pred, pos_label=1))
    assert one["specificity"] == pytest.approx(skm.recall_score(y, pred, pos_label=0))


def test_f1_is_mean_of_per_class_f1_not_f1_of_macro_pr():
    # Per-class F1 = (6/7, 1/2, 0), mean 0.4524; macro P = 0.4167 and R = 0.5 would give 0.4545.
    y = np.array([0, 0, 0, 1, 1, 2])
    score = np.eye(3)[[0, 0, 0, 0, 1, 1]]
    out = classification_metrics(y, score, "multiclass")
    per_class = np.array(out["f1_per_class"])
    np.testing.assert_allclose(per_class, [6 / 7, 0.5, 0.0])
    assert out["f1"] == pytest.approx(per_class.mean())
    p, r = out["precision"], out["recall"]
    assert out["f1"] != pytest.approx(2 * p * r / (p + r))


@pytest.mark.parametrize(
    ("task", "y", "score", "skipped", "mean"),
    [
        # label 1 has no positives, label 2 no negatives: both skipped, mean over label 0 only
        (
            "multilabel",
            [[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1]],
            [[0.9, 0.1, 0.5], [0.2, 0.3, 0.6], [0.7, 0.2, 0.4], [0.4, 0.8, 0.9]],
            ["b", "c"],
            1.0,
        ),
        # class 2 absent from the targets: skipped from the one-vs-rest mean
        (
            "multiclass",
            [0, 1, 0, 1],
            [[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.3, 0.5, 0.2], [0.5, 0.4, 0.1]],
            ["c"],
            0.75,
        ),
    ],
)
def test_classes_with_one_target_value_are_skipped(task, y, score, skipped, mean):
    out = classification_metrics(np.array(y), np.array(score), task, ["a", "b", "c"])
    assert out["auroc_skipped"] == skipped
    for name, value in zip(["a", "b", "c"], out["auroc_per_class"]):
        assert (value is None) == (name in skipped)
    assert out["auroc"] == pytest.approx(mean)


def test_auroc_undefined_is_nan():
    assert math.isnan(binary_auroc([1, 1, 1], [0.2, 0.5, 0.9]))
    assert math.isnan(auroc(np.ones(4), np.linspace(0, 1, 4), "binary"))


@pytest.mark.parametrize(
    ("store_task", "k", "expected"),
    [
        ("classification", 2, "binary"),
        ("classification", 4, "multiclass"),
        ("multilabel", 14, "multilabel"),
    ],
)
def test_metric_task(store_task, k, expected):
    assert metric_task(store_task, k) == expected


def test_metric_task_rejects_segmentation():
    with pytest.raises(ValueError, match="segmentation"):
        metric_task("segmentation", 2)


def test_predict_labels_threshold():
    np.testing.assert_array_equal(predict_labels(np.array([0.2, 0.5, 0.7]), "binary", 0.6), [0, 0, 1])
    np.testing.assert_array_equal(predict_labels(np.array([[0.2, 0.8]]), "multilabel"), [[0, 1]])


@pytest.mark.parametrize(("task", "n", "k", "seed", "ties"), CASES[::2])
def test_accumulator_equals_one_shot_with_tensor_batches(task, n, k, seed, ties):
    y, score = make_data(task, n, k, seed, ties)
    metric = ClassificationMetrics(task, [str(i) for i in range(k)])
    for start in range(0, n, 17):  # uneven batches, torch tensors as the engine passes them
        metric.update(torch.from_numpy(score[start : start + 17]), torch.from_numpy(y[start : start + 17]))
    assert len(metric) == n
    assert metric.aggregate() == classification_metrics(y, score, task, [str(i) for i in range(k)])
    metric.reset()
    with pytest.raises(ValueError, match="no batches"):
        metric.aggregate()


@pytest.mark.parametrize(
    ("task", "y", "score", "match"),
    [
        ("multiclass", [0, 3], [[0.5, 0.5], [0.5, 0.5]], "targets must lie"),
        ("binary", [0, 2], [0.1, 0.9], "0 or 1"),
        ("multilabel", [[0, 1]], [[0.1, 0.2, 0.3]], r"\(N, K\)"),
        ("binary", [0, 1, 1], [0.1, 0.9], "3 targets for 2 scores"),
        ("ordinal", [0], [0.1], "task must be one of"),
    ],
)
def test_bad_shapes_raise(task, y, score, match):
    with pytest.raises(ValueError, match=match):
        classification_metrics(np.array(y), np.array(score), task)


def test_unknown_multilabel_targets_are_left_out():
    """CheXpert 'ignore' stores -1: the metrics equal those computed on the known entries only."""
    rng = np.random.default_rng(3)
    y = (rng.random((60, 3)) > 0.5).astype(np.float32)
    scores = np.clip(y * 0.6 + rng.random((60, 3)) * 0.5, 0, 1)
    unknown = rng.random((60, 3)) < 0.2
    y_masked = np.where(unknown, -1.0, y)
    got = classification_metrics(y_masked, scores, "multilabel")
    for c in range(3):
        known = ~unknown[:, c]
        assert got["auroc_per_class"][c] == pytest.approx(skm.roc_auc_score(y[known, c], scores[known, c]))
    pred = scores >= 0.5
    assert got["label_accuracy"] == pytest.approx((pred == y)[~unknown].mean())
    assert got["accuracy"] == pytest.approx(np.all((pred == y) | unknown, axis=1).mean())
    assert sum(got["support"]) == int(y[~unknown].sum())
