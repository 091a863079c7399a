"""Classification: task kinds from the store, losses (weights, smoothing), scores, the metric, the check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medtl.errors import ConfigError, InputError
from medtl.objectives.classification import (
    MultilabelLoss,
    class_weights,
    infer_task,
    make_loss,
    num_outputs,
    scores_from_logits,
)


@pytest.mark.parametrize(
    ("store_task", "k", "requested", "expected"),
    [
        ("classification", 3, "auto", "multiclass"),
        ("classification", 2, "auto", "binary"),
        ("classification", 2, "multiclass", "multiclass"),
        ("multilabel", 14, "auto", "multilabel"),
    ],
)
def test_infer_task(store_task, k, requested, expected):
    assert infer_task(store_task, k, requested, "s") == expected


@pytest.mark.parametrize(
    ("store_task", "k", "requested", "message"),
    [
        ("segmentation", 1, "auto", "s: is a segmentation store"),
        ("classification", 3, "binary", "s: has 3 classes; task 'binary' needs exactly 2"),
        ("classification", 3, "multilabel", "s: has one class per sample"),
        ("multilabel", 3, "multiclass", "s: is a multilabel store"),
    ],
)
def test_infer_task_refuses_misfits(store_task, k, requested, message):
    with pytest.raises(InputError, match=message):
        infer_task(store_task, k, requested, "s")


def test_binary_has_one_output():
    assert num_outputs("binary", 2) == 1 and num_outputs("multiclass", 4) == 4


def test_balanced_weights():
    labels = np.array([0, 0, 0, 1])
    w = class_weights("balanced", "multiclass", labels, 2)
    assert torch.allclose(w, torch.tensor([4 / 6, 4 / 2]))
    ml = np.array([[1, 0], [1, 0], [0, 1], [1, 0]], dtype=np.float32)
    assert torch.allclose(class_weights("balanced", "multilabel", ml, 2), torch.tensor([1 / 3, 3.0]))
    assert class_weights("none", "binary", labels, 2) is None
    with pytest.raises(ConfigError, match="class_weights has 3 values for 2 classes"):
        class_weights([1, 2, 3], "binary", labels, 2)


def test_binary_loss_matches_bce_and_weights_like_ce():
    logits = torch.tensor([[0.3], [-1.0], [2.0]])
    y = torch.tensor([1, 0, 1])
    plain = make_loss("binary", None, 0.0)(logits, y)
    assert torch.allclose(plain, F.binary_cross_entropy_with_logits(logits.view(-1), y.float()))
    w = torch.tensor([1.0, 3.0])
    weighted = make_loss("binary", w, 0.0)(logits, y)
    per = F.binary_cross_entropy_with_logits(logits.view(-1), y.float(), reduction="none")
    assert torch.allclose(weighted, (per * torch.tensor([3.0, 1.0, 3.0])).sum() / 7)
    smooth = make_loss("binary", None, 0.2)(logits, y)
    assert torch.allclose(
        smooth, F.binary_cross_entropy_with_logits(logits.view(-1), torch.tensor([0.9, 0.1, 0.9]))
    )


def test_multiclass_and_multilabel_losses():
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    y = torch.tensor([0, 2, 1, 2])
    assert torch.allclose(
        make_loss("multiclass", None, 0.1)(logits, y), F.cross_entropy(logits, y, label_smoothing=0.1)
    )
    ym = torch.tensor([[1.0, 0, 1], [0, 0, 1], [1, 1, 0], [0, 0, 0]])
    pw = torch.tensor([1.0, 2.0, 0.5])
    assert torch.allclose(
        make_loss("multilabel", pw, 0.0)(logits, ym),
        F.binary_cross_entropy_with_logits(logits, ym, pos_weight=pw),
    )


def test_scores_per_task():
    logits = torch.tensor([[0.0, 1.0], [2.0, 2.0]])
    assert scores_from_logits(logits[:, :1], "binary").shape == (2,)
    assert torch.allclose(scores_from_logits(logits, "multiclass").sum(1), torch.ones(2))
    assert torch.allclose(scores_from_logits(logits, "multilabel"), torch.sigmoid(logits))


def test_multilabel_loss_ignores_unknown_targets():
    logits = torch.tensor([[0.3, -1.2, 2.0], [1.1, 0.4, -0.5]])
    target = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 1.0]])
    known = target >= 0
    expected = F.binary_cross_entropy_with_logits(logits[known], target[known])
    assert MultilabelLoss()(logits, target).item() == pytest.approx(expected.item())


def test_metric_accumulates_batch_dicts_like_classification_metrics():
    from medtl.metrics import classification_metrics
    from medtl.objectives.classification import ClassificationMetric

    g = torch.Generator().manual_seed(1)
    logits = torch.randn(10, 3, generator=g)
    targets = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    metric = ClassificationMetric("multiclass", ["a", "b", "c"])
    for part in (slice(0, 4), slice(4, 10)):
        metric.update({"logits": logits[part]}, {"target": targets[part], "index": torch.arange(10)[part]})
    expected = classification_metrics(targets, torch.softmax(logits, 1), "multiclass", ["a", "b", "c"])
    assert metric.aggregate() == expected
    # probabilities given as outputs (test-time augmentation) are used as they are
    probs = ClassificationMetric("multiclass")
    probs.update({"scores": torch.softmax(logits, 1)}, {"target": targets})
    assert probs.aggregate()["auroc"] == expected["auroc"]


def test_segmentation_store_is_refused_by_the_check(tmp_path):
    from medtl.io.store import SampleRecord, Store, StoreWriter
    from medtl.objectives import ClassificationConfig, get_objective

    with StoreWriter(
        tmp_path / "seg", task="segmentation", image_shape=(1, 8, 8), class_names=[], mask_shape=(1, 8, 8)
    ) as w:
        w.add("a", np.zeros((1, 1, 8, 8)), [SampleRecord("P", "a")], masks=np.zeros((1, 1, 8, 8), np.uint8))
        w.finish()
    with pytest.raises(InputError, match=r"seg: is a segmentation store \(masks, no class labels\)"):
        get_objective(ClassificationConfig()).check(Store(tmp_path / "seg"))
