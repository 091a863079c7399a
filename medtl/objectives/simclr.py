"""SimCLR: contrastive self-supervised pretraining of a backbone on unlabelled images.

A batch of images becomes two augmented views on the device (``medtl.data.ssl_augment.BatchViews``,
per-sample random parameters, drawn from the RNG the trainer seeds per epoch, so a resumed run
augments alike), or arrives as ``views`` made per sample in the loader workers (``augment_on =
"workers"``). Both views pass the backbone and the projector (``SimCLRNetwork``); the loss is
NT-Xent with negatives gathered across DDP ranks (or local only). Labels and masks are never read
for training; several stores can be mixed with weights (``stores``).

Validation: the NT-Xent loss of views drawn with a fixed seed (the same views every epoch), and,
every ``knn_every`` epochs and in the final evaluation, a k-NN monitor on a labelled store (the
run's own): the backbone's pooled features of its un-augmented training images (up to
``knn_bank`` of them, a seeded subset) are the bank — the objective's ``reference``, whose features
the engine computes with the current weights — and each validation (or test) image is classified
by its k most similar bank images, so ``knn_accuracy`` / ``knn_auroc`` measure how well the
features separate the classes, as the k-NN monitors of InstDisc, DINO and solo-learn do.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from medtl.data.ssl_augment import BatchViews, SampleViews, SimCLRAugment
from medtl.data.unlabelled import Source, UnlabelledImages
from medtl.errors import ConfigError
from medtl.io.store import Store
from medtl.metrics.classification import metric_task
from medtl.models import create_backbone
from medtl.models.contrastive import nt_xent
from medtl.models.projection import SimCLRNetwork, build_projector
from medtl.objectives.base import (
    FEATURES,
    IMAGE,
    INDEX,
    TARGET,
    VIEWS,
    Batch,
    Objective,
    Outputs,
    PartitionMetrics,
)
from medtl.objectives.configs import SimCLRConfig

log = logging.getLogger("medtl")
VAL_SEED = 20_24  # validation views are the same every epoch


class SimCLRMetric:
    """Validation: the mean loss comes from the trainer; this keeps the features and labels of the
    evaluated images and, given the bank (``use_reference``), scores them by k-NN against it."""

    def __init__(self, task: str | None, num_classes: int, k: int, temperature: float) -> None:
        self.task, self.num_classes, self.k, self.temperature = task, num_classes, k, temperature
        self.bank: tuple[np.ndarray, np.ndarray] | None = None
        self.reset()

    def reset(self) -> None:
        self._features: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []

    def use_reference(self, inputs: Mapping[str, torch.Tensor]) -> None:
        """The k-NN bank: features and labels of labelled training images."""
        self.bank = (inputs[FEATURES].float().numpy(), inputs[TARGET].numpy())

    def update(self, outputs: Outputs, batch: Batch) -> None:
        self._features.append(outputs["features"].detach().float().cpu().numpy())
        if TARGET in batch and self.task is not None:
            self._labels.append(batch[TARGET].detach().cpu().numpy())

    def __len__(self) -> int:
        return int(sum(len(f) for f in self._features))

    def aggregate(self) -> dict[str, Any]:
        out: dict[str, Any] = {"num_samples": len(self)}
        if self.task is None or self.bank is None or not len(self) or not len(self.bank[0]):
            return out
        from medtl.metrics.knn import knn_metrics

        metrics = knn_metrics(
            *self.bank,
            np.concatenate(self._features),
            np.concatenate(self._labels),
            self.task,  # type: ignore[arg-type]
            k=self.k,
            temperature=self.temperature,
            num_classes=self.num_classes,
        )
        out.update({name: value for name, value in metrics.items() if name != "knn_num_samples"})
        return out


class SimCLR(Objective):
    """See the module docstring."""

    kind = "simclr"
    learns_labels = False
    config_class = SimCLRConfig
    config: SimCLRConfig

    def __init__(self, config: SimCLRConfig) -> None:
        super().__init__(config)
        self.channels: int | None = None
        self.knn_task: str | None = None
        self.num_classes = 0
        self.views: BatchViews | None = None

    # -- the store ---------------------------------------------------------------------------------
    def check(self, store: Store) -> None:
        c = self.config
        self.channels = max([int(store.shape[0]), *(int(Store(s).shape[0]) for s in c.stores)])
        self.augment_config = self._augment(int(store.shape[-1]))
        for path in c.stores:
            Store(path)  # each extra store opens (one clear line when one does not)
        # k-NN needs labels of one class per sample (or several); masks-only stores have none.
        if store.labels is not None and store.task in ("classification", "multilabel"):
            self.knn_task = metric_task(store.task, store.num_classes)
            self.num_classes = store.num_classes
        elif c.monitor.startswith("knn_"):
            raise ConfigError(
                f"{store.path}: a {store.task} store has no class labels for the k-NN monitor "
                f"'{c.monitor}'; monitor 'loss' instead"
            )

    def _augment(self, store_size: int) -> SimCLRAugment:
        c = self.config
        return SimCLRAugment(
            size=c.view_size or store_size,
            scale=(c.crop_min_scale, 1.0),
            jitter_strength=c.jitter_strength,
            blur=c.blur,
        )

    def describe(self) -> dict[str, Any]:
        return {"views": self.augment_config.size, "knn_task": self.knn_task}

    # -- the k-NN monitor's bank -------------------------------------------------------------------
    def knn_due(self, epoch: int | None) -> bool:
        """Whether the evaluation ending ``epoch`` measures k-NN (every final evaluation does)."""
        if self.knn_task is None:
            return False
        return epoch is None or (epoch + 1) % self.config.knn_every == 0

    def reference(self, store: Store, transform: Any, *, epoch: int | None) -> UnlabelledImages | None:
        """The bank: the run's labelled training images (a seeded subset of ``knn_bank``), as loaded
        for validation (no augmentation; the features normalise them like the views)."""
        rows = getattr(self, "train_indices", None)
        if not self.knn_due(epoch) or rows is None or not len(rows):
            return None
        limit = self.config.knn_bank
        if limit is not None and len(rows) > limit:
            rng = np.random.default_rng(self.config.mixture_seed)
            rows = np.sort(rng.choice(rows, size=limit, replace=False))
        return UnlabelledImages(
            [Source(store.path, rows, 1.0)], channels=self._channels, seed=self.config.mixture_seed,
            with_labels=True,
        )  # fmt: skip

    def head_input(self, model: nn.Module, batch: Batch) -> torch.Tensor:
        """Pooled backbone features of the unaugmented images (normalised as the views are)."""
        net = getattr(model, "module", model)  # DDP
        image = self._batch_views(batch[IMAGE].device).normalise(batch[IMAGE].float())
        return net.forward_head_input(image)

    # -- the model ---------------------------------------------------------------------------------
    def build_model(
        self,
        *,
        backbone: str,
        in_chans: int,
        module: str | None,
        truncate: int | None,
        image_size: int | None,
        init: str = "random",
    ) -> SimCLRNetwork:
        if module is not None:
            raise ConfigError(
                f"SimCLR pretrains a backbone alone; the strategy's module '{module}' has no place"
            )
        net = create_backbone(backbone, in_chans=in_chans, image_size=image_size)
        if truncate is not None:
            net = net.truncated(truncate)
        c = self.config
        projector = build_projector(
            c.projector, net.num_features, hidden=c.projector_hidden, out=c.projection_dim
        )
        spec = {"backbone": backbone, "in_chans": in_chans, "truncate": truncate, "image_size": image_size}
        network = SimCLRNetwork(net, projector, spec=spec)
        if c.sync_bn and torch.distributed.is_available() and torch.distributed.is_initialized():
            from timm.layers import convert_sync_batchnorm

            # timm's conversion also covers its BatchNormAct2d; the state dict keys stay the same.
            network = convert_sync_batchnorm(network)
        return network

    def model_metadata(self) -> dict[str, str]:
        return {"objective": self.kind, "simclr": json.dumps(self.config.model_dump(mode="json"))}

    def load_model(self, metadata: Mapping[str, Any]) -> SimCLRNetwork:
        spec = dict(metadata["spec"])
        self.channels = int(spec.get("in_chans") or 3)
        self.augment_config = self._augment(int(spec.get("image_size") or 224))
        return self.build_model(
            backbone=spec["backbone"],
            in_chans=self.channels,
            module=None,
            truncate=spec.get("truncate"),
            image_size=spec.get("image_size"),
        )

    # -- training ----------------------------------------------------------------------------------
    def setup(self, store: Store, train_indices: np.ndarray, device: torch.device) -> None:
        self.train_indices = np.asarray(train_indices)
        self._batch_views(device)

    def _batch_views(self, device: torch.device) -> BatchViews:
        """The device augmentation, built on first use (a run's setup, or a loaded run's evaluation)."""
        if self.views is None:
            self.views = BatchViews(self.augment_config, self._channels, self.config.view_normalise)
        return self.views.to(device)

    @property
    def _channels(self) -> int:
        if self.channels is None:
            raise RuntimeError("check(store) or load_model(metadata) first")
        return self.channels

    def dataset(self, store: Store, indices: np.ndarray, transform: Any) -> UnlabelledImages:
        c = self.config
        # The training partition draws from the mixture; validation is the run's own store, labelled
        # for the k-NN monitor. (setup() saw the training rows; the interface names no partition.)
        training = getattr(self, "train_indices", None) is not None and np.array_equal(
            indices, self.train_indices
        )
        sources = [Source(store.path, indices, c.weight)]
        if training:
            sources += [Source(path, None, weight) for path, weight in c.stores.items()]
        workers = training and c.augment_on == "workers"
        views = SampleViews(self.augment_config, self._channels, c.view_normalise) if workers else None
        return UnlabelledImages(
            sources, length=len(indices), channels=self._channels, views=views, seed=c.mixture_seed,
            with_labels=not training and self.knn_task is not None,
        )  # fmt: skip

    def _views(self, module: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        if VIEWS in batch:
            return batch[VIEWS][:, 0], batch[VIEWS][:, 1]
        seed = None if module.training else VAL_SEED + int(batch[INDEX][0])
        return self._batch_views(batch[IMAGE].device)(batch[IMAGE], seed=seed)

    def forward(self, module: nn.Module, batch: Batch) -> Outputs:
        a, b = self._views(module, batch)
        out: Outputs = {"z1": module(a), "z2": module(b)}
        if not module.training and IMAGE in batch:
            out["features"] = self.head_input(module, batch)
        return out

    def loss(self, outputs: Outputs, batch: Batch) -> torch.Tensor:
        z1 = outputs["z1"]
        if z1.shape[0] < 2 and not torch.is_grad_enabled():
            # A last validation batch of one image has no negative: it adds nothing to the mean.
            return z1.new_zeros(())
        return nt_xent(z1, outputs["z2"], self.config.temperature, gather=self.config.gather)

    # -- evaluation --------------------------------------------------------------------------------
    def metric(self, *, final: bool = False) -> SimCLRMetric:
        return SimCLRMetric(self.knn_task, self.num_classes, self.config.knn_k, self.config.knn_temperature)

    def summarise(
        self,
        metric: SimCLRMetric,
        *,
        loss: float | None,
        groups: np.ndarray | None,
        bootstrap: int,
        seed: int,
    ) -> PartitionMetrics:  # type: ignore[override]
        values = metric.aggregate()
        num_samples = values.pop("num_samples")
        return PartitionMetrics(num_samples=num_samples, values=values, loss=loss)
