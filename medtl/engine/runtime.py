"""Where and how tensors are computed: the device, eval mode, mixed precision and memory format."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from medtl.errors import ConfigError
from medtl.objectives.base import IMAGE, Batch


def resolve_device(name: str) -> torch.device:
    """ "auto" (CUDA when there is one), "cpu" or "cuda" (refused without a CUDA device)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode inside the block; every module's own mode (e.g. frozen BatchNorm) restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


@contextlib.contextmanager
def cpu_threads(n: int | None) -> Iterator[None]:
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


@dataclass(frozen=True)
class Precision:
    """Mixed precision and memory format of a run; both apply on CUDA only."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False

    @classmethod
    def of(cls, device: torch.device, amp: str = "none", channels_last: bool = False) -> Precision:
        cuda = device.type == "cuda"
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp) if cuda else None
        return cls(device, dtype, channels_last and cuda)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def scaler(self) -> torch.amp.GradScaler | None:
        """fp16 needs loss scaling; bf16 and fp32 do not."""
        return torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None

    def to_device(self, batch: Batch) -> Batch:
        """Every tensor of a batch on the device; images channels-last when asked."""
        moved = {
            k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()
        }
        return self.memory_format(moved)

    def memory_format(self, batch: Batch) -> Batch:
        """Images channels-last when asked (again after a batch augmentation made new tensors)."""
        image = batch.get(IMAGE)
        if self.channels_last and isinstance(image, torch.Tensor) and image.ndim == 4:
            return {**batch, IMAGE: image.contiguous(memory_format=torch.channels_last)}
        return batch
