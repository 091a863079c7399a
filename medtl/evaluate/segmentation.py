"""Evaluating a segmentation run: its own or an external mask store, clean and under corruptions.

Items are the store's (image, mask) pairs through the run's evaluation transform (image and mask
together: a resize moves the mask by nearest neighbour). Images are not resized to the training size:
larger ones are predicted by sliding windows of it (``Segmentation.forward``). Under ``robustness``
each corruption acts on the image as stored, before the transform, and never on the mask. The final
metrics (Dice, IoU, HD95, BraTS regions, patient bootstrap CIs) and overlays are the objective's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors

from medtl.data.dataset import StoreDataset
from medtl.engine import LoadedRun, evaluate_loader
from medtl.evaluate.corruptions import corrupt, list_corruptions
from medtl.evaluate.robustness import RobustnessResult, summarise
from medtl.io.store import Store
from medtl.objectives.base import PartitionMetrics
from medtl.progress import NULL_PROGRESS, Progress

ROBUSTNESS_METRIC = "dice"
ROW_METRICS = ("dice", "dice_global", "iou", "iou_global")


class SegmentationPairs(Dataset):
    """Batch-dict items ``{"image", "target", "index"}`` of store ``indices``: the image optionally
    corrupted (sample ``i`` with seed ``seed + i``), then image and mask through ``transform``."""

    def __init__(
        self,
        store: Store,
        indices: np.ndarray,
        transform: Callable[..., Any] | None,
        corruption: str | None = None,
        severity: int = 0,
        seed: int = 0,
    ) -> None:
        self.raw = StoreDataset(store, indices, None, target="mask")
        self.transform, self.corruption, self.severity, self.seed = transform, corruption, severity, seed

    def __len__(self) -> int:
        return len(self.raw)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        image, mask = self.raw[i]
        if self.corruption is not None and self.severity:
            image = corrupt(image, self.corruption, self.severity, seed=self.seed + i)
        if self.transform is not None:
            image, mask = self.transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
        index = torch.tensor(int(self.raw.indices[i]), dtype=torch.int64)
        return {
            "image": image.as_subclass(torch.Tensor),
            "target": mask.as_subclass(torch.Tensor),
            "index": index,
        }


def evaluate_segmentation(
    loaded: LoadedRun,
    store: Store,
    indices: np.ndarray,
    *,
    name: str,
    tta: str | None,
    bootstrap: int,
    seed: int,
    device: torch.device,
    batch_size: int,
    num_workers: int,
    robustness: bool = False,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = (),
    progress: Progress = NULL_PROGRESS,
) -> tuple[PartitionMetrics, RobustnessResult | None]:
    """Final metrics of ``indices`` (overlays under ``<run>/overlays/eval_<name>_*``) and, with
    ``robustness``, mean Dice per corruption x severity."""
    objective, transform = loaded.objective, loaded.transform()

    def loader(corruption: str | None = None, severity: int = 0) -> DataLoader:
        pairs = SegmentationPairs(store, indices, transform, corruption, severity, seed)
        return DataLoader(pairs, batch_size=batch_size, shuffle=False, num_workers=num_workers)

    result = evaluate_loader(
        objective, loaded.model, loader(), device=device, tta=tta, with_loss=False, final=True
    )
    objective.write_outputs(result.metric, loaded.run_dir, f"eval_{name}")
    groups = store.patient_ids[indices]
    metrics = objective.summarise(result.metric, loss=None, groups=groups, bootstrap=bootstrap, seed=seed)
    if not robustness:
        return metrics, None
    names = list(corruptions) if corruptions is not None else list_corruptions()
    cells = [(c, s) for c in names for s in severities]
    task = progress.start("robustness", total=len(cells))
    clean = metrics.get(ROBUSTNESS_METRIC)
    clean = math.nan if clean is None else float(clean)
    rows: list[dict[str, Any]] = [{"corruption": "clean", "severity": 0, **_row(metrics.values), "drop": 0.0}]
    for corruption, severity in cells:
        cell = evaluate_loader(
            objective, loaded.model, loader(corruption, severity), device=device, tta=tta, with_loss=False
        )
        values = _row(cell.metric.aggregate())
        rows.append(
            {"corruption": corruption, "severity": severity, **values, "drop": clean - values["dice"]}
        )
        progress.advance(task, corruption=corruption, severity=severity, dice=values["dice"])
    progress.end(task)
    return metrics, RobustnessResult(ROBUSTNESS_METRIC, rows, summarise(rows, ROBUSTNESS_METRIC))


def _row(values: dict[str, Any]) -> dict[str, float]:
    return {m: math.nan if values.get(m) is None else float(values[m]) for m in ROW_METRICS}
