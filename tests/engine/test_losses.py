"""Task inference from the store, losses (weights, smoothing) and scores per task."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medtl.engine.losses import (
    MultilabelLoss,
    class_weights,
    infer_task,
    make_loss,
    num_outputs,
    scores_from_logits,
)
from medtl.errors import ConfigError, InputError


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
