"""Segmentation: a U-Net over the backbone (``medtl.models.unet``), trained on a mask store.

What the store holds decides the task (``medtl.data.masks``): a label map with 2 classes trains one
sigmoid channel (``binary``), with more a softmax over the classes (``multiclass``; BraTS's 0/1/2/4
as classes 0-3, with the ET/TC/WT regions measured too), channel masks (BraTS regions) independent
sigmoid channels (``multilabel``). The loss is one of ``medtl.models.segmentation_losses``; the
metric accumulates per-image overlap counts (``medtl.metrics.segmentation``): Dice and IoU per
class, per image and global, HD95 in the final evaluation, patient bootstrap intervals. A few fixed
validation and test samples are kept as PNG overlays (image, truth, prediction). Images larger than
the training size are predicted with MONAI's sliding-window inference.

Strategies address the U-Net's groups: ``head`` trains the decoder and the segmentation head
(frozen encoder); ``truncate`` and the CDTM ``module`` (tf_f1b, frt, staged) are refused. The
``adaptor`` strategy (``--init`` an Adaptor run) conditions the bottleneck on the Adaptor's image
feature of the frozen encoder (``medtl.models.unet``). A head-only phase
never runs on cached inputs (the decoder needs every encoder map).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from medtl.data.dataset import StoreDataset
from medtl.data.masks import MaskLayout, check_mask_values, class_frequencies, mask_layout
from medtl.data.overlays import save_overlay
from medtl.data.transforms import batch_augment
from medtl.errors import ConfigError, InputError
from medtl.io.store import Store
from medtl.metrics.segmentation import SegmentationMetrics
from medtl.models.adaptor_run import adaptor_run
from medtl.models.segmentation_losses import make_segmentation_loss
from medtl.models.unet import UNet, build_unet, sliding_window_logits
from medtl.objectives.base import IMAGE, INDEX, TARGET, Batch, Objective, Outputs, PartitionMetrics
from medtl.objectives.configs import SegmentationConfig

BRATS_REGIONS = ("ET", "TC", "WT")


class SegmentationMetric:
    """``SegmentationMetrics`` of the classes (and BraTS regions) fed with batch dicts; keeps the
    image, truth and prediction of the first ``keep`` samples with a non-empty truth, for overlays."""

    def __init__(self, layout: MaskLayout, *, hd95: bool, empty: str, keep: int = 0) -> None:
        self.layout = layout
        self.classes = SegmentationMetrics(layout.channels, hd95=hd95, empty=empty)
        self.regions = SegmentationMetrics(BRATS_REGIONS, hd95=hd95, empty=empty) if layout.regions else None
        self.keep = keep
        self.kept: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def reset(self) -> None:
        self.classes.reset()
        if self.regions is not None:
            self.regions.reset()
        self.kept = {}

    def update(self, outputs: Outputs, batch: Batch) -> None:
        layout = self.layout
        target = layout.targets(batch[TARGET])
        predicted = outputs["prediction"] if "prediction" in outputs else layout.predicted(outputs["logits"])
        pred_masks, true_masks = layout.channel_masks(predicted), layout.channel_masks(target)
        self.classes.update(pred_masks, true_masks)
        if self.regions is not None:
            self.regions.update(layout.region_masks(predicted), layout.region_masks(target))
        # The first samples (in the partition's order) whose truth is not empty: the same ones
        # every time the partition is evaluated.
        for i, row in enumerate(batch[INDEX].tolist()):
            if len(self.kept) >= self.keep:
                break
            if true_masks[i].any():
                image = batch[IMAGE][i].detach().float().cpu().numpy()
                self.kept[int(row)] = (image, true_masks[i], pred_masks[i])

    def aggregate(self) -> dict[str, Any]:
        out = self.classes.aggregate()
        if self.regions is not None:
            regions = self.regions.aggregate()
            for metric in ("dice", "iou", "hd95"):
                values = regions.get(f"{metric}_per_class")
                if values is None:
                    continue
                for name, value in zip(BRATS_REGIONS, values):
                    out[f"{metric}_{name}"] = math.nan if value is None else float(value)
            out["brats_regions"] = {k: v for k, v in regions.items() if k != "num_samples"}
        return out

    def per_sample(self) -> dict[str, np.ndarray]:
        """Per-image arrays for ``predictions_test.npz`` (paired tests in ``medtl report``), in the
        order the samples were added: ``score`` is the image's Dice averaged over the classes where
        it is defined (NaN when it is defined for none, under the ``empty`` policy), as the
        report's ``dice`` resamples it; ``dice_per_class`` and ``iou_per_class`` are (N, C)."""
        per_image = self.classes.per_image()
        dice, iou = per_image["dice"], per_image["iou"]
        defined = np.isfinite(dice)
        score = np.full(len(dice), np.nan)
        rows = defined.any(axis=1)
        score[rows] = np.where(defined, dice, 0.0)[rows].sum(axis=1) / defined[rows].sum(axis=1)
        return {"score": score, "dice_per_class": dice, "iou_per_class": iou}

    def bootstrap(self, groups: np.ndarray | None, *, n: int, seed: int) -> dict[str, Any]:
        ci = self.classes.bootstrap(groups, n=n, seed=seed)
        per_class = ci.pop("dice_per_class")
        if self.regions is not None:
            regions = self.regions.bootstrap(groups, n=n, seed=seed)
            for name, interval in zip(BRATS_REGIONS, regions["dice_per_class"]):
                ci[f"dice_{name}"] = interval
        ci.update({f"dice_{name}": interval for name, interval in zip(self.layout.channels, per_class)})
        return ci


def balanced_weights(frequencies: np.ndarray, mode: str) -> list[float]:
    """Inverse pixel frequency: ``1 / (K f_k)`` per class (softmax), negatives / positives per channel
    (sigmoid, BCE's ``pos_weight``), as classification weights its labels."""
    f = np.clip(np.asarray(frequencies, dtype=np.float64), 1e-6, None)
    if mode == "multiclass":
        return (1.0 / (len(f) * f)).tolist()
    return ((1.0 - np.minimum(f, 1 - 1e-6)) / f).tolist()


class Segmentation(Objective):
    """Masks from a U-Net over the backbone; see the module docstring."""

    kind = "segmentation"
    config_class = SegmentationConfig
    tta_modes: ClassVar[tuple[str, ...]] = ("hflip",)
    config: SegmentationConfig

    def __init__(self, config: SegmentationConfig) -> None:
        super().__init__(config)
        self.layout: MaskLayout | None = None
        self.train_size: int | None = None
        self.loss_fn: nn.Module | None = None

    @property
    def _layout(self) -> MaskLayout:
        if self.layout is None:
            raise RuntimeError("check(store) or load_model(metadata) first")
        return self.layout

    # -- the store ---------------------------------------------------------------------------------
    def check(self, store: Store) -> None:
        layout = mask_layout(store, mode=self.config.mode, num_classes=self.config.num_classes)
        regions = layout.regions or layout.channels == BRATS_REGIONS
        if self.config.monitor in ("dice_ET", "dice_TC", "dice_WT") and not regions:
            raise InputError(
                store.path, f"has no BraTS regions, so '{self.config.monitor}' cannot be the monitor"
            )
        check_mask_values(store, layout)
        self.layout = layout

    def check_external(self, store: Store) -> None:
        """An evaluation store must hold the run's classes (by name, in order) and fit its masks."""
        layout = self._layout
        theirs = mask_layout(store)
        if theirs.class_names != layout.class_names or theirs.mode != layout.mode:
            raise InputError(
                store.path,
                f"holds {theirs.mode} masks of ({', '.join(theirs.class_names)}); the run segments "
                f"{layout.mode} ({', '.join(layout.class_names)})",
            )
        check_mask_values(store, layout)

    def describe(self) -> dict[str, Any]:
        layout = self._layout
        return {"task": layout.mode, "class_names": list(layout.class_names)}

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
    ) -> UNet:
        if module not in (None, "adaptor"):
            raise ConfigError(
                f"the strategy adds a '{module}' module (frt, staged: the Cross-Domain Transfer Module on a "
                "classifier's tokens); a segmentation U-Net has no place for it — choose linear, l1sb, l2sb, "
                "progressive, full, adaptor or DA, DA_L1SB, ..."
            )
        if truncate is not None:
            raise ConfigError(
                f"the strategy truncates the backbone to {truncate} stages (tf_f1b, tf_f2b, DA_TF_*), a "
                "classification strategy; a segmentation U-Net uses the whole encoder"
            )
        self.train_size = image_size
        if module != "adaptor":
            return build_unet(
                backbone,
                self._layout.num_outputs,
                in_chans=in_chans,
                image_size=image_size,
                decoder_channels=self.config.decoder_channels,
            )
        # Frozen encoder + the Adaptor run's image feature at the bottleneck (init names the run).
        run = adaptor_run(init)
        model = build_unet(
            backbone, self._layout.num_outputs, in_chans=in_chans, image_size=image_size,
            decoder_channels=self.config.decoder_channels, adaptor=run.spec,
        )  # fmt: skip
        run.install(model, needs="a U-Net on Adaptor features needs the encoder's feature maps")
        return model

    def model_metadata(self) -> dict[str, str]:
        return {
            "task": self._layout.mode,
            "class_names": json.dumps(list(self._layout.class_names)),
            "mask_layout": json.dumps(self._layout.describe()),
            "train_size": json.dumps(self.train_size),
        }

    def load_model(self, metadata: Mapping[str, Any]) -> UNet:
        self.layout = MaskLayout.from_description(metadata["mask_layout"])
        self.train_size = metadata.get("train_size")
        return build_unet(**dict(metadata["spec"]))

    # -- training ----------------------------------------------------------------------------------
    def setup(self, store: Store, train_indices: np.ndarray, device: torch.device) -> None:
        layout, setting = self._layout, self.config.class_weights
        weights: list[float] | None = None
        if setting == "balanced":
            weights = balanced_weights(class_frequencies(store, layout, train_indices), layout.mode)
        elif not isinstance(setting, str):
            weights = [float(w) for w in setting]
        self.loss_fn = make_segmentation_loss(
            self.config.loss, layout.loss_mode, layout.num_outputs, class_weights=weights
        ).to(device)

    def dataset(self, store: Store, indices: np.ndarray, transform: Any) -> StoreDataset:
        return StoreDataset(store, indices, transform, target="mask")

    def forward(self, module: nn.Module, batch: Batch) -> Outputs:
        image = batch[IMAGE]
        if self.train_size is not None and max(image.shape[-2:]) > self.train_size:
            return {"logits": sliding_window_logits(module, image, self.train_size)}
        return {"logits": module(image)}

    def loss(self, outputs: Outputs, batch: Batch) -> torch.Tensor:
        if self.loss_fn is None:
            raise RuntimeError("setup() builds the loss")
        return self.loss_fn(outputs["logits"].float(), self._layout.targets(batch[TARGET]))

    def predict(self, module: nn.Module, batch: Batch, tta: str | None = None) -> Outputs:
        if tta is None:
            return self.forward(module, batch)
        if tta not in self.tta_modes:
            return super().predict(module, batch, tta)
        flipped = {**batch, IMAGE: batch[IMAGE].flip(-1)}
        logits = self.forward(module, batch)["logits"].float()
        mirrored = self.forward(module, flipped)["logits"].float().flip(-1)
        if self._layout.mode == "multiclass":
            probs = (logits.softmax(1) + mirrored.softmax(1)) / 2
            return {"prediction": probs.argmax(1, keepdim=True)}
        return {"prediction": ((logits.sigmoid() + mirrored.sigmoid()) / 2 >= 0.5).float()}

    def device_augment(self, batch: Batch, augment: Sequence[str]) -> Batch:
        image, target = batch_augment(batch[IMAGE], augment, masks=batch[TARGET])
        return {**batch, IMAGE: image, TARGET: target}

    # -- evaluation --------------------------------------------------------------------------------
    def metric(self, *, final: bool = False) -> SegmentationMetric:
        return SegmentationMetric(
            self._layout,
            hd95=final and self.config.hd95,
            empty=self.config.empty,
            keep=self.config.overlays if final else 0,
        )

    def summarise(
        self,
        metric: SegmentationMetric,  # type: ignore[override]
        *,
        loss: float | None,
        groups: np.ndarray | None,
        bootstrap: int,
        seed: int,
    ) -> PartitionMetrics:
        values = metric.aggregate()
        ci = metric.bootstrap(groups, n=bootstrap, seed=seed) if bootstrap else None
        num_samples = values.pop("num_samples")
        return PartitionMetrics(num_samples=num_samples, values=values, loss=loss, ci95=ci)

    def write_outputs(self, metric: SegmentationMetric, directory: Path, name: str) -> list[Path]:  # type: ignore[override]
        """PNG overlays (image, truth, prediction) of the kept samples:
        ``<directory>/overlays/<name>_<store row>.png``."""
        return [
            save_overlay(directory / "overlays" / f"{name}_{row:06d}.png", image, truth, prediction)
            for row, (image, truth, prediction) in sorted(metric.kept.items())
        ]
