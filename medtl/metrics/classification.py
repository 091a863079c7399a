"""Classification metrics: pure functions over arrays plus an accumulating ``ClassificationMetrics``.

Conventions (they decide the numbers a study reports, so they are fixed here):

* ``y_score`` holds probabilities: softmax outputs for ``multiclass``, sigmoid outputs for
  ``multilabel``; for ``binary`` either the positive-class probability (N,) or both columns (N, 2).
  Only the thresholded metrics depend on this; AUROC depends on the ranking alone.
* Predictions: arg-max for ``multiclass``; ``score >= threshold`` (default 0.5) for the positive
  class of ``binary`` and for every label of ``multilabel``.
* AUROC: ``binary`` on the positive class; ``multiclass`` one-vs-rest, macro mean over classes;
  ``multilabel`` macro mean over labels. A class whose targets hold one value only (no positives
  or no negatives) has no AUROC: it is skipped from the mean, reported as ``None`` in
  ``auroc_per_class`` and named in ``auroc_skipped``; with no class left ``auroc`` is NaN.
* Precision, recall and F1 are macro averages over classes of the per-class values (F1 is the mean
  of per-class F1, *not* the F1 of macro precision and recall), 0 where a class has no predicted
  or no true samples (scikit-learn's ``zero_division=0``). For ``binary`` both classes count.
* Balanced accuracy is the mean recall over classes present in ``y_true`` (scikit-learn's);
  for ``multilabel`` it is the mean over labels of each label's (TPR + TNR) / 2.
* Accuracy for ``multilabel`` is subset accuracy (all labels right), as scikit-learn's;
  ``label_accuracy`` is the mean per-label accuracy.
* ``multilabel`` targets below 0 are unknown (CheXpert's uncertain labels under the ``ignore``
  policy): every metric leaves those entries out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

MetricTask = Literal["binary", "multiclass", "multilabel"]
METRIC_TASKS: tuple[str, ...] = ("binary", "multiclass", "multilabel")
# The keys of classification_metrics() whose values are single floats (for tables, CIs, early stopping).
SCALAR_METRICS: tuple[str, ...] = (
    "accuracy",
    "balanced_accuracy",
    "auroc",
    "precision",
    "recall",
    "f1",
)


def metric_task(store_task: str, num_classes: int) -> MetricTask:
    """Map a store's task ("classification", "multilabel") and class count to the metric task."""
    if store_task == "multilabel":
        return "multilabel"
    if store_task == "classification":
        return "binary" if num_classes == 2 else "multiclass"
    raise ValueError(f"no classification metrics for store task '{store_task}'")


def to_numpy(x: Any) -> np.ndarray:
    """Arrays, lists or torch tensors (on any device) as a numpy array, without importing torch."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)


def _check(y_true: Any, y_score: Any, task: str) -> tuple[np.ndarray, np.ndarray]:
    if task not in METRIC_TASKS:
        raise ValueError(f"task must be one of {METRIC_TASKS}, got '{task}'")
    y_true, y_score = to_numpy(y_true), to_numpy(y_score).astype(np.float64, copy=False)
    if y_true.shape[0] != y_score.shape[0]:
        raise ValueError(f"{y_true.shape[0]} targets for {y_score.shape[0]} scores")
    if task == "multilabel":
        if y_true.ndim != 2 or y_true.shape != y_score.shape:
            raise ValueError(
                f"multilabel needs (N, K) targets and scores, got {y_true.shape}, {y_score.shape}"
            )
        return np.where(y_true < 0, -1, y_true > 0.5).astype(np.int64), y_score
    y_true = y_true.astype(np.int64).reshape(-1)
    if task == "binary":
        if y_score.ndim > 2 or (y_score.ndim == 2 and y_score.shape[1] not in (1, 2)):
            raise ValueError(f"binary scores must be (N,) or (N, 2), got {y_score.shape}")
        if y_true.size and (y_true.min() < 0 or y_true.max() > 1):
            raise ValueError("binary targets must be 0 or 1")
    else:
        if y_score.ndim != 2:
            raise ValueError(f"multiclass scores must be (N, K), got {y_score.shape}")
        if y_true.size and (y_true.min() < 0 or y_true.max() >= y_score.shape[1]):
            raise ValueError(f"multiclass targets must lie in 0..{y_score.shape[1] - 1}")
    return y_true, y_score


def num_classes_of(y_score: np.ndarray, task: str) -> int:
    return 2 if task == "binary" else int(y_score.shape[1])


def positive_score(y_score: np.ndarray) -> np.ndarray:
    """The positive-class score of binary scores given as (N,), (N, 1) or (N, 2)."""
    return y_score[:, -1] if y_score.ndim == 2 else y_score


def predict_labels(y_score: Any, task: MetricTask, threshold: float = 0.5) -> np.ndarray:
    """Class indices (N,) for binary/multiclass, 0/1 indicators (N, K) for multilabel."""
    y_score = to_numpy(y_score)
    if task == "multilabel":
        return (y_score >= threshold).astype(np.int64)
    if task == "binary":
        return (positive_score(y_score) >= threshold).astype(np.int64)
    return np.argmax(y_score, axis=1).astype(np.int64)


# -- AUROC ---------------------------------------------------------------------------------------


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    upper = np.cumsum(counts)
    return (upper - (counts - 1) / 2.0)[inverse]


def binary_auroc(y_true: Any, y_score: Any) -> float:
    """Area under the ROC curve of one binary problem; NaN when y_true holds one value only.

    Computed as the Mann-Whitney U statistic with average ranks for ties, which equals the
    trapezoidal area under the ROC curve.
    """
    y_true = to_numpy(y_true).reshape(-1) > 0.5
    y_score = to_numpy(y_score).reshape(-1)
    n_pos = int(y_true.sum())
    n_neg = y_true.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = _average_ranks(y_score)
    return float((ranks[y_true].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def auroc_per_class(y_true: Any, y_score: Any, task: MetricTask) -> np.ndarray:
    """One-vs-rest AUROC of each class (K,), NaN where a class's targets hold one value only.

    For binary both entries are the positive-class AUROC (one-vs-rest is symmetric there).
    """
    y_true, y_score = _check(y_true, y_score, task)
    if task == "binary":
        value = binary_auroc(y_true, positive_score(y_score))
        return np.array([value, value])
    if task == "multiclass":
        k = y_score.shape[1]
        return np.array([binary_auroc(y_true == c, y_score[:, c]) for c in range(k)])
    known = y_true >= 0
    return np.array(
        [binary_auroc(y_true[known[:, c], c], y_score[known[:, c], c]) for c in range(y_score.shape[1])]
    )


def auroc(y_true: Any, y_score: Any, task: MetricTask) -> float:
    """Binary AUROC, or the macro mean of the defined one-vs-rest AUROCs; NaN if none is defined."""
    if task == "binary":
        y_true, y_score = _check(y_true, y_score, task)
        return binary_auroc(y_true, positive_score(y_score))
    return _mean_defined(auroc_per_class(y_true, y_score, task))


def _mean_defined(values: np.ndarray) -> float:
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else math.nan


# -- thresholded metrics -------------------------------------------------------------------------


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """(K, K) counts, rows = true class, columns = predicted class."""
    y_true = to_numpy(y_true).astype(np.int64).reshape(-1)
    y_pred = to_numpy(y_pred).astype(np.int64).reshape(-1)
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def multilabel_confusion_matrix(y_true: Any, y_pred: Any) -> np.ndarray:
    """(K, 2, 2) counts per label, each [[tn, fp], [fn, tp]] (scikit-learn's layout); targets
    below 0 (unknown) are not counted."""
    raw = to_numpy(y_true)
    known = raw >= 0
    t = raw > 0.5
    p = to_numpy(y_pred).astype(bool)
    tp = (t & p & known).sum(0)
    fp = (~t & p & known).sum(0)
    fn = (t & ~p & known).sum(0)
    tn = (~t & ~p & known).sum(0)
    return np.stack([np.stack([tn, fp], -1), np.stack([fn, tp], -1)], 1).astype(np.int64)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _per_class_counts(y_true: np.ndarray, y_pred: np.ndarray, task: str, k: int):
    """tp, fp, fn, tn per class (one-vs-rest) and the confusion matrix."""
    if task == "multilabel":
        cm = multilabel_confusion_matrix(y_true, y_pred)
        return cm[:, 1, 1], cm[:, 0, 1], cm[:, 1, 0], cm[:, 0, 0], cm
    cm = confusion_matrix(y_true, y_pred, k)
    tp = np.diag(cm)
    fp = cm.sum(0) - tp
    fn = cm.sum(1) - tp
    tn = cm.sum() - tp - fp - fn
    return tp, fp, fn, tn, cm


def precision_recall_f1(
    y_true: Any, y_score: Any, task: MetricTask, threshold: float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall and F1 (K,) each; 0 where undefined (see the module notes)."""
    y_true, y_score = _check(y_true, y_score, task)
    y_pred = predict_labels(y_score, task, threshold)
    tp, fp, fn, _, _ = _per_class_counts(y_true, y_pred, task, num_classes_of(y_score, task))
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    return precision, recall, f1


def accuracy(y_true: Any, y_score: Any, task: MetricTask, threshold: float = 0.5) -> float:
    """Fraction of samples predicted right (all labels right for multilabel)."""
    y_true, y_score = _check(y_true, y_score, task)
    y_pred = predict_labels(y_score, task, threshold)
    if task == "multilabel":
        return float(np.all((y_pred == y_true) | (y_true < 0), axis=1).mean())
    return float((y_pred == y_true).mean())


def balanced_accuracy(y_true: Any, y_score: Any, task: MetricTask, threshold: float = 0.5) -> float:
    """Mean recall over classes present in y_true; multilabel: mean over labels of (TPR + TNR) / 2."""
    y_true, y_score = _check(y_true, y_score, task)
    y_pred = predict_labels(y_score, task, threshold)
    tp, fp, fn, tn, _ = _per_class_counts(y_true, y_pred, task, num_classes_of(y_score, task))
    if task == "multilabel":
        tpr = np.where(tp + fn > 0, _safe_div(tp, tp + fn), np.nan)
        tnr = np.where(tn + fp > 0, _safe_div(tn, tn + fp), np.nan)
        per_label = np.nanmean(np.stack([tpr, tnr]), axis=0)
        return float(np.nanmean(per_label)) if np.isfinite(per_label).any() else math.nan
    present = tp + fn > 0
    return float(_safe_div(tp, tp + fn)[present].mean()) if present.any() else math.nan


def _none_if_nan(values: Sequence[float]) -> list[float | None]:
    return [None if math.isnan(v) else float(v) for v in values]


def classification_metrics(
    y_true: Any,
    y_score: Any,
    task: MetricTask,
    class_names: Sequence[str] | None = None,
    *,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """Every classification metric of one evaluation, as a JSON-ready dict.

    Scalars: ``accuracy``, ``balanced_accuracy``, ``auroc`` (NaN when undefined), ``precision``,
    ``recall``, ``f1`` (macro); binary adds ``sensitivity`` and ``specificity`` of the positive
    class, multilabel adds ``label_accuracy``. Lists follow ``class_names``: ``auroc_per_class``
    (``None`` where skipped), ``precision_per_class``, ``recall_per_class``, ``f1_per_class``,
    ``support`` (true samples per class); ``auroc_skipped`` names the skipped classes;
    ``confusion_matrix`` is (K, K) or, for multilabel, (K, 2, 2).
    """
    y_true, y_score = _check(y_true, y_score, task)
    k = num_classes_of(y_score, task)
    names = list(class_names) if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"{len(names)} class names for {k} classes")
    y_pred = predict_labels(y_score, task, threshold)
    tp, fp, fn, tn, cm = _per_class_counts(y_true, y_pred, task, k)
    precision = _safe_div(tp, tp + fp)
    recall = _safe_div(tp, tp + fn)
    f1 = _safe_div(2 * tp, 2 * tp + fp + fn)
    per_class_auc = auroc_per_class(y_true, y_score, task)
    result: dict[str, Any] = {
        "num_samples": int(y_true.shape[0]),
        "accuracy": accuracy(y_true, y_score, task, threshold),
        "balanced_accuracy": balanced_accuracy(y_true, y_score, task, threshold),
        "auroc": _mean_defined(per_class_auc),
        "precision": float(precision.mean()),
        "recall": float(recall.mean()),
        "f1": float(f1.mean()),
    }
    if task == "binary":
        result["sensitivity"] = float(recall[1])
        result["specificity"] = float(_safe_div(tn[1], tn[1] + fp[1]))
    if task == "multilabel":
        known = y_true >= 0
        result["label_accuracy"] = float((y_pred == y_true)[known].mean()) if known.any() else math.nan
    result.update(
        {
            "class_names": names,
            "auroc_per_class": _none_if_nan(per_class_auc),
            "auroc_skipped": [n for n, v in zip(names, per_class_auc) if math.isnan(v)],
            "precision_per_class": precision.tolist(),
            "recall_per_class": recall.tolist(),
            "f1_per_class": f1.tolist(),
            "support": (tp + fn).astype(int).tolist(),
            "confusion_matrix": cm.tolist(),
        }
    )
    return result


class ClassificationMetrics:
    """Accumulates scores and targets batch by batch; ``aggregate()`` computes every metric.

    >>> metric = ClassificationMetrics("multiclass", ["a", "b", "c"])
    >>> for scores, targets in batches:          # doctest: +SKIP
    ...     metric.update(scores, targets)
    >>> metric.aggregate()["auroc"]              # doctest: +SKIP
    """

    def __init__(
        self, task: MetricTask, class_names: Sequence[str] | None = None, *, threshold: float = 0.5
    ) -> None:
        if task not in METRIC_TASKS:
            raise ValueError(f"task must be one of {METRIC_TASKS}, got '{task}'")
        self.task, self.threshold = task, threshold
        self.class_names = None if class_names is None else list(class_names)
        self.reset()

    def reset(self) -> None:
        self._scores: list[np.ndarray] = []
        self._targets: list[np.ndarray] = []

    def update(self, scores: Any, targets: Any) -> None:
        """Add one batch (numpy arrays or torch tensors on any device)."""
        scores, targets = to_numpy(scores), to_numpy(targets)
        if scores.shape[0] != targets.shape[0]:
            raise ValueError(f"{targets.shape[0]} targets for {scores.shape[0]} scores")
        self._scores.append(scores.astype(np.float64, copy=True))
        self._targets.append(targets.copy())

    def __len__(self) -> int:
        return sum(s.shape[0] for s in self._scores)

    def data(self) -> tuple[np.ndarray, np.ndarray]:
        """All targets and scores so far, concatenated."""
        if not self._scores:
            raise ValueError("no batches were added")
        return np.concatenate(self._targets), np.concatenate(self._scores)

    def aggregate(self) -> dict[str, Any]:
        y_true, y_score = self.data()
        return classification_metrics(y_true, y_score, self.task, self.class_names, threshold=self.threshold)
