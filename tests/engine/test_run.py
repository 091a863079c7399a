"""run() end to end on tiny stores: files written, tasks, phases, early stopping, bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medtl.engine import RunMetrics, load_run, run
from medtl.engine.run_config import RunConfig
from medtl.errors import InputError, StoreError, TrainingError, UnknownChoiceError
from medtl.io.store import Store

PROGRESSIVE = {"head": 2, "last_blocks": 1, "all_non_bn": 1}


def test_multiclass_run_writes_the_run_directory(make_config):
    config = make_config()
    result = run(config)
    d = config.run_dir
    assert result.run_dir == d and d.name == config.run_id()
    assert RunConfig.load(d / "config.toml") == config
    assert json.loads((d / "status.json").read_text())["status"] == "completed"
    for name in ("best.safetensors", "last.safetensors", "resume.pt"):
        assert (d / "checkpoints" / name).is_file()
    assert list((d / "tb").glob("events.out.tfevents.*"))

    metrics = json.loads((d / "metrics.json").read_text())
    assert metrics["task"] == "multiclass" and metrics["class_names"] == ["class0", "class1", "class2"]
    assert metrics["data"]["counts"] == {"train": 28, "val": 4, "test": 8}
    [phase] = metrics["phases"]
    # resnet10t: 512 pooled features -> 3 classes; only the head trains, on cached features
    assert phase["trainable_params"] == 512 * 3 + 3 and phase["cached_features"] is True
    assert phase["epochs_run"] == 2 and phase["kwh"] > 0 and phase["wall_time_s"] > 0
    assert [h["epoch"] for h in metrics["history"]] == [0, 1]
    assert {"train_loss", "val_loss", "val_auroc", "lr"} <= set(metrics["history"][0])
    test = metrics["test"]
    assert test["num_samples"] == 8 and len(test["confusion_matrix"]) == 3
    low, high = test["ci95"]["accuracy"]
    assert low <= test["accuracy"] <= high
    assert metrics["energy"]["method"] in ("nvml", "rapl", "cpu-time-estimate")
    assert metrics["best"]["phase"] == "head"
    assert result.metrics.test["accuracy"] == test["accuracy"]
    # the typed record is what the file holds
    assert result.metrics == RunMetrics.load(d) and result.metrics.model_dump(mode="json") == metrics
    assert metrics["objective"] == "classification" and metrics["monitor"] == "auroc"


def test_tensorboard_has_scalars_per_phase_and_run(make_config):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = make_config()
    run(config)
    acc = EventAccumulator(str(config.run_dir / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"head/train_loss", "head/val_auroc", "head/lr", "phase_summary/kwh"} <= tags
    assert [e.step for e in acc.Scalars("head/train_loss")] == [1, 2]


def test_binary_store_trains_one_logit(make_config):
    result = run(make_config("binary"))
    model = load_run(result.run_dir, "last").model
    assert result.metrics.task == "binary" and model.head.out_features == 1
    assert result.metrics.phases[0].trainable_params == 512 + 1
    assert {"sensitivity", "specificity"} <= set(result.metrics.test.values)


def test_multilabel_store_trains_bce_per_label(make_config):
    result = run(make_config("multilabel", objective={"class_weights": "balanced", "label_smoothing": 0.1}))
    model = load_run(result.run_dir, "last").model
    assert result.metrics.task == "multilabel" and model.head.out_features == 3
    test = result.metrics.test
    assert len(test["auroc_per_class"]) == 3 and "label_accuracy" in test.values


def test_progressive_phases_switch_what_trains(make_config):
    config = make_config(strategy="progressive", phase_epochs=PROGRESSIVE, lr=3e-3, augment="flip")
    result = run(config)
    phases, model = result.metrics.phases, load_run(result.run_dir, "last").model
    names = [p.name for p in phases]
    assert names == ["head", "last_blocks", "all_non_bn"]
    counts = [p.trainable_params for p in phases]
    assert counts[0] < counts[1] < counts[2] == phases[2].total_params - _bn_params(model)
    # augmentation: nothing can be cached
    assert not any(p.cached_features for p in phases)
    assert [h.phase for h in result.metrics.history] == ["head", "head", "last_blocks", "all_non_bn"]
    # BN frozen in every phase: running statistics never move from their initial values
    bn = model.norm_layers()[0]
    assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))


def test_full_fine_tuning_learns_the_training_set(make_config):
    result = run(make_config(strategy="full", phase_epochs={"all": 4}, lr=3e-3, deterministic=True))
    losses = [h.train_loss for h in result.metrics.history]
    assert losses[-1] < 0.7 * losses[0]
    assert not result.metrics.phases[0].cached_features
    assert result.metrics.phases[0].trainable_params == result.metrics.phases[0].total_params


def _bn_params(model) -> int:
    return sum(p.numel() for m in model.norm_layers() for p in m.parameters(recurse=False))


def test_gradient_accumulation_equals_larger_batch(make_config):
    # 28 training samples: 2 batches of 14, or 4 of 7 accumulated in pairs
    big = run(make_config(batch_size=14, run_name="big"))
    accumulated = run(make_config(batch_size=7, grad_accum=2, run_name="acc"))
    assert big.metrics.phases[0].cached_features and accumulated.metrics.phases[0].cached_features
    big_head, accumulated_head = (load_run(r.run_dir, "last").model.head for r in (big, accumulated))
    torch.testing.assert_close(big_head.weight, accumulated_head.weight, atol=1e-6, rtol=1e-5)


def test_early_stopping_stops_the_phase(make_config):
    # an lr too small to change anything: the val loss never improves after the first epoch
    config = make_config(lr=1e-12, phase_epochs={"head": 6}, objective={"monitor": "loss"}, patience=2)
    result = run(config)
    [phase] = result.metrics.phases
    assert phase.stopped_early is True and phase.epochs_run == 3
    assert result.metrics.best.epoch == 0


def test_few_shot_fraction_shrinks_training_set(make_config, signal_stores):
    from medtl.data.splits import few_shot, make_fraction_split

    result = run(make_config(fraction=0.5, seed=4))
    store = Store(signal_stores["multiclass"])
    expected = few_shot(make_fraction_split(store, val=0.1, test=0.2, seed=0), store, 0.5, seed=4)
    counts = result.metrics.data.counts
    assert counts == {"train": len(expected["train"]), "val": 4, "test": 8}
    assert 12 <= counts["train"] <= 16


def test_completed_run_is_not_retrained(make_config):
    config = make_config()
    first = run(config)
    last = config.run_dir / "checkpoints" / "last.safetensors"
    written = last.stat().st_mtime_ns
    again = run(config)
    assert again.resumed and last.stat().st_mtime_ns == written  # nothing was trained
    assert again.metrics.test == first.metrics.test


# -- bad input ------------------------------------------------------------------------------------
def test_resume_with_different_config_names_dir_and_keys(make_config):
    run(make_config(run_name="exp"))
    with pytest.raises(
        TrainingError, match=r"runs/exp: holds a run with a different config \(differs in: lr, seed\)"
    ):
        run(make_config(run_name="exp", lr=0.5, seed=3))


def test_classification_objective_on_a_mask_store_is_refused_before_writing(make_config, signal_stores):
    config = make_config("segmentation", objective={"kind": "classification"})
    with pytest.raises(InputError, match=r"segmentation: is a segmentation store .* a classifier needs"):
        run(config)
    assert not config.out.exists()


def test_split_file_of_another_store(make_config, signal_stores, tmp_path):
    from medtl.data.splits import make_fraction_split

    other = make_fraction_split(Store(signal_stores["binary"]), seed=0)
    path = other.save(tmp_path / "binary.split.json")
    with pytest.raises(StoreError, match=r"binary.split.json: split file was made for another store"):
        run(make_config(split=path))


def test_unknown_backbone_suggests_close_names(make_config):
    with pytest.raises(UnknownChoiceError, match=r"unknown backbone 'resnet10x'.*did you mean"):
        run(make_config(backbone="resnet10x"))


def test_nan_loss_fails_and_keeps_last_good_checkpoint(make_config, tmp_path):
    strategy = tmp_path / "explode.toml"
    strategy.write_text(
        '[[phases]]\nname = "head"\ntrainable = ["head"]\nepochs = 1\nlr = 1e-3\nbn = "frozen"\n'
        '[[phases]]\nname = "all"\ntrainable = ["all"]\nepochs = 2\noptimizer = "sgd"\nlr = 1e12\n'
    )
    config = make_config(strategy=str(strategy), phase_epochs={}, lr=None)
    with pytest.raises(TrainingError, match=r"loss is not finite in phase 'all'.*last good weights"):
        run(config)
    status = json.loads((config.run_dir / "status.json").read_text())
    assert status["status"] == "failed" and "not finite" in status["error"]
    from safetensors.torch import load_file

    for name in ("last", "best"):
        weights = load_file(config.run_dir / "checkpoints" / f"{name}.safetensors")
        assert all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point())
    assert not (config.run_dir / "metrics.json").exists()


def test_scores_are_probabilities(make_config):
    result = run(make_config())
    rows = np.array(result.metrics.test["confusion_matrix"]).sum(axis=1)
    assert rows.tolist() == result.metrics.test["support"]


@pytest.mark.parametrize(
    ("scheduler", "optimizer", "expected_ratio"),
    [("exponential", "lars", 0.5), ("none", "sgd", 1.0), ("plateau", "adam", 1.0)],
)
def test_scheduler_and_optimizer_of_a_phase(make_config, tmp_path, scheduler, optimizer, expected_ratio):
    strategy = tmp_path / "one.toml"
    strategy.write_text(
        f'[[phases]]\nname = "head"\ntrainable = ["head"]\nepochs = 2\noptimizer = "{optimizer}"\n'
        'lr = 0.1\nbn = "frozen"\n'
    )
    result = run(
        make_config(strategy=str(strategy), phase_epochs={}, lr=None, scheduler=scheduler, gamma=0.5)
    )
    first, second = (h.lr for h in result.metrics.history)
    assert first == pytest.approx(0.1) and second == pytest.approx(0.1 * expected_ratio)
    assert result.metrics.phases[0].optimizer == optimizer


def test_unknown_monitor_metric(make_config):
    with pytest.raises(UnknownChoiceError, match="unknown monitor metric 'aucroc', did you mean 'auroc'"):
        run(make_config(objective={"monitor": "aucroc"}))


def test_resume_after_the_strategy_file_changed(make_config, tmp_path):
    strategy = tmp_path / "mine.toml"
    strategy.write_text(
        '[[phases]]\nname = "head"\ntrainable = ["head"]\nepochs = 1\nlr = 1e-3\nbn = "frozen"\n'
    )
    # A run id holds the strategy's content: the changed file is found through the run's name.
    config = make_config(strategy=str(strategy), phase_epochs={}, lr=None, run_name="mine")
    run(config)
    (config.run_dir / "status.json").write_text('{"status": "running"}')  # as if it had been killed
    strategy.write_text(strategy.read_text().replace("epochs = 1", "epochs = 2"))
    with pytest.raises(TrainingError, match=r"the strategy '.*mine.toml' changed since this run started"):
        run(config)
