"""k-nearest-neighbour evaluation of frozen features: how self-supervised pretraining is monitored.

Validation features vote with their ``k`` most cosine-similar training features, each vote weighted
by ``exp(similarity / temperature)`` (Wu et al. 2018, as in DINO's and solo-learn's k-NN monitors).
The vote shares are class scores, so the usual metrics follow (accuracy, AUROC, ...). Multi-label
targets vote per label. The neighbour search is scikit-learn's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from medtl.metrics.classification import MetricTask, classification_metrics

KNN_K = 20
KNN_TEMPERATURE = 0.07


def knn_scores(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    query_features: np.ndarray,
    task: MetricTask,
    *,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    num_classes: int | None = None,
) -> np.ndarray:
    """Class scores of ``query_features``: (M, K) vote shares (multiclass, binary) or per-label
    positive shares (multilabel)."""
    from sklearn.neighbors import NearestNeighbors

    train = _unit(train_features)
    query = _unit(query_features)
    k = min(k, len(train))
    if k < 1:
        raise ValueError("k-NN needs at least one training feature")
    # On unit vectors Euclidean order is cosine order; brute force is exact and fast at these sizes.
    index = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(train)
    dist, idx = index.kneighbors(query)
    similarity = 1 - dist**2 / 2
    weights = np.exp((similarity - similarity.max(axis=1, keepdims=True)) / temperature)
    labels = np.asarray(train_labels)
    if task == "multilabel":
        known = labels[idx] >= 0  # (M, k, L); unknown labels (< 0) do not vote
        pos = (labels[idx] > 0.5) & known
        w = weights[:, :, None]
        return (w * pos).sum(1) / np.maximum((w * known).sum(1), 1e-12)
    labels = labels.reshape(-1).astype(np.int64)
    k_classes = num_classes or int(labels.max()) + 1
    votes = np.zeros((len(query), k_classes))
    np.add.at(votes, (np.arange(len(query))[:, None], labels[idx]), weights)
    return votes / votes.sum(axis=1, keepdims=True)


def knn_metrics(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_features: np.ndarray,
    val_labels: np.ndarray,
    task: MetricTask,
    *,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    num_classes: int | None = None,
) -> dict[str, Any]:
    """``classification_metrics`` of the k-NN scores, keys prefixed ``knn_`` (knn_accuracy, knn_auroc)."""
    scores = knn_scores(
        train_features,
        train_labels,
        val_features,
        task,
        k=k,
        temperature=temperature,
        num_classes=num_classes,
    )
    metrics = classification_metrics(val_labels, scores, task)
    return {f"knn_{name}": value for name, value in metrics.items()}


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
