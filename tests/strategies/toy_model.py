"""A tiny hand-made model with TransferModel's group interface, so strategy logic is tested without timm."""

from __future__ import annotations

import torch
from torch import nn


class ToyBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.bn(self.conv(x)))


class ToyBackbone(nn.Module):
    # stem: conv 3*4*9 = 108 + bn 8; each block: conv 4*4*9 = 144 + bn 8
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4))
        self.stage1 = nn.Sequential(ToyBlock(4), ToyBlock(4))
        self.stage2 = nn.Sequential(ToyBlock(4), ToyBlock(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage2(self.stage1(self.stem(x))).mean(dim=(2, 3))


class ToyModel(nn.Module):
    """backbone -> [module] -> head, with groups()/blocks()/norm_layers() like TransferModel."""

    def __init__(self, num_outputs: int = 2, module: bool = False, prefixed_keys: bool = False) -> None:
        super().__init__()
        self.backbone = ToyBackbone()
        self.module = nn.Linear(4, 4) if module else None
        self.head = nn.Linear(4, num_outputs)
        self._prefix = "backbone." if prefixed_keys else ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.backbone(x)
        if self.module is not None:
            x = self.module(x)
        return self.head(x)

    def _names(self, module: nn.Module, prefix: str) -> list[str]:
        return [f"{prefix}.{n}" for n, _ in module.named_parameters()]

    def groups(self) -> dict[str, list[str]]:
        out = {
            self._prefix + name: self._names(getattr(self.backbone, name), f"backbone.{name}")
            for name in ("stem", "stage1", "stage2")
        }
        if self.module is not None:
            out["module"] = self._names(self.module, "module")
        out["head"] = self._names(self.head, "head")
        return out

    def blocks(self) -> list[list[str]]:
        return [
            self._names(block, f"backbone.{stage}.{i}")
            for stage in ("stage1", "stage2")
            for i, block in enumerate(getattr(self.backbone, stage))
        ]

    def norm_layers(self) -> list[nn.Module]:
        return [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
