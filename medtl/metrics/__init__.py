"""Classification and segmentation metrics and bootstrap confidence intervals (numpy only)."""

from medtl.metrics.bootstrap import bootstrap_ci, bootstrap_indices, bootstrap_metrics
from medtl.metrics.classification import (
    METRIC_TASKS,
    SCALAR_METRICS,
    ClassificationMetrics,
    MetricTask,
    accuracy,
    auroc,
    auroc_per_class,
    balanced_accuracy,
    binary_auroc,
    classification_metrics,
    confusion_matrix,
    metric_task,
    multilabel_confusion_matrix,
    precision_recall_f1,
    predict_labels,
)
from medtl.metrics.segmentation import DiceMetric, dice_score

__all__ = [
    "METRIC_TASKS",
    "SCALAR_METRICS",
    "ClassificationMetrics",
    "DiceMetric",
    "MetricTask",
    "accuracy",
    "auroc",
    "auroc_per_class",
    "balanced_accuracy",
    "binary_auroc",
    "bootstrap_ci",
    "bootstrap_indices",
    "bootstrap_metrics",
    "classification_metrics",
    "confusion_matrix",
    "dice_score",
    "metric_task",
    "multilabel_confusion_matrix",
    "precision_recall_f1",
    "predict_labels",
]
