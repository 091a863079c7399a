"""The phase and epoch loop behind ``run``: training, validation, early stopping, for any objective.

The objective computes the loss and the metric of a batch dict; the trainer runs the phases of the
strategy, optimisers and schedules, gradient accumulation, AMP, DDP, callbacks and energy, and
keeps the checkpoints (``medtl.engine.checkpointing``) that let a killed run resume exactly.

Reproducibility. Every epoch reseeds python, numpy, torch and the sample order from
(seed, phase, epoch), so a resumed run draws the same batches and augmentations as one that was
never interrupted, whatever the number of DataLoader workers.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from medtl.engine.callbacks import Callback
from medtl.engine.checkpointing import Checkpointer
from medtl.engine.distributed import DistInfo, all_reduce_sum, barrier
from medtl.engine.energy import EnergyMeter, kwh
from medtl.engine.evaluation import evaluate_loader
from medtl.engine.inputs import (
    LoaderSettings,
    PhaseInputs,
    TrainData,
    cacheable_head,
    phase_inputs,
    reference_inputs,
)
from medtl.engine.optim import PhaseSchedule, build_optimizer
from medtl.engine.run_config import RunConfig
from medtl.engine.runtime import Precision, cpu_threads
from medtl.engine.state import LoopState, rng_state, seed_everything, set_rng_state
from medtl.errors import TrainingError
from medtl.objectives.base import INDEX, Objective, scalars
from medtl.strategies import (
    ResolvedPhase,
    Strategy,
    StrategyPhase,
    apply_bn_policy,
    apply_phase,
    param_groups,
)


def epoch_seed(seed: int, phase_index: int, epoch: int) -> int:
    return (seed * 1_000_003 + phase_index * 10_007 + epoch) % (2**63 - 1)


@dataclass
class _Phase:
    """One phase while it runs."""

    index: int
    spec: StrategyPhase
    resolved: ResolvedPhase
    inputs: PhaseInputs
    optimizer: torch.optim.Optimizer
    schedule: PhaseSchedule
    mark: float  # when the phase's time was last accounted


class Trainer:
    """Runs the phases of ``strategy`` on ``model`` for ``objective``; rank 0 writes the checkpoints."""

    def __init__(
        self,
        config: RunConfig,
        *,
        objective: Objective,
        model: nn.Module,
        strategy: Strategy,
        data: TrainData,
        device: torch.device,
        dist: DistInfo,
        run_dir: Path,
        callbacks: list[Callback],
        checkpoint_metadata: dict[str, str],
    ) -> None:
        self.config, self.objective, self.model, self.strategy, self.data = (
            config,
            objective,
            model,
            strategy,
            data,
        )
        self.dist, self.callbacks = dist, callbacks
        self.precision = Precision.of(device, config.amp, config.channels_last)
        self.scaler = self.precision.scaler()
        self.checkpoints = Checkpointer(model, run_dir / "checkpoints", checkpoint_metadata, dist, callbacks)
        self.state = LoopState()
        self.meter = EnergyMeter(gpu_indices=[device.index or 0] if device.type == "cuda" else None)
        self._resume: dict[str, Any] | None = None

    @property
    def device(self) -> torch.device:
        return self.precision.device

    @property
    def has_val(self) -> bool:
        return len(self.data.partitions["val"]) > 0

    @property
    def loader_settings(self) -> LoaderSettings:
        c = self.config
        return LoaderSettings(c.batch_size, c.num_workers, pin_memory=self.device.type == "cuda")

    # -- resume ------------------------------------------------------------------------------------
    def restore(self) -> bool:
        """Load the resume state when there is one; returns whether the run resumes."""
        saved = self.checkpoints.load_resume()
        if saved is None:
            return False
        run_dir = self.checkpoints.dir.parent
        if saved["store_checksum"] != self.data.store.checksum:
            raise TrainingError(
                f"{run_dir}: the store {self.config.data} changed since this run started",
                hint="start a new run (another --out or --run-name)",
            )
        if saved["strategy"] != self.strategy.model_dump(mode="json"):
            raise TrainingError(
                f"{run_dir}: the strategy '{self.config.strategy}' changed since this run started",
                hint="restore the strategy file, or start a new run (another --out or --run-name)",
            )
        self.state = LoopState(**saved["loop"])
        self.checkpoints.restore(saved)
        self._resume = saved
        return True

    def _save_resume(self, phase: _Phase) -> None:
        state = {
            "store_checksum": self.data.store.checksum,
            "strategy": self.strategy.model_dump(mode="json"),
            "loop": self.state.to_dict(),
            "optimizer": phase.optimizer.state_dict(),
            "schedule": phase.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": rng_state(),
        }
        self.checkpoints.save_resume(state, epochs_done=len(self.state.history))

    # -- the loop ----------------------------------------------------------------------------------
    def fit(self) -> LoopState:
        if self.precision.channels_last:
            self.model.to(memory_format=torch.channels_last)
        s = self.state
        for index, spec in enumerate(self.strategy.phases):
            if index < s.phase_index or (index == s.phase_index and s.phase_finished):
                continue
            self._run_phase(index, spec)
        for cb in self.callbacks:
            cb.on_train_end(self.model)
        return self.state

    def _run_phase(self, index: int, spec: StrategyPhase) -> None:
        phase = self._start_phase(index, spec)
        threads = 1 if phase.inputs.cached and self.device.type == "cpu" else None
        with cpu_threads(threads):
            for epoch in range(self.state.epoch + 1, spec.epochs):
                if self._run_epoch(phase, epoch):
                    break

    def _start_phase(self, index: int, spec: StrategyPhase) -> _Phase:
        s, c = self.state, self.config
        resuming = s.phase_index == index and s.epoch >= 0
        if not resuming:
            s.begin_phase(index)
        resolved = apply_phase(self.model, spec)
        # Train mode after requires_grad: a module whose mode follows its trainability (a frozen
        # Adaptor stays in eval mode) sees this phase's, so its features can be cached.
        self.model.train()
        apply_bn_policy(self.model, resolved)
        t0 = time.monotonic()
        self.meter.segment()
        if not resuming:
            self.checkpoints.save_model("last", epochs_done=len(s.history), phase=spec.name, epoch=-1)
            self.checkpoints.last_delta = None
        head = cacheable_head(
            self.objective, self.model, resolved, enabled=c.cache_features, augmenting=self.data.augmenting
        )
        self.checkpoints.track(resolved.trainable_names, head)
        settings = self.loader_settings
        inputs = phase_inputs(
            self.objective,
            self.model,
            self.data,
            head=head,
            settings=settings,
            precision=self.precision,
            dist=self.dist,
            compile_model=c.compile,
        )
        optimizer, schedule = self._optimiser(spec, steps=math.ceil(len(inputs.train) / c.grad_accum))
        if resuming:
            self._restore_optimiser(optimizer, schedule)
        for cb in self.callbacks:
            cb.on_phase_start(spec.name, epochs=spec.epochs, done=s.epoch + 1, steps=len(inputs.train))
        mark = time.monotonic()
        s.phase_wall += mark - t0
        return _Phase(index, spec, resolved, inputs, optimizer, schedule, mark)

    def _optimiser(self, spec: StrategyPhase, *, steps: int) -> tuple[torch.optim.Optimizer, PhaseSchedule]:
        c = self.config
        optimizer = build_optimizer(
            spec.optimizer,
            param_groups(self.model, spec),
            lr=spec.lr,
            weight_decay=spec.weight_decay,
            momentum=spec.momentum,
        )
        schedule = PhaseSchedule(
            optimizer,
            c.scheduler,
            steps_per_epoch=steps,
            epochs=spec.epochs,
            warmup_epochs=c.warmup_epochs,
            min_lr_ratio=c.min_lr_ratio,
            plateau_factor=c.plateau_factor,
            plateau_patience=c.plateau_patience,
            gamma=c.gamma,
            mode=self.objective.monitor_mode,
        )
        return optimizer, schedule

    def _restore_optimiser(self, optimizer: torch.optim.Optimizer, schedule: PhaseSchedule) -> None:
        blob = self._resume or {}
        optimizer.load_state_dict(blob["optimizer"])
        schedule.load_state_dict(blob["schedule"])
        if self.scaler is not None and blob.get("scaler"):
            self.scaler.load_state_dict(blob["scaler"])
        set_rng_state(blob["rng"])

    def _run_epoch(self, phase: _Phase, epoch: int) -> bool:
        """Train and validate one epoch, keep its record and checkpoints; True when the phase ends."""
        s, c, name = self.state, self.config, phase.spec.name
        t0 = time.monotonic()
        seed = epoch_seed(c.seed, phase.index, epoch)
        seed_everything(seed)
        phase.inputs.start_epoch(seed)
        for cb in self.callbacks:
            cb.on_epoch_start(name, epoch)
        record: dict[str, Any] = {
            "phase": name,
            "phase_index": phase.index,
            "epoch": epoch,
            "global_epoch": len(s.history),
            "cached_features": phase.inputs.cached,
            "lr": phase.optimizer.param_groups[0]["lr"],
        }
        record["train_loss"] = self._train_epoch(phase, epoch)
        monitored = self._validate(phase, record)
        phase.schedule.after_epoch(monitored)
        if self._measured(record):
            self._track_best(phase, epoch, monitored, record["global_epoch"])
        s.epoch = epoch
        s.stopped_early = bool(c.patience and self.has_val and s.bad_epochs >= c.patience)
        finished = s.stopped_early or epoch + 1 == phase.spec.epochs
        record["time_s"] = time.monotonic() - t0  # training and validation
        s.history.append(record)
        for cb in self.callbacks:
            cb.on_epoch_end(record)
        self.checkpoints.last_delta = self.checkpoints.delta()
        # The phase's time and energy: everything since the previous epoch's accounting (the
        # resume-state write in between included).
        now = time.monotonic()
        s.phase_wall += now - phase.mark
        phase.mark = now
        s.phase_energy += self.meter.segment()
        self._commit_epoch(phase, finished)
        return finished

    def _commit_epoch(self, phase: _Phase, finished: bool) -> None:
        s = self.state
        if finished:
            self._finish_phase(phase)
        if finished or self.checkpoints.resume_due(self.config.checkpoint_interval):
            self._save_resume(phase)
        if finished:
            # Only after the resume state: last.safetensors plus the saved delta give this phase's
            # final weights whether a kill comes before or after this write.
            self.checkpoints.save_model(
                "last", epochs_done=len(s.history), phase=phase.spec.name, epoch=s.epoch
            )
        for cb in self.callbacks:
            cb.on_epoch_committed(len(s.history))

    def _validate(self, phase: _Phase, record: dict[str, Any]) -> float | None:
        """Validation loss and scalar metrics into ``record``; returns the monitored value."""
        if not self.has_val:
            return None
        inputs = phase.inputs
        reference = reference_inputs(
            self.objective,
            self.model,
            self.data,
            epoch=record["global_epoch"],
            settings=self.loader_settings,
            precision=self.precision,
        )
        result = evaluate_loader(
            self.objective, inputs.evaluated, inputs.val, precision=self.precision, reference=reference
        )
        values = scalars(result.metric.aggregate())
        record["val_loss"] = result.loss
        record.update({f"val_{k}": v for k, v in values.items()})
        monitor = self.objective.monitor
        return result.loss if monitor == "loss" else values.get(monitor)

    def _measured(self, record: dict[str, Any]) -> bool:
        """Whether this epoch's validation measured the monitor: an objective may measure some
        metrics every few epochs only (SimCLR's k-NN); the epochs between neither improve on the
        best nor count against the patience."""
        monitor = self.objective.monitor
        return not self.has_val or monitor == "loss" or f"val_{monitor}" in record

    def _improved(self, value: float | None, reference: float | None) -> bool:
        if not self.has_val:
            return True  # without validation the latest weights are the best we know
        if value is None or not math.isfinite(value):
            return False
        if reference is None:
            return True
        return value < reference if self.objective.monitor_mode == "min" else value > reference

    def _track_best(self, phase: _Phase, epoch: int, monitored: float | None, global_epoch: int) -> None:
        s = self.state
        if self._improved(monitored, s.best["value"] if s.best else None):
            s.best = {
                "value": monitored,
                "phase": phase.spec.name,
                "phase_index": phase.index,
                "epoch": epoch,
                "global_epoch": global_epoch,
            }
            self.checkpoints.best_delta = self.checkpoints.delta()
        if self._improved(monitored, s.phase_best):
            s.phase_best, s.bad_epochs = monitored, 0
        else:
            s.bad_epochs += 1

    def _finish_phase(self, phase: _Phase) -> None:
        s, spec, resolved = self.state, phase.spec, phase.resolved
        ckpt = self.checkpoints
        if ckpt.best_delta is not None and s.best is not None and s.best["phase_index"] == phase.index:
            ckpt.save_model(
                "best", ckpt.best_delta, epochs_done=len(s.history), phase=spec.name, epoch=s.best["epoch"]
            )
            ckpt.best_delta = None
        rapl_shared = self.meter.method == "rapl" and self.dist.local_rank != 0
        energy = all_reduce_sum(0.0 if rapl_shared else s.phase_energy, self.dist)
        summary = {
            "name": spec.name,
            "index": phase.index,
            "trainable": list(spec.trainable),
            "optimizer": spec.optimizer,
            "lr": spec.lr,
            "bn": spec.bn,
            "epochs": spec.epochs,
            "epochs_run": s.epoch + 1,
            "stopped_early": s.stopped_early,
            "patience": self.config.patience,
            "cached_features": phase.inputs.cached,
            "trainable_params": resolved.num_trainable,
            "total_params": resolved.num_total,
            "trained_groups": resolved.trained_groups,
            "best_monitor": s.phase_best if self.has_val else None,
            "wall_time_s": s.phase_wall,
            "energy_j": energy,
            "kwh": kwh(energy),
        }
        s.phases.append(summary)
        s.phase_finished = True
        for cb in self.callbacks:
            cb.on_phase_end(summary)

    # -- one epoch ---------------------------------------------------------------------------------
    def _train_epoch(self, phase: _Phase, epoch: int) -> float:
        inputs, optimizer = phase.inputs, phase.optimizer
        if inputs.cached:
            inputs.evaluated.train()  # only the head runs
        else:
            self.model.train()
            apply_bn_policy(self.model, phase.resolved)
        augment = [] if inputs.cached else self.data.device_augment
        accum, n = self.config.grad_accum, len(inputs.train)
        total, count = 0.0, 0
        optimizer.zero_grad(set_to_none=True)
        ddp = isinstance(inputs.module, nn.parallel.DistributedDataParallel)
        for i, batch in enumerate(inputs.train):
            batch = self.precision.to_device(batch)
            if augment:
                batch = self.precision.memory_format(self.objective.device_augment(batch, augment))
            window_start = (i // accum) * accum
            window = min(accum, n - window_start)
            stepping = i + 1 == window_start + window
            sync = contextlib.nullcontext() if (stepping or not ddp) else inputs.module.no_sync()
            with sync:
                with self.precision.autocast():
                    loss, _ = self.objective.step(inputs.module, batch)
                value = float(loss.detach())  # one device sync per step, for the NaN check and the log
                self._check_finite(value, phase.spec, epoch, i)
                self._backward(loss / window)
            if stepping:
                self._optimiser_step(phase)
            size = len(batch[INDEX])
            total += value * size
            count += size
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

    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def _optimiser_step(self, phase: _Phase) -> None:
        if self.scaler is not None:
            self.scaler.step(phase.optimizer)
            self.scaler.update()
        else:
            phase.optimizer.step()
        phase.optimizer.zero_grad(set_to_none=True)
        phase.schedule.after_step()

    def _check_finite(self, loss: float, phase: StrategyPhase, epoch: int, step: int) -> None:
        bad = 0.0 if math.isfinite(loss) else 1.0
        # every process must stop together, or the others would wait for it forever
        if (all_reduce_sum(bad, self.dist) if self.dist.enabled else bad) > 0:
            raise NonFiniteLoss(phase.name, epoch, step)

    # -- failure -----------------------------------------------------------------------------------
    def keep_last_good(self) -> None:
        """After a failure: write the last good weights (and the best ones not yet on disk)."""
        s, ckpt = self.state, self.checkpoints
        done = len(s.history)
        if ckpt.best_delta is not None and s.best is not None:
            ckpt.save_model(
                "best", ckpt.best_delta, epochs_done=done, phase=s.best["phase"], epoch=s.best["epoch"]
            )
        if ckpt.last_delta is not None:
            self.model.load_state_dict(ckpt.last_delta, strict=False)
            phase = self.strategy.phases[s.phase_index].name
            ckpt.save_model("last", epochs_done=done, phase=phase, epoch=s.epoch)
        barrier(self.dist)


class NonFiniteLoss(Exception):
    """The loss became NaN or infinite (turned into a TrainingError naming the run by ``run``)."""

    def __init__(self, phase: str, epoch: int, step: int) -> None:
        super().__init__(f"loss is not finite in phase '{phase}', epoch {epoch + 1}, step {step + 1}")
        self.phase, self.epoch, self.step = phase, epoch, step
