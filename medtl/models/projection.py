"""SimCLR projection heads: what maps a backbone's pooled features to the space of the loss.

* ``mlp`` (default, SimCLR v1): Linear(d, hidden) -> ReLU -> Linear(hidden, out).
* ``study`` (the domain-boundaries study's projector): three bias-free linear layers,
  Linear(d, d) -> ReLU -> Linear(d, d) -> Sigmoid -> Linear(d, out); with d = 2048 (ResNet-50) and
  out = 256 this is the study's 2048 -> 2048 -> ReLU -> 2048 -> Sigmoid -> 256.

The projector is discarded after pretraining (only the backbone transfers), so it is written to a
separate file beside the backbone checkpoint.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from medtl.errors import ConfigError, UnknownChoiceError
from medtl.models.backbone import Backbone

PROJECTORS = ("mlp", "study")


def build_projector(
    kind: str, in_features: int, *, hidden: int | None = None, out: int = 128
) -> nn.Sequential:
    """A projection head for ``in_features``-dimensional pooled features; ``hidden`` defaults to
    ``in_features``."""
    if kind not in PROJECTORS:
        raise UnknownChoiceError("projector", kind, PROJECTORS)
    if in_features < 1 or out < 1 or (hidden is not None and hidden < 1):
        raise ConfigError(f"projector sizes must be positive (in {in_features}, hidden {hidden}, out {out})")
    hidden = hidden or in_features
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))
    return nn.Sequential(
        nn.Linear(in_features, hidden, bias=False),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden, bias=False),
        nn.Sigmoid(),
        nn.Linear(hidden, out, bias=False),
    )


class SimCLRNetwork(nn.Module):
    """A backbone and its projector, addressable by strategies like every medtl model: groups are the
    backbone's (stem, stage1..N) then "head" (the projector, what a head-only phase would train)."""

    def __init__(self, backbone: Backbone, projector: nn.Module, *, spec: dict[str, Any]) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = projector
        self.spec = dict(spec)

    def forward(self, x: Tensor) -> Tensor:
        """Projections (B, out) of images (B, C, H, W)."""
        return self.head(self.backbone.forward_pooled(x))

    def forward_head_input(self, x: Tensor) -> Tensor:
        """Pooled backbone features: what the k-NN monitor and downstream tasks use."""
        return self.backbone.forward_pooled(x)

    def groups(self) -> dict[str, list[str]]:
        groups = {g: [f"backbone.{n}" for n in names] for g, names in self.backbone.groups().items()}
        groups["head"] = [f"head.{n}" for n, _ in self.head.named_parameters()]
        return groups

    def blocks(self) -> list[list[str]]:
        return [[f"backbone.{n}" for n in block] for block in self.backbone.blocks()]

    def norm_layers(self) -> list[nn.Module]:
        return [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
