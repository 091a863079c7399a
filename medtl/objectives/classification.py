"""Classification: a linear head on a backbone (``TransferModel``), for one or several labels per image.

Task kinds, their losses and scores:

* multiclass: K logits, cross-entropy (class weights and label smoothing as torch implements them).
* binary (a classification store with 2 classes): ONE logit for the second class and BCE, as the
  domain-adaptive study's single sigmoid output; scores are that class's probability (N,).
* multilabel: K logits, BCE per label (e.g. 14 ChestX-ray14 findings); scores are K probabilities.
  Targets below 0 are unknown (CheXpert's uncertain labels under the ``ignore`` policy): they add
  nothing to the loss, the class weights or any metric.

The head-only phase of a linear probe trains ``model.head`` on the pooled features (or the CDTM's
output), which a frozen backbone computes once. The ``adaptor`` strategy (``module = "adaptor"``,
``--init`` an Adaptor run) puts the Adaptor's frozen image path between the frozen encoder and the
Adaptor study's head; its head-only phase is cached the same way, on the Adaptor's features.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.v2 import functional as TF

from medtl.data.dataset import StoreDataset, label_targets
from medtl.errors import ConfigError, InputError, UnknownChoiceError
from medtl.io.store import Store
from medtl.metrics import ClassificationMetrics, MetricTask, bootstrap_metrics, metric_task
from medtl.models import TransferModel, build_model
from medtl.models.adaptor_run import adaptor_run
from medtl.objectives.base import (
    FEATURES,
    IMAGE,
    TARGET,
    Batch,
    Objective,
    Outputs,
    PartitionMetrics,
)
from medtl.objectives.configs import ClassificationConfig

TaskKind = MetricTask
TTA_MODES = ("hflip", "tencrop")
TENCROP_FRACTION = 0.875  # crop side relative to the image, as 224 of 256


# -- task kind -------------------------------------------------------------------------------------------
def infer_task(store_task: str, num_classes: int, requested: str, store_path: object) -> TaskKind:
    """The task kind of a run on a store (``metric_task`` of the store), checking a requested kind."""
    if store_task not in ("classification", "multilabel"):
        raise InputError(
            store_path,
            f"is a {store_task} store (masks, no class labels); a classifier needs a classification "
            "or multilabel store",
        )
    natural = metric_task(store_task, num_classes)
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


# -- losses ----------------------------------------------------------------------------------------------
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
    """BCE per label with optional ``pos_weight`` and label smoothing towards 0.5; targets below 0
    are unknown and add nothing (the mean is over the known entries)."""

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


def tta_views(x: torch.Tensor, tta: str | None) -> list[torch.Tensor]:
    """The images of a test-time augmentation: the batch and its mirror, or ten crops resized back."""
    if tta is None:
        return [x]
    if tta == "hflip":
        return [x, x.flip(-1)]
    if tta == "tencrop":
        h, w = x.shape[-2:]
        size = [max(1, round(h * TENCROP_FRACTION)), max(1, round(w * TENCROP_FRACTION))]
        return [TF.resize(v, [h, w], antialias=True) for v in TF.ten_crop(x, size)]
    raise UnknownChoiceError("test-time augmentation", tta, TTA_MODES)


# -- the accumulating metric -----------------------------------------------------------------------------
class ClassificationMetric:
    """``ClassificationMetrics`` fed with batch dicts: scores from the outputs (``scores``, else the
    ``logits`` turned into probabilities), targets from the batch."""

    def __init__(self, task: TaskKind, class_names: Sequence[str] | None = None) -> None:
        self.task = task
        self._metrics = ClassificationMetrics(task, class_names)

    def reset(self) -> None:
        self._metrics.reset()

    def update(self, outputs: Outputs, batch: Batch) -> None:
        scores = (
            outputs["scores"] if "scores" in outputs else scores_from_logits(outputs["logits"], self.task)
        )
        self._metrics.update(scores, batch[TARGET])

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        """All targets and scores so far."""
        return self._metrics.data()

    def __len__(self) -> int:
        return len(self._metrics)

    def aggregate(self) -> dict[str, Any]:
        return self._metrics.aggregate()


# -- the objective ---------------------------------------------------------------------------------------
class Classification(Objective):
    """Labels from a linear head on the backbone; see the module docstring."""

    kind = "classification"
    config_class = ClassificationConfig
    tta_modes: ClassVar[tuple[str, ...]] = TTA_MODES
    config: ClassificationConfig

    def __init__(self, config: ClassificationConfig) -> None:
        super().__init__(config)
        self.task: TaskKind | None = None
        self.class_names: list[str] = []
        self.loss_fn: nn.Module | None = None

    def check(self, store: Store) -> None:
        self.task = infer_task(store.task, store.num_classes, self.config.task, store.path)
        if store.labels is None:
            raise InputError(store.path, "has no labels (labels.npy); a classifier needs labelled samples")
        self.class_names = store.class_names

    def describe(self) -> dict[str, Any]:
        return {"task": self.task, "class_names": self.class_names}

    # -- model -------------------------------------------------------------------------------------
    def build_model(
        self,
        *,
        backbone: str,
        in_chans: int,
        module: str | None,
        truncate: int | None,
        image_size: int | None,
        init: str = "random",
    ) -> TransferModel:
        outputs = num_outputs(self._task, len(self.class_names))
        if module != "adaptor":
            return build_model(
                backbone, outputs, in_chans=in_chans, module=module, truncate=truncate, image_size=image_size
            )
        # The adaptor strategy: frozen encoder + the image path of the Adaptor run named by init.
        run = adaptor_run(init)
        model = build_model(
            backbone, outputs, in_chans=in_chans, module=module, truncate=truncate, image_size=image_size,
            adaptor=run.spec,
        )  # fmt: skip
        run.install(model, needs="a classifier on Adaptor features needs the encoder that makes them")
        return model

    def model_metadata(self) -> dict[str, str]:
        return {"task": self._task, "class_names": json.dumps(self.class_names)}

    def load_model(self, metadata: Mapping[str, Any]) -> TransferModel:
        self.task = metadata["task"]
        self.class_names = list(metadata["class_names"])
        return build_model(**dict(metadata["spec"]))

    @property
    def _task(self) -> TaskKind:
        if self.task is None:
            raise RuntimeError("check(store) or load_model(metadata) first")
        return self.task

    # -- training ----------------------------------------------------------------------------------
    def setup(self, store: Store, train_indices: np.ndarray, device: torch.device) -> None:
        weights = class_weights(
            self.config.class_weights, self._task, label_targets(store, train_indices), store.num_classes
        )
        self.loss_fn = make_loss(self._task, weights, self.config.label_smoothing).to(device)

    def dataset(self, store: Store, indices: np.ndarray, transform: Any) -> StoreDataset:
        return StoreDataset(store, indices, transform, target="label")

    def forward(self, module: nn.Module, batch: Batch) -> Outputs:
        return {"logits": module(batch[FEATURES] if FEATURES in batch else batch[IMAGE])}

    def loss(self, outputs: Outputs, batch: Batch) -> torch.Tensor:
        if self.loss_fn is None:
            raise RuntimeError("setup() builds the loss")
        return self.loss_fn(outputs["logits"], batch[TARGET])

    def predict(self, module: nn.Module, batch: Batch, tta: str | None = None) -> Outputs:
        if tta is None:
            return self.forward(module, batch)
        views = tta_views(batch[IMAGE], tta)
        total = sum(scores_from_logits(module(view), self._task) for view in views)
        return {"scores": total / len(views)}

    # -- evaluation --------------------------------------------------------------------------------
    def metric(self, *, final: bool = False) -> ClassificationMetric:
        return ClassificationMetric(self._task, self.class_names)

    def summarise(
        self,
        metric: ClassificationMetric,  # type: ignore[override]
        *,
        loss: float | None,
        groups: np.ndarray | None,
        bootstrap: int,
        seed: int,
    ) -> PartitionMetrics:
        values = metric.aggregate()
        ci = None
        if bootstrap:
            targets, scores = metric.data()
            ci = bootstrap_metrics(targets, scores, self._task, n=bootstrap, seed=seed, groups=groups)
        num_samples = values.pop("num_samples")
        return PartitionMetrics(num_samples=num_samples, values=values, loss=loss, ci95=ci)

    # -- cached head-only phases ---------------------------------------------------------------------
    def cached_head(self, model: TransferModel) -> nn.Module:  # type: ignore[override]
        return model.head

    def head_input(self, model: TransferModel, batch: Batch) -> torch.Tensor:  # type: ignore[override]
        return model.forward_head_input(batch[IMAGE])
