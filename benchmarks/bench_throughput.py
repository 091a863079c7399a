"""Training throughput (images/s): ResNet-50 at 224 px, fp32 vs mixed precision + channels-last.

Each step is what the engine does per batch (autocast, loss, backward, optimiser step, GradScaler for
fp16) on a ``build_model("resnet50", ...)`` TransferModel with every parameter training, on a random
batch already on the device, so the figure is the model's, not the loader's.

    .venv/bin/python benchmarks/bench_throughput.py                 # CUDA when present, else CPU
    .venv/bin/python benchmarks/bench_throughput.py --device cpu    # reduced form: batch 8, 3 steps

On CUDA the comparison is fp32 vs bf16 (or ``--amp fp16`` with a GradScaler) autocast with
channels-last. On a CPU (reduced form) it is fp32 vs bf16 CPU autocast (channels-last too); the device
used is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path

import torch
from _machine import cpu_name
from torch import nn

from medtl.engine.optim import build_optimizer
from medtl.models import build_model


def step_rate(
    device: torch.device, *, amp: str, channels_last: bool, batch: int, steps: int, size: int
) -> float:
    """Images per second over ``steps`` training steps after one warm-up step."""
    torch.manual_seed(0)
    model = build_model("resnet50", 2, in_chans=3).to(device).train()
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    optimizer = build_optimizer("sgd", [{"params": model.parameters()}], lr=0.01)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=memory_format)
    y = torch.randint(0, 2, (batch,), device=device)
    loss_fn = nn.CrossEntropyLoss()

    def one_step() -> None:
        autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        with autocast:
            loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()

    one_step()  # warm-up (cuDNN autotuning, allocator)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        one_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--amp", choices=("bf16", "fp16"), default="bf16")
    parser.add_argument("--batch-size", type=int, help="default: 64 on CUDA, 8 on CPU")
    parser.add_argument("--steps", type=int, help="default: 20 on CUDA, 3 on CPU")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cudnn.benchmark = True
        name = torch.cuda.get_device_name(device)
    else:
        torch.set_num_threads(args.threads)
        name = f"cpu ({cpu_name()}, {args.threads} threads, reduced form)"
    batch = args.batch_size or (64 if cuda else 8)
    steps = args.steps or (20 if cuda else 3)
    print(f"device: {name}; ResNet-50, {args.size} px, batch {batch}, {steps} timed steps", flush=True)

    common = dict(batch=batch, steps=steps, size=args.size)
    fp32 = step_rate(device, amp="none", channels_last=False, **common)
    print(f"fp32: {fp32:.2f} images/s", flush=True)
    mixed = step_rate(device, amp=args.amp, channels_last=True, **common)
    print(f"{args.amp} autocast + channels_last: {mixed:.2f} images/s", flush=True)
    summary = {
        "device": name,
        "model": "resnet50",
        "image_size": args.size,
        "batch_size": batch,
        "steps": steps,
        "fp32_images_per_s": fp32,
        f"{args.amp}_channels_last_images_per_s": mixed,
        "speedup": mixed / fp32,
    }
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
