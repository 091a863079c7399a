"""Task kinds, their losses and how logits become scores.

* multiclass: K logits, cross-entropy (class weights and label smoothing as torch implements them).
* binary (a classification store with 2 classes): ONE logit for the second class and BCE, as the
  domain-adaptive study's single sigmoid output; scores are that class's probability (N,).
* multilabel: K logits, BCE per label (e.g. 14 ChestX-ray14 findings); scores are K probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medtl.errors import ConfigError, InputError

TaskKind = Literal["binary", "multiclass", "multilabel"]


def infer_task(store_task: str, num_classes: int, requested: str, store_path: object) -> TaskKind:
    """The task kind of a run on a store, checking that a requested kind fits the store."""
    if store_task == "segmentation":
        raise InputError(
            store_path,
            "is a segmentation store (masks, no class labels); a classifier needs a classification "
            "or multilabel store",
        )
    natural: TaskKind = (
        "multilabel" if store_task == "multilabel" else "binary" if num_classes == 2 else "multiclass"
    )
    if requested == "auto":
        return natural
    if requested == "multilabel" and store_task != "multilabel":
        raise InputError(store_path, "has one class per sample; task 'multilabel' needs a multilabel store")
    if requested != "multilabel" and store_task == "multilabel":
        raise InputError(store_path, f"is a multilabel store; task '{requested}' needs one class per sample")
    if requested == "binary" and num_classes != 2:
        raise InputError(store_path, f"has {num_classes} classes; task 'binary' needs exactly 2")
    return requested  # type: ignore[return-value]


def num_outputs(task: TaskKind, num_classes: int) -> int:
    return 1 if task == "binary" else num_classes


def class_weights(
    setting: str | Sequence[float], task: TaskKind, train_labels: np.ndarray, num_classes: int
) -> torch.Tensor | None:
    """Per-class loss weights: None, "balanced" (inverse frequency in the training part), or given.

    For multilabel the weights are BCE ``pos_weight`` (negatives / positives per label).
    """
    if isinstance(setting, str):
        if setting == "none":
            return None
        if task == "multilabel":
            labels = np.asarray(train_labels)
            positives = (labels > 0.5).sum(axis=0).astype(np.float64)
            negatives = ((labels >= 0) & (labels <= 0.5)).sum(axis=0).astype(np.float64)  # not unknowns
            return torch.tensor(negatives / np.maximum(positives, 1.0), dtype=torch.float32)
        counts = np.bincount(np.asarray(train_labels).reshape(-1), minlength=num_classes).astype(np.float64)
        weights = len(train_labels) / (num_classes * np.maximum(counts, 1.0))
        return torch.tensor(weights, dtype=torch.float32)
    if len(setting) != num_classes:
        raise ConfigError(f"class_weights has {len(setting)} values for {num_classes} classes")
    return torch.tensor(list(setting), dtype=torch.float32)


class BinaryLoss(nn.Module):
    """BCE on one logit; per-class weights weight each sample by its class (normalised like CE)."""

    def __init__(self, weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.reshape(-1).float()
        y = target.reshape(-1).float()
        soft = y * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        losses = F.binary_cross_entropy_with_logits(logits, soft, reduction="none")
        if self.weight is None:
            return losses.mean()
        w = self.weight[target.reshape(-1).long()]
        return (losses * w).sum() / w.sum()


class MultilabelLoss(nn.Module):
    """BCE per label with optional ``pos_weight`` and label smoothing towards 0.5.

    Targets below 0 are unknown (CheXpert's uncertain labels under the ``ignore`` policy) and add
    nothing to the loss; the mean is over the known entries."""

    def __init__(self, pos_weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("pos_weight", pos_weight)
        self.label_smoothing = label_smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = target.float()
        known = target >= 0
        soft = target.clamp(min=0) * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
        losses = F.binary_cross_entropy_with_logits(
            logits.float(), soft, pos_weight=self.pos_weight, reduction="none"
        )
        return (losses * known).sum() / known.sum().clamp(min=1)


def make_loss(task: TaskKind, weight: torch.Tensor | None, label_smoothing: float) -> nn.Module:
    if task == "multiclass":
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=label_smoothing)
    if task == "binary":
        return BinaryLoss(weight, label_smoothing)
    return MultilabelLoss(weight, label_smoothing)


def scores_from_logits(logits: torch.Tensor, task: TaskKind) -> torch.Tensor:
    """Probabilities: (N,) for binary, (N, K) softmax for multiclass, (N, K) sigmoid for multilabel."""
    logits = logits.float()
    if task == "binary":
        return torch.sigmoid(logits.reshape(-1))
    if task == "multiclass":
        return torch.softmax(logits, dim=1)
    return torch.sigmoid(logits)
