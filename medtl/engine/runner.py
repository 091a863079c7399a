"""``run(config)``: the one entry point that trains a RunConfig and writes its run directory.

The CLI (``medtl finetune``) and sweeps call only this. Everything the user gave is checked before
anything is written (the objective checks the store); the run directory then holds
``config.toml``, ``status.json``, ``metrics.json`` (``RunMetrics``), ``checkpoints/{best,last}
.safetensors``, ``checkpoints/resume.pt`` and ``tb/``. Running the same config again resumes an
interrupted run, or returns the result of a finished one.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Sequence
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtl.data.splits import default_split_path, few_shot, load_split, make_fraction_split
from medtl.data.transforms import build_transforms, has_augmentation, split_augment
from medtl.engine.callbacks import Callback, ProgressCallback, TensorBoardCallback
from medtl.engine.distributed import DistInfo, EpochSampler, barrier, init_distributed
from medtl.engine.energy import kwh
from medtl.engine.evaluation import evaluate_loader
from medtl.engine.guards import (
    changed_since_start,
    check_identity,
    check_phases,
    check_split,
    end_status,
    record_identity,
    record_verified,
    terminated_as_interrupt,
    verify_store,
    write_failure,
)
from medtl.engine.inputs import LoaderSettings, TrainData, batches, reference_inputs
from medtl.engine.predictions import PREDICTIONS_FILE, per_sample, write_predictions
from medtl.engine.record import METRICS_FILE, DataRecord, RunMetrics
from medtl.engine.run_config import CONFIG_FILE, RunConfig
from medtl.engine.runtime import resolve_device
from medtl.engine.state import read_status, seed_everything, write_status
from medtl.engine.trainer import NonFiniteLoss, Trainer
from medtl.errors import ConfigError, InputError, TrainingError
from medtl.io.locks import exclusive
from medtl.io.store import Store, store_identity
from medtl.models import LoadReport, load_init, load_model_weights
from medtl.objectives import get_objective, objective_class
from medtl.objectives.base import Objective, PartitionMetrics
from medtl.progress import NULL_PROGRESS, Progress
from medtl.strategies import Strategy, get_strategy, override_epochs, scale_epochs, with_base_lr

# Fixed seed of the split made when the store has no split file: every run of a store is tested on
# the same samples whatever its own seed.
AUTO_SPLIT_SEED = 0
AUTO_SPLIT = {"val": 0.1, "test": 0.2}
GENERATED = "generated"  # how metrics.json names a split made by the run itself
# Fields naming files (the run id holds their content): how an error names each.
FILE_FIELDS = {
    "data": "the store {}",
    "split": "the split file {}",
    "init": "the checkpoint {}",
    "strategy": "the strategy '{}'",
}


@dataclass(frozen=True)
class RunResult:
    """What a run produced: its directory and its ``metrics.json`` record (small and picklable: a
    sweep job returns it). The weights are in the run's checkpoints (``load_run``)."""

    run_dir: Path
    metrics: RunMetrics
    resumed: bool = False

    @property
    def run_id(self) -> str:
        return self.metrics.run_id


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
        labels = objective_class(config.objective.kind).learns_labels
        split = make_fraction_split(store, seed=AUTO_SPLIT_SEED, labels=labels, **AUTO_SPLIT)
        source = f"{GENERATED} (val {AUTO_SPLIT['val']}, test {AUTO_SPLIT['test']}, seed {AUTO_SPLIT_SEED})"
    if config.fraction < 1:
        split = few_shot(split, store, config.fraction, seed=config.seed)
    if len(split["train"]) == 0:
        raise InputError(config.split or store.path, "the split has no training samples")
    return {k: np.asarray(split[k], dtype=np.int64) for k in ("train", "val", "test")}, source


def _checked_run_dir(config: RunConfig) -> tuple[Path, RunConfig | None]:
    """The run directory, refusing one that holds a run of a different config."""
    run_dir = config.run_dir
    saved_path = run_dir / CONFIG_FILE
    if not saved_path.is_file():
        return run_dir, None
    saved = RunConfig.load(saved_path)
    differing = config.differing_keys(saved)
    mine, theirs = config.result_fields(), saved.result_fields()
    for key in differing:
        if key in FILE_FIELDS and mine[key] == theirs[key]:  # the same file, with other content
            raise changed_since_start(run_dir, FILE_FIELDS[key].format(mine[key]))
    if differing:
        raise TrainingError(
            f"{run_dir}: holds a run with a different config (differs in: {', '.join(differing)})",
            hint="resume with the saved config.toml, or choose another --run-name / --out",
        )
    return run_dir, saved


def _device(config: RunConfig) -> tuple[torch.device, DistInfo]:
    device = resolve_device(config.device)
    dist = init_distributed(device)
    if device.type == "cuda" and dist.enabled:
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    return device, dist


def _in_chans(config: RunConfig, store: Store) -> int:
    store_chans = int(store.shape[0])
    in_chans = config.in_chans or store_chans
    if in_chans != store_chans and store_chans != 1:
        raise ConfigError(
            f"in_chans {in_chans} does not fit {store.path} ({store_chans}-channel images); "
            "only 1-channel images can be repeated to more channels"
        )
    return in_chans


def _check_input_normalise(config: RunConfig, model: torch.nn.Module) -> None:
    """A model with a frozen part fitted to inputs of one normalisation (an Adaptor trained on
    embeddings of images normalised so) must see images normalised the same way."""
    expected = getattr(model, "input_normalise", None)
    if expected is not None and expected != config.normalise:
        raise ConfigError(
            f"{config.init}: its frozen encoder's features were made from images normalised "
            f"'{expected}'; this run normalises '{config.normalise}' (use --normalise {expected})"
        )


def _train_data(
    config: RunConfig, store: Store, partitions: dict[str, np.ndarray], in_chans: int, device: torch.device
) -> TrainData:
    if device.type == "cuda":
        loader_augment, device_augment = split_augment(config.augment)
    else:
        loader_augment, device_augment = config.augment, []
    size, normalise = config.image_size, config.normalise
    return TrainData(
        store=store,
        partitions=partitions,
        train_transform=build_transforms(
            True, size=size, augment=loader_augment, normalise=normalise, in_chans=in_chans
        ),
        eval_transform=build_transforms(False, size=size, normalise=normalise, in_chans=in_chans),
        device_augment=list(device_augment),
        augmenting=has_augmentation(config.augment),
    )


@dataclass
class _Inputs:
    """What a run checked before writing anything."""

    store: Store
    objective: Objective
    partitions: dict[str, np.ndarray]
    split_source: str
    leakage: dict[str, Any] | None
    strategy: Strategy
    in_chans: int


def _check_inputs(config: RunConfig) -> _Inputs:
    store = Store(config.data)
    objective = get_objective(config.objective)
    objective.check(store)
    partitions, split_source = resolve_split(config, store)
    leakage = check_split(
        store, partitions, split_source, allow_leakage=config.allow_leakage, labels=objective.learns_labels
    )
    strategy = resolve_strategy(config)
    in_chans = _in_chans(config, store)
    return _Inputs(store, objective, partitions, split_source, leakage, strategy, in_chans)


def run(
    config: RunConfig, *, progress: Progress = NULL_PROGRESS, callbacks: Sequence[Callback] = ()
) -> RunResult:
    """Train ``config`` (or resume it) and evaluate it; see the module docstring. ``callbacks`` are
    called besides the progress and TensorBoard ones, on every process. Once the inputs are checked,
    the main process holds the run directory's lock: a second command on it fails at once (or
    waits, ``wait``)."""
    device, dist = _device(config)
    inputs = _check_inputs(config)  # before anything is written
    # A new run builds its model first: an init that cannot be used (an unfinished run, another
    # encoder) is refused before the lock file (and so the output folder) is made. An existing run
    # builds it under the lock, once it is known not to be finished.
    built = None if config.run_dir.exists() else _initialised_model(config, inputs, device, progress)
    lock = exclusive(config.run_dir, wait=config.wait, what="run") if dist.is_main else nullcontext()
    with lock:
        return _run(config, inputs, built, device, dist, progress, callbacks)


def _initialised_model(
    config: RunConfig, inputs: _Inputs, device: torch.device, progress: Progress
) -> tuple[Any, LoadReport]:
    """The objective's model with every strategy phase resolved on it, initialised from config.init."""
    seed_everything(config.seed)
    model = inputs.objective.build_model(
        backbone=config.backbone,
        in_chans=inputs.in_chans,
        module=inputs.strategy.module,
        truncate=inputs.strategy.truncate,
        image_size=config.image_size or int(inputs.store.shape[-1]),
        init=config.init,
    )
    check_phases(model, inputs.strategy)
    _check_input_normalise(config, model)
    report = load_init(
        model,
        config.init,
        allow_partial=config.allow_partial,
        weights_dir=config.weights_dir,
        min_loaded_fraction=config.min_loaded_fraction,
    )
    progress.message(report.summary())
    model.to(device)
    return model, report


def _run(
    config: RunConfig,
    inputs: _Inputs,
    built: tuple[Any, LoadReport] | None,
    device: torch.device,
    dist: DistInfo,
    progress: Progress,
    callbacks: Sequence[Callback],
) -> RunResult:
    store, objective, strategy = inputs.store, inputs.objective, inputs.strategy
    partitions, in_chans = inputs.partitions, inputs.in_chans
    run_dir, saved = _checked_run_dir(config)
    identity = config.identity()
    if saved is not None:
        fields = config.result_fields()
        files = {key: what.format(fields[key]) for key, what in FILE_FIELDS.items() if fields.get(key)}
        check_identity(run_dir, identity, files)
    if saved is not None and read_status(run_dir) == "completed" and (run_dir / METRICS_FILE).is_file():
        return RunResult(run_dir, RunMetrics.load(run_dir / METRICS_FILE), resumed=True)
    if dist.is_main:  # the other processes read the same files: the quick check is enough there
        verified = verify_store(store, run_dir if saved else None, full=config.verify, progress=progress)
    else:
        verified = verify_store(store, run_dir, full=False)

    model, report = built or _initialised_model(config, inputs, device, progress)
    objective.setup(store, partitions["train"], device)
    data = _train_data(config, store, partitions, in_chans, device)

    # -- the run directory ----------------------------------------------------------------------
    if dist.is_main:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        config.save(run_dir / CONFIG_FILE)
        record_identity(run_dir, identity)
        if verified == "full":
            record_verified(store, run_dir)
        write_status(run_dir, "running", run_id=config.run_id())
    barrier(dist)
    hooks: list[Callback] = []
    if dist.is_main:
        hooks += [ProgressCallback(progress, objective.monitor), TensorBoardCallback(run_dir / "tb")]
    hooks += list(callbacks)
    # save_model adds the model's build spec; these say how to read its outputs.
    metadata = {"run_id": config.run_id(), "objective": objective.kind, **objective.model_metadata()}
    trainer = Trainer(
        config,
        objective=objective,
        model=model,
        strategy=strategy,
        data=data,
        device=device,
        dist=dist,
        run_dir=run_dir,
        callbacks=hooks,
        checkpoint_metadata=metadata,
    )
    details = {
        "split_source": inputs.split_source,
        "init_report": report.summary(),
        "leakage": inputs.leakage,
    }
    return _train(config, trainer, progress, **details)


def _train(
    config: RunConfig,
    trainer: Trainer,
    progress: Progress,
    *,
    split_source: str,
    init_report: str,
    leakage: dict[str, Any] | None,
) -> RunResult:
    """Fit (resuming when there is a resume state), test, and record; failures are written to
    status.json ("interrupted" for Ctrl-C and SIGTERM, resumable), a non-finite loss keeps the last
    good weights, a checkpoint that cannot be written (full disk) is one line."""
    run_dir, dist = trainer.checkpoints.dir.parent, trainer.dist
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    t_start = time.monotonic()
    try:
        with terminated_as_interrupt():
            _set_determinism(config.deterministic, trainer.device)
            resumed = trainer.restore()
            if resumed:
                progress.message(
                    f"resuming {run_dir} after {len(trainer.state.history)} epochs "
                    f"(phase {trainer.state.phase_index + 1} of {len(trainer.strategy.phases)})"
                )
            trainer.fit()
            wall = time.monotonic() - t_start
            record = _finish(config, trainer, split_source, init_report, wall, leakage=leakage)
    except NonFiniteLoss as exc:
        trainer.keep_last_good()
        message = f"{run_dir}: {exc}; the last good weights are in checkpoints/last.safetensors"
        if dist.is_main:
            write_status(run_dir, "failed", error=message)
        raise TrainingError(message, hint="lower the learning rate or check the inputs for NaN") from None
    except BaseException as exc:
        if dist.is_main:
            with suppress(OSError):  # the disk may be what is full
                write_status(run_dir, end_status(exc), error=f"{type(exc).__name__}: {exc}")
        failure = write_failure(exc, run_dir)
        if failure is not None:
            raise failure from exc
        raise
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
        for cb in trainer.callbacks:
            cb.close()
    return RunResult(run_dir, record, resumed=resumed)


def _set_determinism(deterministic: bool, device: torch.device) -> None:
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not deterministic


def evaluate_partition(
    objective: Objective,
    trainer: Trainer,
    name: str,
    *,
    bootstrap: int,
    seed: int,
    predictions: Path | None = None,
) -> PartitionMetrics | None:
    """Metrics of one partition with the model's current weights, with patient bootstrap CIs;
    ``predictions``: also write the per-sample outputs there (``predictions_test.npz``)."""
    data, config = trainer.data, trainer.config
    idx = data.partitions[name]
    if len(idx) == 0:
        return None
    settings = LoaderSettings(config.batch_size, config.num_workers, trainer.device.type == "cuda")
    dataset = objective.dataset(data.store, idx, data.eval_transform)
    loader = batches(dataset, EpochSampler(len(idx), shuffle=False), settings, train=False)
    reference = reference_inputs(
        objective, trainer.model, data, epoch=None, settings=settings, precision=trainer.precision
    )
    result = evaluate_loader(
        objective, trainer.model, loader, precision=trainer.precision, final=True, reference=reference
    )
    objective.write_outputs(result.metric, trainer.checkpoints.dir.parent, name)
    groups = data.store.patient_ids[idx]
    if predictions is not None:
        values = per_sample(result.metric)
        if values is not None:
            write_predictions(predictions, idx, groups, values)
    return objective.summarise(result.metric, loss=result.loss, groups=groups, bootstrap=bootstrap, seed=seed)


def _finish(
    config: RunConfig,
    trainer: Trainer,
    split_source: str,
    init_report: str,
    wall: float,
    *,
    leakage: dict[str, Any] | None = None,
) -> RunMetrics:
    """Test with the best weights, write metrics.json and status.json (rank 0; the other processes
    read the record rank 0 wrote)."""
    run_dir, dist, objective = trainer.checkpoints.dir.parent, trainer.dist, trainer.objective
    if not dist.is_main:
        barrier(dist)
        return RunMetrics.load(run_dir / METRICS_FILE)
    ckpt = run_dir / "checkpoints"
    if not (ckpt / "best.safetensors").is_file():  # the monitored metric was never defined
        shutil.copyfile(ckpt / "last.safetensors", ckpt / "best.safetensors")
    last = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    load_model_weights(trainer.model, ckpt / "best.safetensors")
    val = evaluate_partition(objective, trainer, "val", bootstrap=0, seed=config.seed)
    test = evaluate_partition(
        objective,
        trainer,
        "test",
        bootstrap=config.bootstrap,
        seed=config.seed,
        predictions=run_dir / PREDICTIONS_FILE,
    )
    trainer.model.load_state_dict(last)
    record = _record(config, trainer, split_source, init_report, wall, val=val, test=test, leakage=leakage)
    record.save(run_dir / METRICS_FILE)
    write_status(run_dir, "completed", run_id=config.run_id())
    barrier(dist)
    return record


def _record(
    config: RunConfig,
    trainer: Trainer,
    split_source: str,
    init_report: str,
    wall: float,
    *,
    val: PartitionMetrics | None,
    test: PartitionMetrics | None,
    leakage: dict[str, Any] | None = None,
) -> RunMetrics:
    state, objective, store = trainer.state, trainer.objective, trainer.data.store
    total_j = sum(p["energy_j"] for p in state.phases)
    data = DataRecord(
        store=str(config.data),
        checksum=store.checksum,
        identity=store_identity(store.path),
        split=split_source,
        counts={k: len(v) for k, v in trainer.data.partitions.items()},
        leakage=leakage,
    )
    return RunMetrics.model_validate(
        {
            "run_id": config.run_id(),
            "objective": objective.kind,
            **objective.describe(),
            "backbone": config.backbone,
            "init": config.init,
            "init_report": init_report,
            "strategy": config.strategy,
            "data": data,
            "monitor": objective.monitor,
            "best": state.best,
            "phases": state.phases,
            "history": state.history,
            "val": val,
            "test": test,
            "energy": {**trainer.meter.describe(), "energy_j": total_j, "kwh": kwh(total_j)},
            "wall_time_s": sum(p["wall_time_s"] for p in state.phases),
            "last_session_wall_time_s": wall,
        }
    )
