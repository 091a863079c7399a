"""Segmentation training throughput: medtl's U-Net vs segmentation_models_pytorch's, side by side.

The reference is what the 21-model benchmark ran: ``smp.Unet(encoder, classes=1)`` trained in a minimal
loop over a PNG folder read with PIL (image and mask files, random horizontal flip, ImageNet-style
normalisation). medtl trains ``build_unet(encoder, 1)`` on the store that ``medtl prepare seg`` made
from the same PNGs, read by ``StoreDataset`` / ``make_loader`` with ``build_transforms`` (the same flip
and normalisation, mask moved along) and its ``dice`` loss. Both sides
use Adam, the same batch size, worker count, image size and Dice loss, one warm-up step, then
``--steps`` timed steps; configurations alternate, best of ``--repeat``. Images per wall second and
per CPU second (process + loader workers: steadier on a shared machine) are printed, then the
network alone (the same steps on one batch in memory), with the parameter counts of both models
(they match: same decoder, same head).

    MEDTL_EXTRAS=dev,bench make install           # segmentation_models_pytorch, benchmark only
    .venv/bin/python benchmarks/bench_segmentation.py                       # resnet18, resnet50 at 128 px
    .venv/bin/python benchmarks/bench_segmentation.py --size 224 --device cuda --amp bf16
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
from _machine import cpu_name
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from medtl.data.dataset import StoreDataset, make_loader
from medtl.data.transforms import build_transforms, normalisation_stats
from medtl.io.converters.seg_pairs import convert_seg_pairs
from medtl.models.segmentation_losses import make_segmentation_loss
from medtl.models.unet import build_unet


def write_pngs(root: Path, n: int, size: int, seed: int = 0) -> tuple[Path, Path]:
    """Grayscale slices with one bright lesion each, and its binary mask (PNG, 0/255)."""
    rng = np.random.default_rng(seed)
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir()
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        cx, cy, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.05, 0.15)
        lesion = ((xx - cx) ** 2 + (yy - cy) ** 2) < r**2
        img = 0.5 * np.exp(-((xx - 0.5) ** 2 + (yy - 0.5) ** 2) / 0.1) + 0.4 * lesion
        img = np.clip(img + rng.normal(0, 0.03, img.shape), 0, 1)
        Image.fromarray((img * 255).astype(np.uint8)).save(images / f"case{i:04d}.png")
        Image.fromarray(lesion.astype(np.uint8) * 255).save(masks / f"case{i:04d}.png")
    return images, masks


class PngPairs(Dataset):
    """The 21-model benchmark's kind of loader: PIL open per item, numpy, flip, normalise."""

    def __init__(self, images: Path, masks: Path, mean: float, std: float) -> None:
        self.files = sorted(images.glob("*.png"))
        self.masks, self.mean, self.std = masks, mean, std

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        with Image.open(self.files[i]) as img:
            image = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
        with Image.open(self.masks / self.files[i].name) as m:
            mask = (np.asarray(m) > 0).astype(np.float32)
        if np.random.rand() < 0.5:
            image, mask = image[:, ::-1], mask[:, ::-1]
        image = (image - self.mean) / self.std
        return torch.from_numpy(image.copy())[None], torch.from_numpy(mask.copy())[None]


def cpu_seconds() -> float:
    """CPU time of this process and its DataLoader workers, finished or alive (contention on a shared
    machine slows the wall clock far more than it changes the CPU time a step needs)."""
    import resource

    import psutil

    own, reaped = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    total = own.ru_utime + own.ru_stime + reaped.ru_utime + reaped.ru_stime
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            times = child.cpu_times()
            total += times.user + times.system
    return total


def _cycle(make: Callable[[], DataLoader]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    while True:
        yield from make()


def train_rate(
    model: nn.Module, batches: Iterator, loss_fn: nn.Module, device: torch.device, steps: int, amp: str
) -> tuple[float, float]:
    """(images per wall second, images per CPU second) over ``steps`` training steps (loader
    included) after one warm-up step."""
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)

    def one_step() -> int:
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
        with autocast:
            loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return len(x)

    one_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start, cpu_start, seen = time.perf_counter(), cpu_seconds(), 0
    for _ in range(steps):
        seen += one_step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start), seen / max(cpu_seconds() - cpu_start, 1e-9)


def model_rate(model: nn.Module, loss_fn: nn.Module, args: argparse.Namespace, device: torch.device) -> float:
    """Images per CPU second of the network alone: training steps on one batch already in memory."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch_size, 1, args.size, args.size, generator=g)
    y = (torch.rand(args.batch_size, 1, args.size, args.size, generator=g) > 0.7).float()
    return train_rate(model, iter(lambda: (x, y), None), loss_fn, device, args.steps, args.amp)[1]


def smp_side(encoder: str, pngs: tuple[Path, Path], args: argparse.Namespace) -> tuple[nn.Module, Iterator]:
    import segmentation_models_pytorch as smp

    mean, std = (v[0] for v in normalisation_stats("imagenet", 1))
    dataset = PngPairs(*pngs, mean, std)
    loader = lambda: DataLoader(  # noqa: E731
        dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, drop_last=True
    )
    torch.manual_seed(0)
    model = smp.Unet(encoder, encoder_weights=None, in_channels=1, classes=1)
    return model, _cycle(loader)


def medtl_side(encoder: str, store: Path, args: argparse.Namespace) -> tuple[nn.Module, Iterator]:
    transform = build_transforms(True, augment="hflip", normalise="imagenet", in_chans=1)
    dataset = StoreDataset(store, transform=transform)
    loader = lambda: make_loader(  # noqa: E731
        dataset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, drop_last=True
    )
    torch.manual_seed(0)
    return build_unet(encoder, 1, in_chans=1), _cycle(loader)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", default="resnet18,resnet50")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--images", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--amp", choices=("none", "bf16", "fp16"), default="none")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cudnn.benchmark = True
        machine = torch.cuda.get_device_name(device)
    else:
        torch.set_num_threads(args.threads)
        machine = f"cpu ({cpu_name()}, {args.threads} threads)"
    print(
        f"device: {machine}; {args.size} px, batch {args.batch_size}, {args.steps} timed steps, "
        f"{args.workers} workers, amp {args.amp}",
        flush=True,
    )
    dice = make_segmentation_loss("dice", "multilabel", 1)
    import segmentation_models_pytorch as smp

    smp_dice = smp.losses.DiceLoss("binary", from_logits=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        pngs = write_pngs(Path(tmp) / "png", args.images, args.size)
        store = Path(tmp) / "store"
        convert_seg_pairs(pngs[0], store, masks=[pngs[1]], binary=True, channels=1)
        for encoder in args.encoders.split(","):
            rates: dict[str, float] = {"smp": 0.0, "medtl": 0.0}
            per_cpu: dict[str, float] = {"smp": 0.0, "medtl": 0.0}
            network: dict[str, float] = {"smp": 0.0, "medtl": 0.0}
            counts: dict[str, int] = {}
            for _ in range(args.repeat):
                for side in ("smp", "medtl"):
                    if side == "smp":
                        model, batches = smp_side(encoder, pngs, args)
                        loss = smp_dice
                    else:
                        model, batches = medtl_side(encoder, store, args)
                        loss = dice
                    counts[side] = n_params(model)
                    rate, cpu_rate = train_rate(model, batches, loss, device, args.steps, args.amp)
                    rates[side], per_cpu[side] = max(rates[side], rate), max(per_cpu[side], cpu_rate)
                    alone = model_rate(model, loss, args, device)
                    network[side] = max(network[side], alone)
                    del model, batches
                    print(
                        f"  {encoder} {side}: {rate:.2f} images/s, {cpu_rate:.3f} images/CPU-s "
                        f"(network alone {alone:.3f} images/CPU-s)",
                        flush=True,
                    )
            row = {
                "encoder": encoder,
                "smp_images_per_s": rates["smp"],
                "medtl_images_per_s": rates["medtl"],
                "ratio": rates["medtl"] / rates["smp"],
                "smp_images_per_cpu_s": per_cpu["smp"],
                "medtl_images_per_cpu_s": per_cpu["medtl"],
                "cpu_ratio": per_cpu["medtl"] / per_cpu["smp"],
                "smp_network_images_per_cpu_s": network["smp"],
                "medtl_network_images_per_cpu_s": network["medtl"],
                "network_ratio": network["medtl"] / network["smp"],
                "smp_parameters": counts["smp"],
                "medtl_parameters": counts["medtl"],
            }
            results.append(row)
            print(
                f"{encoder}: smp {rates['smp']:.2f}, medtl {rates['medtl']:.2f} images/s "
                f"({row['ratio']:.2f}x; per CPU-second {row['cpu_ratio']:.2f}x, network alone "
                f"{row['network_ratio']:.2f}x); "
                f"parameters smp {counts['smp']:,}, medtl {counts['medtl']:,}",
                flush=True,
            )
    summary = {"device": machine, "size": args.size, "batch_size": args.batch_size, "results": results}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
