"""Engine loop vs a bare PyTorch loop: training steps per second, side by side, on the CPU.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_engine_loop.py [--steps 10 --repeat 5]

The engine side is the real path of ``medtl finetune``: the Trainer of a RunConfig (strategy
``full``, the classification objective, its loss and optimiser, the cosine schedule, gradient
accumulation bookkeeping, the NaN check, the progress callback) running one epoch with
``Trainer._train_epoch``. The bare side is the loop one writes by hand: ``model(x)``, the same loss,
``backward``, ``optimizer.step``, ``loss.item()``. Both train the same architecture from the same
initial weights with the same optimiser settings on the same batches, held in memory (read once from
a store), so the data loader is not part of the figure. The two alternate, ``--repeat`` rounds;
the best epoch of each side counts. The main figure is in CPU seconds of this process (with one
intra-op thread, the work each loop does; on a shared machine wall time mostly measures the wait for
a core); wall-time ratios, best and median over rounds, are printed beside it. Goal: engine >= 0.95x
the bare loop.
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
from medtl.strategies import param_groups

CASES = (
    # (backbone, image size, batch size): tiny steps where the loop's own per-step work shows most,
    # then larger ones where the model's work dominates.
    ("resnet10t", 32, 4),
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
        param_groups(model, spec),  # the recipe's groups: no weight decay on biases and norms
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
    store = make_store(root / f"{backbone}-{size}-{batch}", n=int(steps * batch / 0.7) + 8, size=size)
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
    sides = {
        "engine": lambda r: trainer._train_epoch(phase, epoch=r),
        "bare": lambda r: bare_epoch(model, optimizer, loss_fn, batches),
    }
    wall: dict[str, list[float]] = {"engine": [], "bare": []}
    cpu: dict[str, list[float]] = {"engine": [], "bare": []}
    for r in range(repeat + 1):  # the first round warms both up and is not counted
        # Each round times both sides back to back, in alternating order, so a change of the
        # machine's load between rounds affects both.
        for name in ("engine", "bare") if r % 2 else ("bare", "engine"):
            t0, c0 = time.perf_counter(), time.process_time()
            sides[name](r)
            if r:
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    steps = len(batches)
    return {
        "backbone": backbone,
        "image_size": size,
        "batch_size": batch,
        "steps": steps,
        # CPU seconds of this process: on a shared machine the work done, not the waiting for a core.
        "engine_steps_per_cpu_s": steps / min(cpu["engine"]),
        "bare_steps_per_cpu_s": steps / min(cpu["bare"]),
        "ratio_cpu": min(cpu["bare"]) / min(cpu["engine"]),
        "engine_steps_per_s": steps / min(wall["engine"]),
        "bare_steps_per_s": steps / min(wall["bare"]),
        "ratio_wall": min(wall["bare"]) / min(wall["engine"]),
        "median_round_ratio_wall": float(np.median([b / e for e, b in zip(wall["engine"], wall["bare"])])),
        "engine_epochs_s": wall["engine"],
        "bare_epochs_s": wall["bare"],
        "engine_epochs_cpu_s": cpu["engine"],
        "bare_epochs_cpu_s": cpu["bare"],
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
            print(json.dumps({k: v for k, v in row.items() if "epochs" not in k}), flush=True)
    load = os.getloadavg()[0]
    print(f"\ncpu: {cpu_name()}, {threads} threads, load average {load:.2f}, torch {torch.__version__}")
    print(
        "| model | px | batch | steps | medtl steps/CPU s | bare steps/CPU s | ratio (CPU) "
        "| ratio (wall, best) | ratio (wall, median round) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['backbone']} | {r['image_size']} | {r['batch_size']} | {r['steps']} | "
            f"{r['engine_steps_per_cpu_s']:.2f} | {r['bare_steps_per_cpu_s']:.2f} | "
            f"**{r['ratio_cpu']:.3f}x** | "
            f"{r['ratio_wall']:.3f}x | {r['median_round_ratio_wall']:.3f}x |"
        )
    if args.json:
        args.json.write_text(json.dumps({"cpu": cpu_name(), "threads": threads, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
