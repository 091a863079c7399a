"""``run(config)``: the one entry point that trains a RunConfig and writes its run directory.

The CLI (``medtl finetune``) and sweeps call only this. Everything the user gave is checked before
anything is written; the run directory then holds ``config.toml``, ``status.json``, ``metrics.json``,
``checkpoints/{best,last}.safetensors``, ``checkpoints/resume.pt`` and ``tb/``. Running the same
config again resumes an interrupted run, or returns the result of a finished one.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtl.data.dataset import StoreDataset
from medtl.data.splits import default_split_path, few_shot, load_split, make_fraction_split
from medtl.data.transforms import build_transforms, has_augmentation, split_augment
from medtl.engine.callbacks import Callback, ProgressCallback, TensorBoardCallback
from medtl.engine.distributed import EpochSampler, barrier, init_distributed
from medtl.engine.losses import TaskKind, class_weights, infer_task, make_loss, num_outputs
from medtl.engine.run_config import CONFIG_FILE, RunConfig
from medtl.engine.state import (
    METRICS_FILE,
    read_json,
    read_status,
    seed_everything,
    write_json,
    write_status,
)
from medtl.engine.trainer import NonFiniteLoss, TrainData, Trainer
from medtl.errors import ConfigError, InputError, TrainingError, UnknownChoiceError
from medtl.io.store import Store
from medtl.metrics import SCALAR_METRICS, bootstrap_metrics, classification_metrics
from medtl.models import TransferModel, build_model, load_init, load_model_weights
from medtl.progress import NULL_PROGRESS, Progress
from medtl.strategies import Strategy, get_strategy, override_epochs, scale_epochs, with_base_lr

log = logging.getLogger("medtl")

# Fixed seed of the split made when the store has no split file: every run of a store is tested on
# the same samples whatever its own seed.
AUTO_SPLIT_SEED = 0
AUTO_SPLIT = {"val": 0.1, "test": 0.2}
GENERATED = "generated"  # how metrics.json names a split made by the run itself


@dataclass
class RunResult:
    """What a run produced. ``model`` holds the weights of the last epoch (the best ones, which
    ``test`` was measured with, are in ``checkpoints/best.safetensors``); it is None when the run had
    already completed and nothing was trained."""

    run_dir: Path
    run_id: str
    status: str
    task: str
    class_names: list[str]
    phases: list[dict[str, Any]]
    history: list[dict[str, Any]]
    best: dict[str, Any] | None
    val: dict[str, Any] | None
    test: dict[str, Any] | None
    metrics: dict[str, Any] = field(repr=False)
    model: TransferModel | None = field(default=None, repr=False)
    resumed: bool = False


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def resolve_strategy(config: RunConfig) -> Strategy:
    """The config's strategy with its epoch scale, per-phase epochs and base lr applied."""
    strategy = get_strategy(config.strategy)
    if config.epochs_scale != 1:
        strategy = scale_epochs(strategy, config.epochs_scale)
    if config.phase_epochs:
        strategy = override_epochs(strategy, config.phase_epochs)
    if config.lr is not None:
        strategy = with_base_lr(strategy, config.lr)
    return strategy


def resolve_split(
    config: RunConfig, store: Store, *, recorded: str | None = None
) -> tuple[dict[str, np.ndarray], str]:
    """The run's train/val/test indices and where they came from.

    ``recorded`` is the split source a run wrote to metrics.json; it wins, so evaluating a finished
    run uses its own partitions even if a split file was made later. Then ``config.split``, the store's
    default split file, else a seeded generated split; ``config.fraction`` takes few-shot subsets.
    """
    default = default_split_path(store.path)
    path = None
    if recorded is not None and not recorded.startswith(GENERATED):
        path = Path(recorded)
    elif recorded is None:
        path = config.split if config.split is not None else default if default.is_file() else None
    if path is not None:
        split = load_split(path, store)
        source = str(path)
    else:
        split = make_fraction_split(store, seed=AUTO_SPLIT_SEED, **AUTO_SPLIT)
        source = f"{GENERATED} (val {AUTO_SPLIT['val']}, test {AUTO_SPLIT['test']}, seed {AUTO_SPLIT_SEED})"
    if config.fraction < 1:
        split = few_shot(split, store, config.fraction, seed=config.seed)
    if len(split["train"]) == 0:
        raise InputError(config.split or store.path, "the split has no training samples")
    return {k: np.asarray(split[k], dtype=np.int64) for k in ("train", "val", "test")}, source


def _check_monitor(config: RunConfig) -> None:
    valid = ("loss", *SCALAR_METRICS, "sensitivity", "specificity", "label_accuracy")
    if config.monitor not in valid:
        raise UnknownChoiceError("monitor metric", config.monitor, valid)


def _checked_run_dir(config: RunConfig) -> tuple[Path, RunConfig | None]:
    """The run directory, refusing one that holds a run of a different config."""
    run_dir = config.run_dir
    saved_path = run_dir / CONFIG_FILE
    if not saved_path.is_file():
        return run_dir, None
    saved = RunConfig.load(saved_path)
    differing = config.differing_keys(saved)
    if differing:
        raise TrainingError(
            f"{run_dir}: holds a run with a different config (differs in: {', '.join(differing)})",
            hint="resume with the saved config.toml, or choose another --run-name / --out",
        )
    return run_dir, saved


def run(config: RunConfig, *, progress: Progress = NULL_PROGRESS) -> RunResult:
    """Train ``config`` (or resume it) and evaluate it; see the module docstring."""
    _check_monitor(config)
    device = resolve_device(config.device)
    dist = init_distributed(device)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)

    # -- check every input before writing anything ----------------------------------------------
    store = Store(config.data)
    task = infer_task(store.task, store.num_classes, config.task, store.path)
    if store.labels is None:
        raise InputError(store.path, "has no labels (labels.npy); a classifier needs labelled samples")
    partitions, split_source = resolve_split(config, store)
    strategy = resolve_strategy(config)
    store_chans = int(store.shape[0])
    in_chans = config.in_chans or store_chans
    if in_chans != store_chans and store_chans != 1:
        raise ConfigError(
            f"in_chans {in_chans} does not fit {store.path} ({store_chans}-channel images); "
            "only 1-channel images can be repeated to more channels"
        )
    run_dir, saved = _checked_run_dir(config)
    if saved is not None and read_status(run_dir) == "completed" and (run_dir / METRICS_FILE).is_file():
        return _completed_result(config, run_dir)

    seed_everything(config.seed)
    model = build_model(
        config.backbone,
        num_outputs(task, store.num_classes),
        in_chans=in_chans,
        module=strategy.module,
        truncate=strategy.truncate,
        image_size=config.image_size or int(store.shape[-1]),
    )
    report = load_init(model, config.init, allow_partial=config.allow_partial, weights_dir=config.weights_dir)
    progress.message(report.summary())
    model.to(device)

    train_labels = np.asarray(store.labels[partitions["train"]])
    weights = class_weights(config.class_weights, task, train_labels, store.num_classes)
    loss_fn = make_loss(task, weights, config.label_smoothing)
    if device.type == "cuda":
        loader_augment, device_augment = split_augment(config.augment)
    else:
        loader_augment, device_augment = config.augment, []
    data = TrainData(
        store=store,
        partitions=partitions,
        train_transform=build_transforms(
            True,
            size=config.image_size,
            augment=loader_augment,
            normalise=config.normalise,
            in_chans=in_chans,
        ),
        eval_transform=build_transforms(
            False, size=config.image_size, normalise=config.normalise, in_chans=in_chans
        ),
        device_augment=list(device_augment),
        augmenting=has_augmentation(config.augment),
    )

    # -- the run directory ----------------------------------------------------------------------
    if dist.is_main:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        config.save(run_dir / CONFIG_FILE)
        write_status(run_dir, "running", run_id=config.run_id())
    barrier(dist)
    callbacks: list[Callback] = [ProgressCallback(progress)] if dist.is_main else []
    if dist.is_main:
        callbacks.append(TensorBoardCallback(run_dir / "tb"))
    # save_model adds the model's build spec; these say how to read its outputs.
    metadata = {"run_id": config.run_id(), "task": task, "class_names": json.dumps(store.class_names)}
    trainer = Trainer(
        config,
        model=model,
        strategy=strategy,
        task=task,
        class_names=store.class_names,
        loss_fn=loss_fn,
        data=data,
        device=device,
        dist=dist,
        run_dir=run_dir,
        callbacks=callbacks,
        checkpoint_metadata=metadata,
    )
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    t_start = time.monotonic()
    try:
        _set_determinism(config.deterministic, device)
        resumed = trainer.restore(store.checksum)
        if resumed:
            progress.message(
                f"resuming {run_dir} after {len(trainer.state.history)} epochs "
                f"(phase {trainer.state.phase_index + 1} of {len(strategy.phases)})"
            )
        state = trainer.fit()
        metrics = _finish(config, trainer, task, split_source, report.summary(), time.monotonic() - t_start)
    except NonFiniteLoss as exc:
        trainer.keep_last_good()
        message = f"{run_dir}: {exc}; the last good weights are in checkpoints/last.safetensors"
        if dist.is_main:
            write_status(run_dir, "failed", error=message)
        raise TrainingError(message, hint="lower the learning rate or check the inputs for NaN") from None
    except BaseException as exc:
        if dist.is_main:
            write_status(run_dir, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
        for cb in callbacks:
            cb.close()
    return RunResult(
        run_dir=run_dir,
        run_id=config.run_id(),
        status="completed",
        task=task,
        class_names=store.class_names,
        phases=state.phases,
        history=state.history,
        best=state.best,
        val=metrics.get("val"),
        test=metrics.get("test"),
        metrics=metrics,
        model=model,
        resumed=resumed,
    )


def _set_determinism(deterministic: bool, device: torch.device) -> None:
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic


def _evaluate_partition(trainer: Trainer, name: str, *, bootstrap: int, seed: int) -> dict[str, Any] | None:
    """Full metrics of one partition with the current weights, with bootstrap 95% CIs when asked."""
    idx = trainer.data.partitions[name]
    if len(idx) == 0:
        return None
    dataset = StoreDataset(trainer.data.store, idx, trainer.data.eval_transform)
    loader = trainer._loader(dataset, EpochSampler(len(idx), shuffle=False), train=False)
    loss, scores, targets = trainer.predict(loader, trainer.model)
    metrics = classification_metrics(targets, scores, trainer.task, trainer.class_names)
    metrics["loss"] = loss
    if bootstrap:
        groups = trainer.data.store.patient_ids[idx]
        ci = bootstrap_metrics(targets, scores, trainer.task, n=bootstrap, seed=seed, groups=groups)
        metrics["ci95"] = {k: list(v) for k, v in ci.items()}
    return metrics


def _finish(
    config: RunConfig, trainer: Trainer, task: TaskKind, split_source: str, init_report: str, wall: float
) -> dict[str, Any]:
    """Test with the best weights, write metrics.json and status.json (rank 0)."""
    run_dir, state, dist = trainer.run_dir, trainer.state, trainer.dist
    ckpt = run_dir / "checkpoints"
    metrics: dict[str, Any] = {}
    if dist.is_main:
        if not (ckpt / "best.safetensors").is_file():  # the monitored metric was never defined
            shutil.copyfile(ckpt / "last.safetensors", ckpt / "best.safetensors")
        last = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
        load_model_weights(trainer.model, ckpt / "best.safetensors")
        val = _evaluate_partition(trainer, "val", bootstrap=0, seed=config.seed)
        test = _evaluate_partition(trainer, "test", bootstrap=config.bootstrap, seed=config.seed)
        trainer.model.load_state_dict(last)
        energy = trainer.meter.describe()
        total_j = sum(p["energy_j"] for p in state.phases)
        metrics = {
            "run_id": config.run_id(),
            "task": task,
            "class_names": trainer.class_names,
            "backbone": config.backbone,
            "init": config.init,
            "init_report": init_report,
            "strategy": config.strategy,
            "data": {
                "store": str(config.data),
                "checksum": trainer.data.store.checksum,
                "split": split_source,
                "counts": {k: len(v) for k, v in trainer.data.partitions.items()},
            },
            "monitor": config.monitor,
            "best": state.best,
            "phases": state.phases,
            "history": state.history,
            "val": val,
            "test": test,
            "energy": {**energy, "energy_j": total_j, "kwh": total_j / 3.6e6},
            "wall_time_s": sum(p["wall_time_s"] for p in state.phases),
            "last_session_wall_time_s": wall,
        }
        write_json(run_dir / METRICS_FILE, metrics)
        write_status(run_dir, "completed", run_id=config.run_id())
    barrier(dist)
    return metrics


def _completed_result(config: RunConfig, run_dir: Path) -> RunResult:
    """The result of a run that already completed (same config): nothing is retrained."""
    metrics = read_json(run_dir / METRICS_FILE)
    return RunResult(
        run_dir=run_dir,
        run_id=config.run_id(),
        status="completed",
        task=metrics["task"],
        class_names=metrics["class_names"],
        phases=metrics["phases"],
        history=metrics["history"],
        best=metrics["best"],
        val=metrics.get("val"),
        test=metrics.get("test"),
        metrics=metrics,
        model=None,
        resumed=True,
    )
