"""The phase and epoch loop behind ``run``: training, validation, checkpoints, resume, early stopping.

Checkpoints. ``last.safetensors`` holds the whole model at every phase start and end; the resume
state ``resume.pt``, written after an epoch when ``checkpoint_interval`` seconds have passed since the
last write and at every phase end, holds only what the current phase can change (its
trainable parameters and all buffers) plus optimiser, schedule, RNG and bookkeeping. Parameters a
phase does not train are constant within it, so ``last.safetensors`` + ``resume.pt`` rebuild the
model exactly, and a head-only phase on cached features does not write the backbone every epoch.
``best.safetensors`` (best validation ``monitor`` over the whole run) is written when its phase ends.

Reproducibility. Every epoch reseeds python, numpy, torch and the sample order from
(seed, phase, epoch), so a resumed run draws the same batches and augmentations as one that was
never interrupted, whatever the number of DataLoader workers.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, TensorDataset

from medtl.data.dataset import StoreDataset, make_loader
from medtl.data.transforms import batch_augment
from medtl.engine.callbacks import Callback
from medtl.engine.distributed import DistInfo, EpochSampler, all_reduce_sum, barrier
from medtl.engine.energy import EnergyMeter, kwh
from medtl.engine.features import extract_features
from medtl.engine.losses import TaskKind, scores_from_logits
from medtl.engine.optim import PhaseSchedule, build_optimizer
from medtl.engine.run_config import RunConfig
from medtl.engine.state import (
    RESUME_FILE,
    load_resume,
    rng_state,
    save_resume,
    seed_everything,
    set_rng_state,
)
from medtl.errors import TrainingError
from medtl.io.store import Store
from medtl.metrics import classification_metrics
from medtl.models import TransferModel, load_model_weights, save_model
from medtl.strategies import (
    ResolvedPhase,
    Strategy,
    StrategyPhase,
    apply_bn_policy,
    apply_phase,
    param_groups,
)

log = logging.getLogger("medtl")

# Test hook: end the process right after the resume state of this many epochs is written.
KILL_ENV = "MEDTL_TEST_KILL_AFTER_EPOCH"


def _test_kill(epochs_done: int, point: str = "") -> None:
    """Tests set KILL_ENV to "N" (after epoch N's saves) or "N:POINT" to die there like kill -9."""
    wanted = os.environ.get(KILL_ENV)
    if wanted and wanted == (f"{epochs_done}:{point}" if point else str(epochs_done)):
        os._exit(75)


_DROPOUT_TYPES = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)


@dataclass
class TrainData:
    """What the loop trains and validates on."""

    store: Store
    partitions: dict[str, np.ndarray]
    train_transform: Callable[..., Any]
    eval_transform: Callable[..., Any]
    device_augment: list[str]  # augmentations done on the device, per batch (CUDA)
    augmenting: bool  # any augmentation of training images at all


@dataclass
class LoopState:
    """Everything that must survive an interruption besides weights and optimiser state."""

    phase_index: int = 0
    epoch: int = -1  # last completed epoch of phase_index
    phase_finished: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)
    phases: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    phase_best: float | None = None
    bad_epochs: int = 0
    phase_wall: float = 0.0
    phase_energy: float = 0.0
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's base seed; numpy and random follow it.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    import random

    random.seed(seed)


@contextlib.contextmanager
def _cpu_threads(n: int | None):
    """Run the block with ``n`` intra-op threads (None: unchanged).

    A head trained on cached features does thousands of tiny operations; on a busy CPU, OpenMP's
    wake-ups cost more than the work (a 32-sample BCE: 9 us on one thread, ~1 ms on two).
    """
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def epoch_seed(seed: int, phase_index: int, epoch: int) -> int:
    return (seed * 1_000_003 + phase_index * 10_007 + epoch) % (2**63 - 1)


def features_are_fixed(model: TransferModel) -> bool:
    """True when everything before the head computes the same in train mode as in eval mode now."""
    head = set(map(id, model.head.modules()))
    for module in model.modules():
        if id(module) in head or not module.training:
            continue
        if isinstance(module, nn.modules.batchnorm._NormBase):
            return False
        if isinstance(module, _DROPOUT_TYPES) and module.p > 0:
            return False
        if type(module).__name__ == "DropPath" and getattr(module, "drop_prob", 0) > 0:
            return False
    return True


class Trainer:
    """Runs the phases of ``strategy`` on ``model``; rank 0 writes the run directory."""

    def __init__(
        self,
        config: RunConfig,
        *,
        model: TransferModel,
        strategy: Strategy,
        task: TaskKind,
        class_names: list[str],
        loss_fn: nn.Module,
        data: TrainData,
        device: torch.device,
        dist: DistInfo,
        run_dir: Path,
        callbacks: list[Callback],
        checkpoint_metadata: dict[str, str],
    ) -> None:
        self.config, self.model, self.strategy, self.task = config, model, strategy, task
        self.class_names, self.loss_fn, self.data = class_names, loss_fn.to(device), data
        self.device, self.dist, self.run_dir, self.callbacks = device, dist, run_dir, callbacks
        self.metadata = checkpoint_metadata
        self.ckpt_dir = run_dir / "checkpoints"
        self.state = LoopState()
        self.best_delta: dict[str, torch.Tensor] | None = None
        self.last_delta: dict[str, torch.Tensor] | None = None
        self.meter = EnergyMeter(gpu_indices=[device.index or 0] if device.type == "cuda" else None)
        self.mode = "min" if config.monitor == "loss" else "max"
        self.has_val = len(data.partitions["val"]) > 0
        self.cuda = device.type == "cuda"
        amp = config.amp if self.cuda else "none"
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
        self.scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
        self.channels_last = config.channels_last and self.cuda
        self._saved_at = time.monotonic()

    # -- helpers -----------------------------------------------------------------------------
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _loader(self, dataset: Dataset, sampler: torch.utils.data.Sampler, *, train: bool) -> DataLoader:
        workers = self.config.num_workers if isinstance(dataset, StoreDataset) else 0
        batch = self.config.batch_size
        # A last batch of one sample breaks BatchNorm in train mode; drop only that one.
        drop_last = train and len(sampler) % batch == 1 and len(sampler) > 1
        if isinstance(dataset, TensorDataset):
            # Cached features: one indexing per batch instead of per sample and a collate; the
            # batches are the ones the image loader would form from the same sampler.
            batches = BatchSampler(sampler, batch, drop_last)
            return DataLoader(dataset, sampler=batches, batch_size=None, pin_memory=self.cuda)
        # Whole batches from the store: one memory-map read per batch and no collation copy.
        return make_loader(
            dataset,
            batch_size=batch,
            sampler=sampler,
            num_workers=workers,
            pin_memory=self.cuda,
            drop_last=drop_last,
            worker_init_fn=_seed_worker,
        )

    def _track(self, names: list[str], cached: bool) -> None:
        """Remember the tensors a phase can change: its trainable parameters and the buffers (all of
        them, or the head's when only the head runs, on cached features)."""
        buffers = self.model.head.named_buffers(prefix="head") if cached else self.model.named_buffers()
        keep = set(names) | {n for n, _ in buffers}
        state = self.model.state_dict(keep_vars=True)  # references, updated in place by training
        self._changing = [(k, v) for k, v in state.items() if k in keep]

    def _delta(self) -> dict[str, torch.Tensor]:
        """A CPU copy of what the current phase can change."""
        return {k: v.detach().to("cpu", copy=True) for k, v in self._changing}

    def _save_model(self, name: str, delta: dict[str, torch.Tensor] | None = None, **meta: Any) -> None:
        """Write the model (with ``delta`` swapped in when given) as checkpoints/<name>.safetensors."""
        if not self.dist.is_main:
            return
        metadata = {**self.metadata, **{k: str(v) for k, v in meta.items()}}
        if delta is None:
            save_model(self.model, self.ckpt_dir / f"{name}.safetensors", metadata)
            return
        current = {k: v.detach().clone() for k, v in self.model.state_dict().items() if k in delta}
        self.model.load_state_dict(delta, strict=False)
        try:
            save_model(self.model, self.ckpt_dir / f"{name}.safetensors", metadata)
        finally:
            self.model.load_state_dict(current, strict=False)

    def _improved(self, value: float | None, reference: float | None) -> bool:
        if not self.has_val:
            return True  # without validation the latest weights are the best we know
        if value is None or not math.isfinite(value):
            return False
        if reference is None:
            return True
        return value < reference if self.mode == "min" else value > reference

    # -- resume ------------------------------------------------------------------------------
    def restore(self, store_checksum: str) -> bool:
        """Load the resume state when there is one; returns whether the run resumes."""
        saved = load_resume(self.ckpt_dir / RESUME_FILE)
        if saved is None:
            return False
        if saved["store_checksum"] != store_checksum:
            raise TrainingError(
                f"{self.run_dir}: the store {self.config.data} changed since this run started",
                hint="start a new run (another --out or --run-name)",
            )
        if saved["strategy"] != self.strategy.model_dump(mode="json"):
            raise TrainingError(
                f"{self.run_dir}: the strategy '{self.config.strategy}' changed since this run started",
                hint="restore the strategy file, or start a new run (another --out or --run-name)",
            )
        self.state = LoopState(**saved["loop"])
        last = self.ckpt_dir / "last.safetensors"
        load_model_weights(self.model, last)
        self.model.load_state_dict(saved["delta"], strict=False)
        self.last_delta = saved["delta"]
        self.best_delta = saved.get("best_delta")
        self._resume_blob = saved
        return True

    # -- the loop ----------------------------------------------------------------------------
    def fit(self) -> LoopState:
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        for index, phase in enumerate(self.strategy.phases):
            if index < self.state.phase_index or (
                index == self.state.phase_index and self.state.phase_finished
            ):
                continue
            self._run_phase(index, phase)
        return self.state

    def _run_phase(self, index: int, phase: StrategyPhase) -> None:
        s = self.state
        resuming = s.phase_index == index and s.epoch >= 0
        if not resuming:
            s.phase_index, s.epoch, s.phase_finished = index, -1, False
            s.phase_best, s.bad_epochs, s.phase_wall, s.phase_energy = None, 0, 0.0, 0.0
            s.stopped_early = False
        self.model.train()
        resolved = apply_phase(self.model, phase)
        t0 = time.monotonic()
        self.meter.segment()
        if not resuming:
            self._save_model("last", phase=phase.name, epoch=-1)
            self.last_delta = None
        cached = (
            self.config.cache_features
            and not self.data.augmenting
            and set(resolved.trainable_names) <= {f"head.{n}" for n, _ in self.model.head.named_parameters()}
            and features_are_fixed(self.model)
        )
        self._track(resolved.trainable_names, cached)
        loaders, forward, train_module = self._phase_inputs(cached)
        sampler = self.train_sampler
        optimizer = build_optimizer(
            phase.optimizer,
            param_groups(self.model, phase),
            lr=phase.lr,
            weight_decay=phase.weight_decay,
            momentum=phase.momentum,
        )
        steps = math.ceil(len(loaders["train"]) / self.config.grad_accum)
        c = self.config
        schedule = PhaseSchedule(
            optimizer,
            c.scheduler,
            steps_per_epoch=steps,
            epochs=phase.epochs,
            warmup_epochs=c.warmup_epochs,
            min_lr_ratio=c.min_lr_ratio,
            plateau_factor=c.plateau_factor,
            plateau_patience=c.plateau_patience,
            gamma=c.gamma,
            mode=self.mode,
        )
        if resuming:
            blob = self._resume_blob
            optimizer.load_state_dict(blob["optimizer"])
            schedule.load_state_dict(blob["schedule"])
            if self.scaler is not None and blob.get("scaler"):
                self.scaler.load_state_dict(blob["scaler"])
            set_rng_state(blob["rng"])
        for cb in self.callbacks:
            cb.on_phase_start(phase.name, epochs=phase.epochs, done=s.epoch + 1, steps=len(loaders["train"]))
        mark = time.monotonic()
        s.phase_wall += mark - t0

        with _cpu_threads(1 if cached and self.device.type == "cpu" else None):
            for epoch in range(s.epoch + 1, phase.epochs):
                t0 = time.monotonic()
                seed = epoch_seed(c.seed, index, epoch)
                seed_everything(seed)
                sampler.set_seed(seed)
                for cb in self.callbacks:
                    cb.on_epoch_start(phase.name, epoch)
                lr = optimizer.param_groups[0]["lr"]
                train_loss = self._train_epoch(
                    train_module,
                    forward,
                    loaders["train"],
                    optimizer,
                    schedule,
                    resolved,
                    cached,
                    phase,
                    epoch,
                )
                record: dict[str, Any] = {
                    "phase": phase.name,
                    "phase_index": index,
                    "epoch": epoch,
                    "global_epoch": len(s.history),
                    "cached_features": cached,
                    "lr": lr,
                    "train_loss": train_loss,
                }
                monitored = None
                if self.has_val:
                    val = self.evaluate(loaders["val"], forward, self.model.head if cached else None)
                    record["val_loss"] = val["loss"]
                    record.update({f"val_{k}": v for k, v in val["metrics"].items()})
                    monitored = val["loss"] if c.monitor == "loss" else val["metrics"].get(c.monitor)
                schedule.after_epoch(monitored)
                if self._improved(monitored, s.best["value"] if s.best else None):
                    s.best = {"value": monitored, "phase": phase.name, "phase_index": index, "epoch": epoch}
                    s.best["global_epoch"] = record["global_epoch"]
                    self.best_delta = self._delta()
                if self._improved(monitored, s.phase_best):
                    s.phase_best, s.bad_epochs = monitored, 0
                else:
                    s.bad_epochs += 1
                s.epoch = epoch
                s.stopped_early = bool(c.patience and self.has_val and s.bad_epochs >= c.patience)
                finished = s.stopped_early or epoch + 1 == phase.epochs
                record["time_s"] = time.monotonic() - t0  # training and validation
                s.history.append(record)
                for cb in self.callbacks:
                    cb.on_epoch_end(record)
                self.last_delta = self._delta()
                # The phase's time and energy: everything since the previous epoch's accounting
                # (the resume-state write in between included).
                now = time.monotonic()
                s.phase_wall += now - mark
                mark = now
                s.phase_energy += self.meter.segment()
                if finished:
                    self._finish_phase(index, phase, resolved, cached)
                if finished or time.monotonic() - self._saved_at >= c.checkpoint_interval:
                    self._save_resume(optimizer, schedule)
                if finished:
                    # Only after the resume state: last.safetensors plus the saved delta give this
                    # phase's final weights whether a kill comes before or after this write.
                    _test_kill(len(s.history), "before-last")
                    self._save_model("last", phase=phase.name, epoch=s.epoch)
                _test_kill(len(s.history))
                if finished:
                    break

    def _finish_phase(self, index: int, phase: StrategyPhase, resolved: ResolvedPhase, cached: bool) -> None:
        s = self.state
        if self.best_delta is not None and s.best is not None and s.best["phase_index"] == index:
            self._save_model("best", self.best_delta, phase=phase.name, epoch=s.best["epoch"])
            self.best_delta = None
        rapl_shared = self.meter.method == "rapl" and self.dist.local_rank != 0
        energy = all_reduce_sum(0.0 if rapl_shared else s.phase_energy, self.dist)
        summary = {
            "name": phase.name,
            "index": index,
            "trainable": list(phase.trainable),
            "optimizer": phase.optimizer,
            "lr": phase.lr,
            "bn": phase.bn,
            "epochs": phase.epochs,
            "epochs_run": s.epoch + 1,
            "stopped_early": s.stopped_early,
            "patience": self.config.patience,
            "cached_features": cached,
            "trainable_params": resolved.num_trainable,
            "total_params": resolved.num_total,
            "trained_groups": resolved.trained_groups,
            "best_" + ("val_" + self.config.monitor if self.has_val else "epoch"): s.phase_best,
            "wall_time_s": s.phase_wall,
            "energy_j": energy,
            "kwh": kwh(energy),
        }
        s.phases.append(summary)
        s.phase_finished = True
        for cb in self.callbacks:
            cb.on_phase_end(summary)

    def _save_resume(self, optimizer: torch.optim.Optimizer, schedule: PhaseSchedule) -> None:
        self._saved_at = time.monotonic()
        if not self.dist.is_main:
            return
        save_resume(
            self.ckpt_dir / RESUME_FILE,
            {
                "store_checksum": self.data.store.checksum,
                "strategy": self.strategy.model_dump(mode="json"),
                "loop": self.state.to_dict(),
                "delta": self.last_delta,
                "best_delta": self.best_delta,
                "optimizer": optimizer.state_dict(),
                "schedule": schedule.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else None,
                "rng": rng_state(),
            },
        )

    # -- inputs of a phase -------------------------------------------------------------------
    def _phase_inputs(self, cached: bool):
        """Loaders, the forward function and the module that trains (DDP-wrapped when distributed)."""
        d = self.data
        parts = {"train": d.partitions["train"], "val": d.partitions["val"]}
        if cached:
            datasets: dict[str, Dataset] = {}
            for name, idx in parts.items():
                feats = extract_features(
                    self.model,
                    d.store,
                    idx,
                    batch_size=self.config.batch_size,
                    device=self.device,
                    transform=d.train_transform if name == "train" else d.eval_transform,
                    num_workers=self.config.num_workers,
                    amp=self.amp_dtype,
                )
                datasets[name] = TensorDataset(torch.from_numpy(feats), _targets(d.store, idx))
            train_module: nn.Module = self.model.head

            def forward(x: torch.Tensor) -> torch.Tensor:
                return self.model.head(x)

        else:
            datasets = {
                "train": StoreDataset(d.store, parts["train"], d.train_transform),
                "val": StoreDataset(d.store, parts["val"], d.eval_transform),
            }
            train_module = self.model

            def forward(x: torch.Tensor) -> torch.Tensor:
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                return self.model(x)

        wrapped = train_module
        if self.dist.enabled:
            ids = [self.device.index] if self.cuda else None
            wrapped = nn.parallel.DistributedDataParallel(train_module, device_ids=ids)
        if self.config.compile and not cached:
            wrapped = torch.compile(wrapped)
        self.train_sampler = EpochSampler(len(parts["train"]), shuffle=True, info=self.dist)
        loaders = {
            "train": self._loader(datasets["train"], self.train_sampler, train=True),
            "val": self._loader(datasets["val"], EpochSampler(len(parts["val"]), shuffle=False), train=False),
        }
        return loaders, forward, wrapped

    # -- one epoch ---------------------------------------------------------------------------
    def _train_epoch(
        self,
        module: nn.Module,
        forward: Callable[[torch.Tensor], torch.Tensor],
        loader: DataLoader,
        optimizer: torch.optim.Optimizer,
        schedule: PhaseSchedule,
        resolved: ResolvedPhase,
        cached: bool,
        phase: StrategyPhase,
        epoch: int,
    ) -> float:
        if cached:
            self.model.head.train()  # nothing else runs
        else:
            self.model.train()
            apply_bn_policy(self.model, resolved)
        accum = self.config.grad_accum
        n = len(loader)
        total, count = 0.0, 0
        optimizer.zero_grad(set_to_none=True)
        ddp = isinstance(module, nn.parallel.DistributedDataParallel)
        for i, (x, y) in enumerate(loader):
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            if self.data.device_augment and not cached:
                x = batch_augment(x, self.data.device_augment)
            window_start = (i // accum) * accum
            window = min(accum, n - window_start)
            stepping = i + 1 == window_start + window
            sync = contextlib.nullcontext() if (stepping or not ddp) else module.no_sync()
            if self.channels_last and not cached:
                x = x.contiguous(memory_format=torch.channels_last)
            with sync:
                with self._autocast():
                    logits = module(x)
                    loss = self.loss_fn(logits, y)
                value = float(loss.detach())  # one device sync per step, for the NaN check and the log
                self._check_finite(value, phase, epoch, i)
                scaled = loss / window
                if self.scaler is not None:
                    self.scaler.scale(scaled).backward()
                else:
                    scaled.backward()
            if stepping:
                if self.scaler is not None:
                    self.scaler.step(optimizer)
                    self.scaler.update()
                else:
                    optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                schedule.after_step()
            total += value * len(y)
            count += len(y)
            for cb in self.callbacks:
                cb.on_batch_end(value)
        if self.dist.enabled:
            # Each process updated BatchNorm statistics on its own samples; keep rank 0's everywhere
            # so every process holds the same model (DDP only broadcasts them before a forward).
            for buffer in self.model.buffers():
                torch.distributed.broadcast(buffer.data, 0)
        total = all_reduce_sum(total, self.dist)
        count = all_reduce_sum(float(count), self.dist)
        return total / max(count, 1)

    def _check_finite(self, loss: float, phase: StrategyPhase, epoch: int, step: int) -> None:
        bad = 0.0 if math.isfinite(loss) else 1.0
        # every process must stop together, or the others would wait for it forever
        if (all_reduce_sum(bad, self.dist) if self.dist.enabled else bad) > 0:
            raise NonFiniteLoss(phase.name, epoch, step)

    @torch.no_grad()
    def predict(
        self,
        loader: DataLoader,
        forward: Callable[[torch.Tensor], torch.Tensor],
        module: nn.Module | None = None,
    ) -> tuple[float, np.ndarray, np.ndarray]:
        """Mean loss, scores and targets over a loader (every process sees all of it); ``module`` is
        what ``forward`` runs (default: the whole model), put in eval mode."""
        (module or self.model).eval()
        losses, scores, targets = 0.0, [], []
        for x, y in loader:
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            with self._autocast():
                logits = forward(x)
                losses += float(self.loss_fn(logits, y)) * len(y)
            scores.append(scores_from_logits(logits, self.task).cpu().numpy())
            targets.append(y.cpu().numpy())
        n = sum(len(t) for t in targets)
        return losses / max(n, 1), np.concatenate(scores), np.concatenate(targets)

    def evaluate(
        self,
        loader: DataLoader,
        forward: Callable[[torch.Tensor], torch.Tensor],
        module: nn.Module | None = None,
    ) -> dict[str, Any]:
        loss, scores, targets = self.predict(loader, forward, module)
        metrics = classification_metrics(targets, scores, self.task, self.class_names)
        scalars = {k: v for k, v in metrics.items() if isinstance(v, float) and k != "num_samples"}
        return {"loss": loss, "metrics": scalars}

    # -- failure -----------------------------------------------------------------------------
    def keep_last_good(self) -> None:
        """After a failure: write the last good weights (and the best ones not yet on disk)."""
        if self.best_delta is not None and self.state.best is not None:
            self._save_model(
                "best", self.best_delta, phase=self.state.best["phase"], epoch=self.state.best["epoch"]
            )
        if self.last_delta is not None:
            self.model.load_state_dict(self.last_delta, strict=False)
            self._save_model(
                "last", phase=self.strategy.phases[self.state.phase_index].name, epoch=self.state.epoch
            )
        barrier(self.dist)


class NonFiniteLoss(Exception):
    """The loss became NaN or infinite (turned into a TrainingError naming the run by ``run``)."""

    def __init__(self, phase: str, epoch: int, step: int) -> None:
        super().__init__(f"loss is not finite in phase '{phase}', epoch {epoch + 1}, step {step + 1}")
        self.phase, self.epoch, self.step = phase, epoch, step


def _targets(store: Store, indices: np.ndarray) -> torch.Tensor:
    labels = np.asarray(store.labels[indices])
    if store.task == "classification":
        return torch.from_numpy(labels.reshape(len(indices)).astype(np.int64))
    return torch.from_numpy(labels.astype(np.float32))
