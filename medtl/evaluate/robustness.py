"""Corruption robustness: a metric per corruption x severity and its drop relative to clean images.

Corruptions act on the images as stored (before resizing and normalisation), as a scanner
artefact would; the evaluation transform runs afterwards. Sample ``i`` of the dataset is corrupted
with seed ``seed + i``, so every sample gets its own noise, every severity the same draw, and
a rerun the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from medtl.errors import ConfigError
from medtl.evaluate.corruptions import SEVERITIES, corrupt, get_corruption, list_corruptions
from medtl.metrics.classification import SCALAR_METRICS, MetricTask, classification_metrics, to_numpy
from medtl.progress import NULL_PROGRESS, Progress

PredictFn = Callable[[torch.Tensor], Any]
# Scores all items of a dataset: returns (scores, targets) as arrays.
ScoreFn = Callable[[Dataset], tuple[np.ndarray, np.ndarray]]


class CorruptedDataset(Dataset):
    """Items ``(transform(corrupt(image)), target)`` of a dataset yielding raw ``(image, target)``; a
    dataset of batch-dict items (``{"image": ..., ...}``) keeps its items' form."""

    def __init__(
        self,
        dataset: Dataset,
        corruption: str | None,
        severity: int = 0,
        *,
        seed: int = 0,
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        if corruption is not None:
            get_corruption(corruption)
        self.dataset, self.corruption, self.severity = dataset, corruption, severity
        self.seed, self.transform = seed, transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> Any:
        item = self.dataset[i]
        image, target = (item["image"], None) if isinstance(item, dict) else item
        if self.corruption is not None and self.severity:
            image = corrupt(image, self.corruption, self.severity, seed=self.seed + i)
        if self.transform is not None:
            image = self.transform(image)
        return {**item, "image": image} if isinstance(item, dict) else (image, target)


def batch_scorer(predict_fn: PredictFn, *, batch_size: int = 32, num_workers: int = 0) -> ScoreFn:
    """A ScoreFn that runs ``predict_fn(images) -> scores`` over a dataset in batches."""

    def score(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
        scores, targets = [], []
        with torch.no_grad():
            for images, target in loader:
                scores.append(to_numpy(predict_fn(images)))
                targets.append(to_numpy(target))
        return np.concatenate(scores), np.concatenate(targets)

    return score


@dataclass
class RobustnessResult:
    """``rows``: one dict per cell (corruption, severity, every scalar metric, ``drop`` of
    ``metric``); severity 0 is the clean row. ``summary``: clean value, mean over corrupted cells,
    mean drop (absolute and relative to clean) and the same per corruption."""

    metric: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "rows": self.rows, "summary": self.summary}


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def summarise(rows: Sequence[dict[str, Any]], metric: str) -> dict[str, Any]:
    """Clean value, mean corrupted value and mean drop, overall and per corruption."""
    clean = next(r[metric] for r in rows if r["severity"] == 0)
    corrupted = [r for r in rows if r["severity"] > 0]
    per_corruption: dict[str, dict[str, float]] = {}
    for name in dict.fromkeys(r["corruption"] for r in corrupted):
        cells = [r for r in corrupted if r["corruption"] == name]
        per_corruption[name] = {
            "mean": _mean([r[metric] for r in cells]),
            "mean_drop": _mean([r["drop"] for r in cells]),
            "worst": min((r[metric] for r in cells if not math.isnan(r[metric])), default=math.nan),
        }
    mean_drop = _mean([r["drop"] for r in corrupted])
    return {
        "metric": metric,
        "clean": clean,
        "mean_corrupted": _mean([r[metric] for r in corrupted]),
        "mean_drop": mean_drop,
        "relative_mean_drop": mean_drop / clean if clean and not math.isnan(clean) else math.nan,
        "per_corruption": per_corruption,
    }


def evaluate_robustness(
    predict_fn: PredictFn | None,
    dataset: Dataset,
    *,
    task: MetricTask,
    class_names: Sequence[str] | None = None,
    metric: str = "auroc",
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
    seed: int = 0,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    score_fn: ScoreFn | None = None,
    progress: Progress = NULL_PROGRESS,
) -> RobustnessResult:
    """Score ``dataset`` clean and under every corruption x severity; ``metric`` decides the drop.

    ``predict_fn(images) -> scores`` (probabilities, see medtl.metrics) is run in batches; pass
    ``score_fn(dataset) -> (scores, targets)`` instead to control inference (device, TTA) fully.
    ``dataset`` yields raw ``(image, target)``; ``transform`` runs after the corruption.
    """
    if metric not in SCALAR_METRICS:
        raise ConfigError(f"robustness metric must be one of {', '.join(SCALAR_METRICS)}, got '{metric}'")
    if (predict_fn is None) == (score_fn is None):
        raise ValueError("give exactly one of predict_fn and score_fn")
    names = list(corruptions) if corruptions is not None else list_corruptions()
    for name in names:
        get_corruption(name)
    for severity in severities:
        if severity not in SEVERITIES:
            raise ConfigError(f"corruption severity must be an integer 1-5, got {severity!r}")
    scorer = score_fn or batch_scorer(predict_fn, batch_size=batch_size, num_workers=num_workers)  # type: ignore[arg-type]
    cells = [(None, 0)] + [(name, s) for name in names for s in severities]
    task_id = progress.start("robustness", total=len(cells))
    rows: list[dict[str, Any]] = []
    clean_value = math.nan
    for name, severity in cells:
        scores, targets = scorer(CorruptedDataset(dataset, name, severity, seed=seed, transform=transform))
        values = classification_metrics(targets, scores, task, class_names)
        if name is None:
            clean_value = values[metric]
        row: dict[str, Any] = {"corruption": name or "clean", "severity": severity}
        row.update({m: values[m] for m in SCALAR_METRICS})
        row["drop"] = clean_value - values[metric]
        rows.append(row)
        progress.advance(task_id, corruption=row["corruption"], severity=severity, **{metric: values[metric]})
    progress.end(task_id)
    return RobustnessResult(metric=metric, rows=rows, summary=summarise(rows, metric))
