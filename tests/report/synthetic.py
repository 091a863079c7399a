"""Synthetic run folders in the layout ``medtl finetune`` writes, for report tests and benchmarks.

Scores are drawn per run (strategy decides the signal, seed the noise); every metric in
metrics.json is computed from them with medtl.metrics, so the report's recomputations must agree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tomli_w

from medtl.metrics import bootstrap_metrics, classification_metrics

SIGNAL = {"linear": 0.6, "l1sb": 1.4, "progressive": 1.8, "full": 2.2, "l2sb": 1.6}
PARAMS = {"linear": 513, "l1sb": 2_360_321, "l2sb": 3_540_993, "progressive": 11_170_753, "full": 11_177_538}


def make_test_set(patients: int = 24, per_patient: int = 4, seed: int = 123) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 2, patients)
    label[:2] = [0, 1]
    return {
        "index": np.arange(patients * per_patient, dtype=np.int64),
        "patient": np.repeat([f"BraTS20_Training_{i + 1:03d}" for i in range(patients)], per_patient),
        "target": np.repeat(label, per_patient),
    }


def scores_for(strategy: str, seed: int, target: np.ndarray, patient: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng([seed, sum(map(ord, strategy))])
    # A shared patient effect makes slices of one patient correlated, as in a real store.
    _, which = np.unique(patient, return_inverse=True)
    patient_effect = np.random.default_rng(99).standard_normal(which.max() + 1)[which]
    logit = (
        SIGNAL.get(strategy, 1.0) * (2 * target - 1) + 0.8 * patient_effect + rng.standard_normal(len(target))
    )
    return 1 / (1 + np.exp(-logit))


def write_run(
    root: Path,
    *,
    strategy: str,
    seed: int,
    init: str = "random",
    store: str = "brats",
    fraction: float = 1.0,
    status: str = "completed",
    objective_task: str = "binary",
    predictions: bool = True,
    robustness: bool = False,
    external: bool = False,
    epochs: int = 6,
    test: dict[str, np.ndarray] | None = None,
    run_id: str | None = None,
) -> Path:
    """One run folder under ``root``; returns it."""
    test = test if test is not None else make_test_set()
    run_id = run_id or f"{store}-{init}-{strategy}-f{fraction:g}-s{seed}"
    run_dir = root / run_id
    run_dir.mkdir(parents=True)
    config = {
        "data": f"/stores/{store}",
        "backbone": "resnet18",
        "init": init,
        "strategy": strategy,
        "fraction": fraction,
        "seed": seed,
        "epochs_scale": 0.1,
        "batch_size": 32,
    }
    (run_dir / "config.toml").write_text(tomli_w.dumps(config))
    if status != "completed":
        extra = {"error": f"TrainingError: {run_id}: loss is NaN at epoch 2"} if status == "failed" else {}
        (run_dir / "status.json").write_text(json.dumps({"status": status, "run_id": run_id, **extra}))
        return run_dir
    score = scores_for(strategy, seed + int(fraction * 1000), test["target"], test["patient"])
    metrics = _metrics(run_id, config, test, score, epochs, objective_task)
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    (run_dir / "status.json").write_text(json.dumps({"status": "completed", "run_id": run_id}))
    if predictions:
        np.savez(run_dir / "predictions_test.npz", **test, score=score)
    if robustness or external:
        _evaluations(run_dir, test, score, robustness, external)
    return run_dir


def _metrics(run_id, config, test, score, epochs, task) -> dict[str, Any]:
    strategy, seed = config["strategy"], config["seed"]
    test_metrics = classification_metrics(test["target"], score, "binary", ["LGG", "HGG"])
    ci = bootstrap_metrics(test["target"], score, "binary", n=50, seed=seed, groups=test["patient"])
    test_metrics["ci95"] = {k: list(v) for k, v in ci.items()}
    final = test_metrics["auroc"]
    history = [
        {
            "phase": "p1",
            "global_epoch": e,
            "epoch": e,
            "train_loss": 0.7 - 0.05 * e,
            "val_auroc": 0.5 + (final - 0.5) * (1 - np.exp(-(e + 1) / 2)),
            "val_loss": 0.7 - 0.04 * e,
        }
        for e in range(epochs)
    ]
    params = PARAMS.get(strategy, 1000)
    wall = 5.0 + params / 2e5 + seed
    kwh = wall * 10 / 3.6e6
    return {
        "run_id": run_id,
        "task": task,
        "class_names": ["LGG", "HGG"],
        "backbone": config["backbone"],
        "init": config["init"],
        "strategy": strategy,
        "data": {"store": config["data"], "checksum": "sha256:x", "split": "generated", "counts": {}},
        "phases": [
            {
                "name": "p1",
                "trainable_params": params,
                "total_params": 11_177_538,
                "kwh": kwh,
                "wall_time_s": wall,
            }
        ],
        "history": history,
        "val": {"auroc": final, "loss": 0.5},
        "test": test_metrics,
        "energy": {"method": "cpu-time-estimate", "kwh": kwh, "energy_j": kwh * 3.6e6},
        "wall_time_s": wall,
    }


def _evaluations(run_dir, test, score, robustness, external) -> None:
    from medtl.metrics.classification import binary_auroc

    clean = binary_auroc(test["target"], score)
    if robustness:
        rows = [{"corruption": "clean", "severity": 0, "auroc": clean, "drop": 0.0}]
        for name, rate in (("gaussian_noise", 0.06), ("motion_blur", 0.03), ("contrast", 0.015)):
            for s in range(1, 6):
                value = max(0.5, clean - rate * s)
                rows.append({"corruption": name, "severity": s, "auroc": value, "drop": clean - value})
        data = {
            "external": False,
            "metrics": {"auroc": clean},
            "robustness": {"metric": "auroc", "rows": rows},
        }
        (run_dir / "evaluation_brats-test.json").write_text(json.dumps(data))
    if external:
        data = {"external": True, "metrics": {"auroc": clean - 0.08}, "robustness": None}
        (run_dir / "evaluation_ce_mri-all.json").write_text(json.dumps(data))


def write_sweep(
    root: Path,
    strategies: Sequence[str] = ("linear", "l1sb", "progressive", "full"),
    seeds: Sequence[int] = (0, 1),
    **kwargs: Any,
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for strategy in strategies:
        for seed in seeds:
            write_run(root, strategy=strategy, seed=seed, **kwargs)
    (root / "sweep.toml").write_text(
        'name = "synthetic"\n[grid]\nstrategy = '
        + json.dumps(list(strategies))
        + "\nseed = "
        + json.dumps(list(seeds))
        + "\n"
    )
    return root
