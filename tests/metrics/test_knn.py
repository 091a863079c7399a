"""k-NN monitor: clustered features are classified by their neighbours; multi-label votes per label."""

from __future__ import annotations

import numpy as np
import pytest

from medtl.metrics.knn import knn_metrics, knn_scores


def clusters(n_per=20, k=3, dim=8, noise=0.1, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:k] * 5
    labels = np.repeat(np.arange(k), n_per)
    return centres[labels] + noise * rng.standard_normal((len(labels), dim)), labels


def test_separated_clusters_are_classified_perfectly():
    train, y_train = clusters(seed=0)
    val, y_val = clusters(n_per=5, seed=1)
    metrics = knn_metrics(train, y_train, val, y_val, "multiclass", k=5)
    assert metrics["knn_accuracy"] == 1.0 and metrics["knn_auroc"] == 1.0


def test_scores_are_weighted_vote_shares():
    train = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0]])
    scores = knn_scores(
        train, np.array([0, 0, 1]), np.array([[1.0, 0.05]]), "multiclass", k=3, temperature=0.5
    )
    assert scores.shape == (1, 2) and scores.sum() == pytest.approx(1.0)
    sims = np.array([0.99875, 0.99875, 0.05])  # cosine similarities of the query to the three
    w = np.exp(sims / 0.5)
    assert scores[0, 1] == pytest.approx(w[2] / w.sum(), rel=1e-2)


def test_multilabel_votes_per_label_and_skips_unknown():
    train = np.array([[1.0, 0], [0.9, 0.1], [0, 1.0]])
    labels = np.array([[1, 0], [1, -1], [0, 1]], dtype=np.float32)
    scores = knn_scores(train, labels, np.array([[1.0, 0.0]]), "multilabel", k=2)
    assert scores[0, 0] == pytest.approx(1.0)
    assert scores[0, 1] == pytest.approx(0.0)  # the unknown label of the 2nd neighbour does not vote


def test_binary_metrics():
    train, y_train = clusters(k=2, seed=0)
    val, y_val = clusters(n_per=4, k=2, seed=2)
    assert knn_metrics(train, y_train, val, y_val, "binary", k=3)["knn_auroc"] == 1.0
