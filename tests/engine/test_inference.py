"""load_run rebuilds a run's model; predict gives the scores the run's test metrics came from."""

from __future__ import annotations

import numpy as np
import pytest

from medtl.data.dataset import StoreDataset, make_loader
from medtl.engine import evaluate_loader, load_run, run
from medtl.errors import CheckpointError, InputError, UnknownChoiceError
from medtl.io.store import Store
from medtl.metrics import classification_metrics


def predict(loaded, loader, tta=None):
    """(targets, scores) of the run's model over a loader, through the engine's evaluation loop."""
    return evaluate_loader(loaded.objective, loaded.model, loader, tta=tta, with_loss=False).metric.data()


@pytest.fixture(scope="module")
def finished(tmp_path_factory, signal_stores):
    from medtl.engine.run_config import RunConfig

    config = RunConfig(
        data=signal_stores["multiclass"],
        backbone="resnet10t",
        init="random",
        phase_epochs={"head": 2},
        batch_size=8,
        num_workers=0,
        normalise="none",
        lr=1e-2,
        bootstrap=0,
        device="cpu",
        out=tmp_path_factory.mktemp("runs"),
    )
    return config, run(config)


def test_load_run_predicts_the_test_metrics(finished, signal_stores):
    config, result = finished
    loaded = load_run(config.run_dir)
    assert loaded.task == "multiclass" and loaded.class_names == ["class0", "class1", "class2"]
    assert loaded.in_chans == 1 and loaded.config == config
    from medtl.data.splits import make_fraction_split

    store = Store(signal_stores["multiclass"])
    test_idx = make_fraction_split(store, seed=0)["test"]
    loader = make_loader(StoreDataset(store, test_idx, loaded.transform()), batch_size=3, dicts=True)
    targets, scores = predict(loaded, loader)
    assert scores.shape == (8, 3)
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    metrics = classification_metrics(targets, scores, "multiclass")
    assert metrics["auroc"] == pytest.approx(result.metrics.test["auroc"], abs=1e-6)


@pytest.mark.parametrize("tta", ["hflip", "tencrop"])
def test_tta_averages_probabilities(finished, signal_stores, tta):
    config, _ = finished
    loaded = load_run(config.run_dir, "last")
    store = Store(signal_stores["multiclass"])
    loader = make_loader(StoreDataset(store, np.arange(6), loaded.transform()), batch_size=4, dicts=True)
    _, plain = predict(loaded, loader)
    targets, augmented = predict(loaded, loader, tta=tta)
    assert augmented.shape == plain.shape == (6, 3) and targets.tolist() == [0, 1, 2, 0, 1, 2]
    np.testing.assert_allclose(augmented.sum(axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(augmented, plain)


def test_unknown_tta(finished, signal_stores):
    config, _ = finished
    loaded = load_run(config.run_dir)
    loader = make_loader(
        StoreDataset(Store(signal_stores["multiclass"]), np.arange(2)), batch_size=2, dicts=True
    )
    with pytest.raises(UnknownChoiceError, match="unknown test-time augmentation 'flip'"):
        predict(loaded, loader, tta="flip")


def test_load_run_errors(finished, tmp_path):
    with pytest.raises(InputError, match=r"not a medtl run directory \(config.toml missing\)"):
        load_run(tmp_path)
    config, _ = finished
    with pytest.raises(UnknownChoiceError, match="unknown checkpoint 'worst'"):
        load_run(config.run_dir, "worst")
    (tmp_path / "config.toml").write_text((config.run_dir / "config.toml").read_text())
    with pytest.raises(CheckpointError, match=r"checkpoints/best.safetensors: checkpoint missing"):
        load_run(tmp_path)
