"""The model every strategy trains: backbone -> optional module -> head.

Modules: the Cross-Domain Transfer Module on the backbone's tokens (``cdtm``), or a pretrained
Adaptor's image path on its pooled features (``adaptor``), whose head is the Adaptor study's
``adaptor_head`` (Dropout -> Linear(768, 512) -> BatchNorm -> ReLU -> Dropout -> Linear) instead of
a linear layer.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from medtl.errors import ConfigError, UnknownChoiceError
from medtl.models.adaptor import IMAGE_PATH_DEFAULTS, AdaptorImagePath, adaptor_head
from medtl.models.backbone import Backbone
from medtl.models.cdtm import CrossDomainTransferModule
from medtl.models.registry import create_backbone

MODULES = ("cdtm", "adaptor")


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
        self.head = self._new_head(num_outputs)
        self.spec = dict(spec or {"backbone": backbone.name, "num_outputs": num_outputs})

    def _new_head(self, num_outputs: int) -> nn.Module:
        if isinstance(self.module, AdaptorImagePath):
            return adaptor_head(num_outputs, dim=self.head_in)
        return nn.Linear(self.head_in, num_outputs)

    @property
    def num_outputs(self) -> int:
        last = self.head if isinstance(self.head, nn.Linear) else self.head[-1]
        return int(last.out_features)

    def forward_head_input(self, x: Tensor) -> Tensor:
        """What the head sees: pooled features, or the module's output (on tokens or pooled features)."""
        if self.module is None:
            return self.backbone.forward_pooled(x)
        if getattr(self.module, "takes", "tokens") == "pooled":
            return self.module(self.backbone.forward_pooled(x))
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
        """BatchNorm-type layers (including SyncBatchNorm and timm's BatchNormAct2d) of the backbone
        and the module: the ones a strategy's BN policy is about. A head's own (``adaptor_head``) are
        new and train with it."""
        head = set(map(id, self.head.modules()))
        return [
            m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and id(m) not in head
        ]

    def reset_head(self, num_outputs: int) -> None:
        if num_outputs < 1:
            raise ConfigError(f"a model needs at least one output, got {num_outputs}")
        device = next(self.head.parameters()).device
        self.head = self._new_head(num_outputs).to(device)
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
    adaptor: dict[str, Any] | None = None,
) -> TransferModel:
    """A randomly initialised TransferModel; ``checkpoints.load_init`` then fills it.

    ``image_size`` sizes fixed-size backbones (ViT, Swin) and the CDTM's token count; it defaults to
    the backbone's pretrained input size. ``module="adaptor"`` takes ``adaptor``, the image path's
    spec (``AdaptorImagePath.spec``; default: the Adaptor's architecture on this backbone's pooled
    features); its weights come from the Adaptor run (the objective loads them).
    """
    if module is not None and module not in MODULES:
        raise UnknownChoiceError("module", module, MODULES)
    net = create_backbone(backbone, in_chans=in_chans, image_size=image_size)
    if truncate is not None:
        if module == "adaptor":
            raise ConfigError(
                "an Adaptor reads the pooled features of the whole encoder it was trained on; "
                f"the strategy truncates it to {truncate} stages"
            )
        net = net.truncated(truncate)
    extra: nn.Module | None = None
    if module == "cdtm":
        size = image_size or int(net.pretrained_cfg["input_size"][-1])
        num_tokens, dim = token_shape(net, size)
        extra = CrossDomainTransferModule(dim, num_tokens)
    elif module == "adaptor":
        extra = AdaptorImagePath.from_spec(adaptor or {"vision_dim": net.num_features, **IMAGE_PATH_DEFAULTS})
    spec = {
        "backbone": backbone,
        "num_outputs": num_outputs,
        "in_chans": in_chans,
        "module": module,
        "truncate": truncate,
        "image_size": image_size,
    }
    if module == "adaptor":
        spec["adaptor"] = dict(extra.spec)  # type: ignore[union-attr]
    return TransferModel(net, num_outputs, extra, spec=spec)
