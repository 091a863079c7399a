"""The one evaluation loop: an objective's outputs, loss and accumulating metric over a loader.

Validation in the trainer, the final test of a run and ``medtl evaluate`` (with test-time
augmentation) all run through ``evaluate_loader``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from medtl.engine.runtime import Precision, eval_mode
from medtl.objectives.base import INDEX, Batch, Metric, Objective


@dataclass
class Evaluated:
    """What a pass over a loader gave: the mean loss (None when not computed) and the metric."""

    loss: float | None
    metric: Metric
    num_samples: int


@torch.no_grad()
def evaluate_loader(
    objective: Objective,
    module: nn.Module,
    loader: Iterable[Batch],
    *,
    precision: Precision | None = None,
    device: torch.device | str = "cpu",
    tta: str | None = None,
    with_loss: bool = True,
    final: bool = False,
    reference: dict[str, torch.Tensor] | None = None,
) -> Evaluated:
    """Run ``module`` (in eval mode, modes restored after) on every batch dict of ``loader``.

    ``precision`` (device, AMP, memory format) defaults to plain float32 on ``device``; ``tta``
    averages the objective's test-time augmented views; ``with_loss`` False skips the loss (TTA
    outputs are probabilities, which have none); ``final`` asks the objective for the metric of a
    final evaluation (``Objective.metric``); ``reference`` the cached inputs of the objective's
    reference items, handed to the metric (``use_reference``) before the first batch.
    """
    precision = precision or Precision(torch.device(device))
    module.to(precision.device)
    metric = objective.metric(final=final)
    if reference is not None:
        metric.use_reference(reference)  # type: ignore[attr-defined]
    total, count = 0.0, 0
    with eval_mode(module):
        for batch in loader:
            batch = precision.to_device(batch)
            n = len(batch[INDEX])
            with precision.autocast():
                outputs = objective.predict(module, batch, tta)
                if with_loss:
                    total += float(objective.loss(outputs, batch)) * n
            metric.update(outputs, batch)
            count += n
    return Evaluated(total / max(count, 1) if with_loss else None, metric, count)
