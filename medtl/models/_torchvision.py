"""torchvision ResNets and DenseNet-121 behind the Backbone interface.

Each architecture is data: its builder, stem and stage module paths, and where its blocks live.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medtl.models.backbone import (
    Backbone,
    adapt_first_conv,
    attach_loose,
    has_prefix,
    parameter_names,
    prefixed,
)

# The studies used the original torchvision ImageNet weights (V1) for every ResNet and DenseNet.
IMAGENET_WEIGHTS = "IMAGENET1K_V1"


@dataclass(frozen=True)
class TorchvisionArch:
    stem: tuple[str, ...]
    stages: tuple[tuple[str, ...], ...]
    stage_channels: tuple[int, ...]
    block_containers: tuple[str, ...]  # modules whose children are the blocks
    first_conv: str
    classifier: str
    final_relu: bool = False  # DenseNet applies ReLU after its last norm, outside ``features``


_RESNET_STEM = ("conv1", "bn1", "relu", "maxpool")
_RESNET_STAGES = (("layer1",), ("layer2",), ("layer3",), ("layer4",))
_RESNET_BLOCKS = ("layer1", "layer2", "layer3", "layer4")


def _resnet(channels: tuple[int, ...]) -> TorchvisionArch:
    return TorchvisionArch(_RESNET_STEM, _RESNET_STAGES, channels, _RESNET_BLOCKS, "conv1", "fc")


ARCHS: dict[str, TorchvisionArch] = {
    "resnet18": _resnet((64, 128, 256, 512)),
    "resnet34": _resnet((64, 128, 256, 512)),
    "resnet50": _resnet((256, 512, 1024, 2048)),
    "resnet101": _resnet((256, 512, 1024, 2048)),
    "densenet121": TorchvisionArch(
        stem=("features.conv0", "features.norm0", "features.relu0", "features.pool0"),
        # A transition (BN, 1x1 conv, 2x2 pool) opens the next stage, so each stage map is a dense
        # block's full-resolution output, as a U-Net skip connection wants.
        stages=(
            ("features.denseblock1",),
            ("features.transition1", "features.denseblock2"),
            ("features.transition2", "features.denseblock3"),
            ("features.transition3", "features.denseblock4", "features.norm5"),
        ),
        stage_channels=(256, 512, 1024, 1024),
        block_containers=tuple(f"features.denseblock{i}" for i in range(1, 5)),
        first_conv="features.conv0",
        classifier="classifier",
        final_relu=True,
    ),
}


def imagenet_weights(name: str) -> Any:
    """The torchvision weights enum entry medtl uses for ``imagenet`` init."""
    import torchvision

    return torchvision.models.get_model_weights(name)[IMAGENET_WEIGHTS]


def imagenet_file(name: str) -> tuple[str, Path]:
    """(download url, expected local path) of the ImageNet weights, where torch.hub caches them."""
    url = imagenet_weights(name).url
    return url, Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name


def pretrained_cfg(name: str) -> dict[str, Any]:
    arch = ARCHS[name]
    weights = imagenet_weights(name)
    preset = weights.transforms()
    crop, resize = preset.crop_size[0], preset.resize_size[0]
    url, path = imagenet_file(name)
    return {
        "architecture": name,
        "tag": IMAGENET_WEIGHTS,
        "input_size": (3, crop, crop),
        "mean": tuple(preset.mean),
        "std": tuple(preset.std),
        "interpolation": preset.interpolation.value,
        "crop_pct": crop / resize,
        "first_conv": arch.first_conv,
        "classifier": arch.classifier,
        "url": url,
        "file": path.name,
        "num_classes": len(weights.meta["categories"]),
    }


class TorchvisionBackbone(Backbone):
    source = "torchvision"

    def __init__(self, name: str, model: nn.Module, *, in_chans: int, num_stages: int | None = None) -> None:
        super().__init__()
        arch = ARCHS[name]
        self.name = name
        self.arch = arch
        self.model = model
        self.in_chans = in_chans
        self.truncated_to = num_stages
        self._stages = arch.stages[: num_stages or len(arch.stages)]
        self.stage_channels = list(arch.stage_channels[: len(self._stages)])
        self.stage_reductions = [4, 8, 16, 32][: len(self._stages)]
        self.num_features = self.token_dim = self.stage_channels[-1]
        self.pretrained_cfg = pretrained_cfg(name)

    @classmethod
    def create(cls, name: str, *, in_chans: int = 3) -> TorchvisionBackbone:
        import torchvision

        model = torchvision.models.get_model(name, weights=None)
        arch = ARCHS[name]
        model.set_submodule(arch.classifier, nn.Identity())
        adapt_first_conv(model, arch.first_conv, in_chans)
        return cls(name, model, in_chans=in_chans)

    def _run(self, paths: tuple[str, ...], x: Tensor) -> Tensor:
        for path in paths:
            x = self.model.get_submodule(path)(x)
        return x

    @property
    def stem_feature(self) -> tuple[int, int]:
        # Every stem here ends with a pooling layer (max-pool, DenseNet's pool0) after a stride-2 conv.
        return int(self.model.get_submodule(self.arch.first_conv).out_channels), 2

    def forward_pyramid(self, x: Tensor) -> list[Tensor]:
        stem = self._run(self.arch.stem[:-1], x)
        return [stem, *self._forward_from_stem(self._run(self.arch.stem[-1:], stem))]

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        return self._forward_from_stem(self._run(self.arch.stem, x))

    def _forward_from_stem(self, x: Tensor) -> list[Tensor]:
        maps = []
        for i, paths in enumerate(self._stages):
            x = self._run(paths, x)
            if self.arch.final_relu and i == len(self.arch.stages) - 1:
                x = F.relu(x)
            maps.append(x)
        return maps

    def forward_pooled(self, x: Tensor) -> Tensor:
        return self.forward_stages(x)[-1].mean(dim=(2, 3))

    def forward_tokens(self, x: Tensor) -> Tensor:
        return self.forward_stages(x)[-1].flatten(2).transpose(1, 2)

    def groups(self) -> dict[str, list[str]]:
        names = parameter_names(self.model)
        groups = {"stem": [n for n in names if any(has_prefix(n, p) for p in self.arch.stem)]}
        for i, paths in enumerate(self._stages):
            groups[f"stage{i + 1}"] = [n for n in names if any(has_prefix(n, p) for p in paths)]
        return {k: prefixed(v) for k, v in groups.items()}

    def blocks(self) -> list[list[str]]:
        kept = {p for paths in self._stages for p in paths}
        prefixes = [
            f"{container}.{child}"
            for container in self.arch.block_containers
            if container in kept
            for child, _ in self.model.get_submodule(container).named_children()
        ]
        stem = self.groups()["stem"]
        blocks = attach_loose(parameter_names(self.model), prefixes, [n[len("model.") :] for n in stem])
        return [prefixed(b) for b in blocks]

    def truncated(self, num_stages: int) -> TorchvisionBackbone:
        self._check_truncation(num_stages)
        model = copy.deepcopy(self.model)
        for paths in self.arch.stages[num_stages:]:
            for path in paths:
                model.set_submodule(path, nn.Identity())
        return TorchvisionBackbone(self.name, model, in_chans=self.in_chans, num_stages=num_stages)
