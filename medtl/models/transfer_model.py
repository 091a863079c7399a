"""The model every strategy trains: backbone -> optional module (CDTM on tokens) -> linear head."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from medtl.errors import ConfigError, UnknownChoiceError
from medtl.models.backbone import Backbone
from medtl.models.cdtm import CrossDomainTransferModule
from medtl.models.registry import create_backbone

MODULES = ("cdtm",)


class TransferModel(nn.Module):
    """``head(module(backbone.forward_tokens(x)))`` with a module, ``head(backbone.forward_pooled(x))``
    without. ``spec`` holds the ``build_model`` arguments that rebuild the same architecture."""

    def __init__(
        self,
        backbone: Backbone,
        num_outputs: int,
        module: nn.Module | None = None,
        *,
        spec: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if num_outputs < 1:
            raise ConfigError(f"a model needs at least one output, got {num_outputs}")
        self.backbone = backbone
        self.module = module
        self.head_in = int(getattr(module, "out_features", backbone.num_features))
        self.head = nn.Linear(self.head_in, num_outputs)
        self.spec = dict(spec or {"backbone": backbone.name, "num_outputs": num_outputs})

    @property
    def num_outputs(self) -> int:
        return self.head.out_features

    def forward_head_input(self, x: Tensor) -> Tensor:
        """What the head sees: pooled features, or the module's output."""
        if self.module is None:
            return self.backbone.forward_pooled(x)
        return self.module(self.backbone.forward_tokens(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.forward_head_input(x))

    def groups(self) -> dict[str, list[str]]:
        """Backbone groups (stem, stage1..N), then "module" (if any) and "head"; full parameter names."""
        groups = {g: [f"backbone.{n}" for n in names] for g, names in self.backbone.groups().items()}
        if self.module is not None:
            groups["module"] = [f"module.{n}" for n, _ in self.module.named_parameters()]
        groups["head"] = [f"head.{n}" for n, _ in self.head.named_parameters()]
        return groups

    def blocks(self) -> list[list[str]]:
        return [[f"backbone.{n}" for n in block] for block in self.backbone.blocks()]

    def norm_layers(self) -> list[nn.Module]:
        """BatchNorm-type layers (including SyncBatchNorm and timm's BatchNormAct2d)."""
        return [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def reset_head(self, num_outputs: int) -> None:
        if num_outputs < 1:
            raise ConfigError(f"a model needs at least one output, got {num_outputs}")
        device = self.head.weight.device
        self.head = nn.Linear(self.head_in, num_outputs, device=device)
        self.spec["num_outputs"] = num_outputs


def token_shape(backbone: Backbone, image_size: int) -> tuple[int, int]:
    """(N, C) of ``forward_tokens`` at ``image_size``, by one dry forward pass in eval mode."""
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            device = next(backbone.parameters()).device
            x = torch.zeros(1, backbone.in_chans, image_size, image_size, device=device)
            tokens = backbone.forward_tokens(x)
    finally:
        backbone.train(was_training)
    return int(tokens.shape[1]), int(tokens.shape[2])


def build_model(
    backbone: str,
    num_outputs: int,
    *,
    in_chans: int = 3,
    module: str | None = None,
    truncate: int | None = None,
    image_size: int | None = None,
) -> TransferModel:
    """A randomly initialised TransferModel; ``checkpoints.load_init`` then fills it.

    ``image_size`` sizes fixed-size backbones (ViT, Swin) and the CDTM's token count; it defaults to
    the backbone's pretrained input size.
    """
    if module is not None and module not in MODULES:
        raise UnknownChoiceError("module", module, MODULES)
    net = create_backbone(backbone, in_chans=in_chans, image_size=image_size)
    if truncate is not None:
        net = net.truncated(truncate)
    extra: nn.Module | None = None
    if module == "cdtm":
        size = image_size or int(net.pretrained_cfg["input_size"][-1])
        num_tokens, dim = token_shape(net, size)
        extra = CrossDomainTransferModule(dim, num_tokens)
    spec = {
        "backbone": backbone,
        "num_outputs": num_outputs,
        "in_chans": in_chans,
        "module": module,
        "truncate": truncate,
        "image_size": image_size,
    }
    return TransferModel(net, num_outputs, extra, spec=spec)
