"""Engine loop vs a bare PyTorch loop: training steps per second, side by side, on the CPU.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_engine_loop.py [--repeat 5]

The engine side is the real path of ``medtl finetune``: the Trainer of a RunConfig (strategy
``full``, the classification objective, its loss and optimiser, the cosine schedule, gradient
accumulation bookkeeping, the NaN check, the progress callback) running one epoch with
``Trainer._train_epoch``. The bare side is the loop one writes by hand: ``model(x)``, the same loss,
``backward``, ``optimizer.step``, ``loss.item()``. Both train the same architecture from the same
initial weights with the same optimiser settings on the same batches, held in memory (read once from
a store), so the data loader is not part of the figure. The two alternate, ``--repeat`` times each;
the best epoch of each side counts. Goal: engine >= 0.95x the bare loop.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _machine import cpu_name
from torch import nn

from medtl.engine.callbacks import ProgressCallback
from medtl.engine.distributed import DistInfo
from medtl.engine.optim import build_optimizer
from medtl.engine.run_config import RunConfig
from medtl.engine.runner import _train_data, resolve_split, resolve_strategy
from medtl.engine.trainer import Trainer
from medtl.io.store import SampleRecord, Store, StoreWriter
from medtl.objectives import get_objective

CASES = (
    # (backbone, image size, batch size): a small model where per-step overhead shows most, and a
    # ResNet-18 at a size where the model's own work dominates.
    ("resnet10t", 32, 16),
    ("resnet18", 64, 32),
)


def make_store(path: Path, n: int, size: int) -> Path:
    rng = np.random.default_rng(0)
    with StoreWriter(
        path, task="classification", image_shape=(3, size, size), class_names=["a", "b", "c"], label_shape=()
    ) as writer:
        for i in range(n):
            image = rng.normal(0.5, 0.2, (1, 3, size, size)).astype(np.float32)
            writer.add(f"s{i}", image, [SampleRecord(f"P{i}", f"{i}.png")], labels=np.array([i % 3]))
        return writer.finish()


def engine_side(config: RunConfig) -> tuple[Trainer, object, list[dict]]:
    """A Trainer set up as ``run`` sets it up, its first phase started, and that phase's training
    batches read once into memory."""
    store = Store(config.data)
    objective = get_objective(config.objective)
    objective.check(store)
    partitions, _ = resolve_split(config, store)
    strategy = resolve_strategy(config)
    torch.manual_seed(config.seed)
    model = objective.build_model(
        backbone=config.backbone, in_chans=3, module=None, truncate=None, image_size=int(store.shape[-1])
    )
    objective.setup(store, partitions["train"], torch.device("cpu"))
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(
            config,
            objective=objective,
            model=model,
            strategy=strategy,
            data=_train_data(config, store, partitions, 3, torch.device("cpu")),
            device=torch.device("cpu"),
            dist=DistInfo(),
            run_dir=Path(run_dir),
            callbacks=[ProgressCallback()],
            checkpoint_metadata={},
        )
        phase = trainer._start_phase(0, strategy.phases[0])  # writes last.safetensors, untimed
    phase.inputs.sampler.set_seed(0)
    batches = list(phase.inputs.train)
    phase.inputs.train = batches
    return trainer, phase, batches


def bare_side(trainer: Trainer, phase: object) -> tuple[nn.Module, torch.optim.Optimizer, nn.Module]:
    """The same architecture and initial weights, optimiser and loss, for a hand-written loop."""
    model = trainer.objective.build_model(
        backbone=trainer.config.backbone, in_chans=3, module=None, truncate=None, image_size=None
    )
    model.load_state_dict(trainer.model.state_dict())
    spec = phase.spec
    optimizer = build_optimizer(
        spec.optimizer,
        [{"params": model.parameters()}],
        lr=spec.lr,
        weight_decay=spec.weight_decay,
        momentum=spec.momentum,
    )
    return model, optimizer, nn.CrossEntropyLoss()


def bare_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, loss_fn: nn.Module, batches: list) -> None:
    model.train()
    for batch in batches:
        x, y = batch["image"], batch["target"]
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        loss.item()


def measure(backbone: str, size: int, batch: int, steps: int, repeat: int, root: Path) -> dict:
    store = make_store(root / f"{backbone}-{size}", n=int(steps * batch / 0.7) + 8, size=size)
    config = RunConfig(
        data=store,
        backbone=backbone,
        init="random",
        strategy="full",
        phase_epochs={"all": 100},
        batch_size=batch,
        num_workers=0,
        normalise="none",
        device="cpu",
        out=root / "runs",
    )
    trainer, phase, batches = engine_side(config)
    batches = batches[:steps]
    phase.inputs.train = batches
    model, optimizer, loss_fn = bare_side(trainer, phase)
    engine_s, bare_s = [], []
    for r in range(repeat + 1):  # the first round warms both up and is not counted
        t0 = time.perf_counter()
        trainer._train_epoch(phase, epoch=r)
        t1 = time.perf_counter()
        bare_epoch(model, optimizer, loss_fn, batches)
        t2 = time.perf_counter()
        if r:
            engine_s.append(t1 - t0)
            bare_s.append(t2 - t1)
    engine_rate, bare_rate = len(batches) / min(engine_s), len(batches) / min(bare_s)
    return {
        "backbone": backbone,
        "image_size": size,
        "batch_size": batch,
        "steps": len(batches),
        "engine_steps_per_s": engine_rate,
        "bare_steps_per_s": bare_rate,
        "ratio": engine_rate / bare_rate,
        "engine_epochs_s": engine_s,
        "bare_epochs_s": bare_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="training steps per epoch")
    parser.add_argument("--repeat", type=int, default=5, help="timed epochs of each side")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backbone, size, batch in CASES:
            row = measure(backbone, size, batch, args.steps, args.repeat, Path(tmp))
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if not k.endswith("epochs_s")}), flush=True)
    load = os.getloadavg()[0]
    print(f"\ncpu: {cpu_name()}, {threads} threads, load average {load:.2f}, torch {torch.__version__}")
    print("| model | px | batch | steps | medtl steps/s | bare PyTorch steps/s | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['backbone']} | {r['image_size']} | {r['batch_size']} | {r['steps']} | "
            f"{r['engine_steps_per_s']:.2f} | {r['bare_steps_per_s']:.2f} | **{r['ratio']:.3f}x** |"
        )
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_name(), "threads": threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
