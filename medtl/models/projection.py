"""SimCLR projection heads: what maps a backbone's pooled features to the space of the loss.

* ``mlp`` (default, SimCLR v1): Linear(d, hidden) -> ReLU -> Linear(hidden, out).
* ``study`` (the domain-boundaries study's projector): three bias-free linear layers,
  Linear(d, d) -> ReLU -> Linear(d, d) -> Sigmoid -> Linear(d, out); with d = 2048 (ResNet-50) and
  out = 256 this is the study's 2048 -> 2048 -> ReLU -> 2048 -> Sigmoid -> 256.

The projector is discarded after pretraining (only the backbone transfers), so it is written to a
separate file beside the backbone checkpoint.
"""

from __future__ import annotations

from torch import nn

from medtl.errors import ConfigError, UnknownChoiceError

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
