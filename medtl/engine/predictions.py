"""``predictions_test.npz``: a run's per-sample test outputs, for paired tests between runs.

Two runs scored on the same test patients can be compared sample by sample (DeLong's test, a paired
patient-level bootstrap in ``medtl report``) only if each kept what it predicted. The file holds one
row per test sample: ``index`` (the store's sample index), ``patient`` (its patient id), ``target``
and ``score`` as the objective's metric saw them (classification: targets and probabilities, (N,)
or (N, K)); an objective whose metric offers ``per_sample()`` decides its own arrays (segmentation:
the per-sample Dice as ``score``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

PREDICTIONS_FILE = "predictions_test.npz"


def per_sample(metric: Any) -> dict[str, np.ndarray] | None:
    """The metric's per-sample arrays (``per_sample()``, else its ``data()`` targets and scores)."""
    own = getattr(metric, "per_sample", None)
    if callable(own):
        return own()
    data = getattr(metric, "data", None)
    if callable(data):
        targets, scores = data()
        return {"target": np.asarray(targets), "score": np.asarray(scores)}
    return None


def write_predictions(
    path: Path, index: np.ndarray, patient: np.ndarray, values: dict[str, np.ndarray]
) -> None:
    """Write the file atomically (a temporary name renamed into place)."""
    n = len(index)
    for name, array in values.items():
        if len(array) != n:
            raise ValueError(f"{name}: {len(array)} rows for {n} test samples")
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(
            fh, index=np.asarray(index, dtype=np.int64), patient=np.asarray(patient).astype(str), **values
        )
    os.replace(tmp, path)
