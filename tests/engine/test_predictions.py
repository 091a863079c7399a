"""A run keeps its per-sample test outputs (predictions_test.npz) for paired tests between runs."""

from __future__ import annotations

import numpy as np
import pytest

from medtl.engine import run
from medtl.engine.predictions import PREDICTIONS_FILE, per_sample, write_predictions
from medtl.io.store import Store
from medtl.metrics import auroc


def test_a_run_writes_its_test_predictions_matching_its_metrics(make_config):
    config = make_config("binary")
    result = run(config)
    with np.load(config.run_dir / PREDICTIONS_FILE) as data:
        index, patient, target, score = (data[k] for k in ("index", "patient", "target", "score"))
    store = Store(config.data)
    assert len(index) == result.metrics.data.counts["test"] == 8
    assert patient.tolist() == store.patient_ids[index].tolist()
    assert target.tolist() == np.asarray(store.labels[index]).reshape(-1).tolist()
    assert ((score >= 0) & (score <= 1)).all()
    assert auroc(target, score, "binary") == pytest.approx(result.metrics.test["auroc"])


def test_per_sample_prefers_the_metric_s_own_arrays_and_rows_must_match(tmp_path):
    class Dice:
        def per_sample(self):
            return {"score": np.array([0.5, 0.75])}

    assert per_sample(Dice())["score"].tolist() == [0.5, 0.75]
    assert per_sample(object()) is None
    with pytest.raises(ValueError, match="score: 2 rows for 3 test samples"):
        write_predictions(
            tmp_path / PREDICTIONS_FILE, np.arange(3), np.array(["a", "b", "c"]), Dice().per_sample()
        )
    assert not list(tmp_path.iterdir())
