"""The one interface every backbone offers, whichever library built it.

A ``Backbone`` wraps a torchvision or timm network (``self.model``, classifier removed) so that
strategies, the engine and the U-Net see the same methods for every architecture: pooled features,
per-stage feature maps, tokens, named parameter groups and fine-grained blocks. Parameter names are
relative to the backbone, e.g. ``model.layer4.2.conv3.weight``; the native checkpoint key is the name
without the ``model.`` prefix.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from medtl.errors import ConfigError

MODEL_PREFIX = "model."


class Backbone(nn.Module, abc.ABC):
    """A feature extractor with named stages; see the module docstring."""

    name: str
    source: str  # "torchvision" or "timm"
    model: nn.Module
    in_chans: int
    num_features: int
    token_dim: int
    stage_channels: list[int]
    stage_reductions: list[int]
    pretrained_cfg: dict[str, Any]
    truncated_to: int | None

    @property
    def num_stages(self) -> int:
        return len(self.stage_channels)

    @property
    def first_conv(self) -> str:
        """Native name of the first convolution (the one adapted to ``in_chans``)."""
        return str(self.pretrained_cfg["first_conv"])

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_pooled(x)

    @abc.abstractmethod
    def forward_pooled(self, x: Tensor) -> Tensor:
        """Pooled features (B, num_features), what a classification head sees."""

    @abc.abstractmethod
    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """One feature map (B, C_i, H_i, W_i) per stage, shallow to deep."""

    @property
    def stem_feature(self) -> tuple[int, int] | None:
        """(channels, reduction) of the stem's own feature map when it is finer than stage 1 (a ResNet's
        map before its max-pool, at 1/2), else None. A U-Net uses it as its shallowest skip."""
        return None

    def forward_pyramid(self, x: Tensor) -> list[Tensor]:
        """The stem's feature map (when ``stem_feature`` is not None) followed by ``forward_stages``."""
        return self.forward_stages(x)

    @abc.abstractmethod
    def forward_tokens(self, x: Tensor) -> Tensor:
        """Tokens (B, N, token_dim): ViT patch tokens without prefix tokens, or the last map flattened."""

    @abc.abstractmethod
    def groups(self) -> dict[str, list[str]]:
        """Ordered ``{"stem": [...], "stage1": [...], ...}`` of parameter names; every parameter once."""

    @abc.abstractmethod
    def blocks(self) -> list[list[str]]:
        """Fine-grained blocks (residual block, transformer block, ...) in forward order."""

    @abc.abstractmethod
    def truncated(self, num_stages: int) -> Backbone:
        """A copy with the stem and the first ``num_stages`` stages only; pooled over the last one."""

    def native_state_dict(self) -> dict[str, Tensor]:
        """State dict under native (torchvision/timm) key names, as checkpoints spell them."""
        return self.model.state_dict()

    def _check_truncation(self, num_stages: int) -> None:
        if not 1 <= num_stages <= self.num_stages:
            raise ConfigError(
                f"backbone '{self.name}' has {self.num_stages} stages; cannot truncate to {num_stages}"
            )


def parameter_names(module: nn.Module) -> list[str]:
    return [name for name, _ in module.named_parameters()]


def prefixed(names: Iterable[str], prefix: str = MODEL_PREFIX) -> list[str]:
    return [prefix + n for n in names]


def has_prefix(name: str, module_path: str) -> bool:
    return name == module_path or name.startswith(module_path + ".")


def split_by_stage_ends(
    names: Sequence[str],
    stage_modules: Sequence[str],
    first_module: str,
    is_stem: re.Pattern[str] | None,
) -> dict[str, list[str]]:
    """Assign parameter names (in registration order) to stem and stages.

    Stage i ends with the last parameter of ``stage_modules[i]``; parameters between two stage ends
    belong to the later stage (a ViT stage spans several blocks), parameters after the last end
    (final norms) to the last stage. The stem is what matches ``is_stem`` or comes before
    ``first_module`` (the first feature module: ``blocks.0`` for a ViT whose stage 1 ends at ``blocks.2``).
    """
    ends = []
    for module_path in stage_modules:
        idx = [i for i, n in enumerate(names) if has_prefix(n, module_path)]
        if not idx:
            raise ValueError(f"stage module {module_path!r} has no parameters")
        ends.append(max(idx))
    start = min(i for i, n in enumerate(names) if has_prefix(n, first_module))
    groups: dict[str, list[str]] = {"stem": []}
    groups.update({f"stage{i + 1}": [] for i in range(len(stage_modules))})
    for i, n in enumerate(names):
        if i < start or (is_stem is not None and is_stem.match(n)):
            groups["stem"].append(n)
            continue
        stage = next((s for s, end in enumerate(ends) if i <= end), len(ends) - 1)
        groups[f"stage{stage + 1}"].append(n)
    return groups


def blocks_from_groups(
    fine_groups: Iterable[Sequence[str]], stem: Iterable[str], post: Iterable[str]
) -> list[list[str]]:
    """Turn fine parameter groups into blocks: stem parameters leave, and a group made only of
    ``post`` parameters (norms after the last stage) joins the block before it."""
    stem_set, post_set = set(stem), set(post)
    blocks: list[list[str]] = []
    for group in fine_groups:
        names = [n for n in group if n not in stem_set]
        if not names:
            continue
        if blocks and all(n in post_set for n in names):
            blocks[-1].extend(names)
        else:
            blocks.append(names)
    return blocks


def attach_loose(names: Sequence[str], block_prefixes: Sequence[str], stem: Iterable[str]) -> list[list[str]]:
    """Blocks from module prefixes; parameters outside every block (a DenseNet transition, a final norm)
    join the next block, or the last block when none follows."""
    stem_set = set(stem)
    blocks: list[list[str]] = [[] for _ in block_prefixes]
    pending: list[str] = []
    for n in names:
        if n in stem_set:
            continue
        owner = next((b for b, p in enumerate(block_prefixes) if has_prefix(n, p)), None)
        if owner is None:
            pending.append(n)
            continue
        if pending:
            blocks[owner].extend(pending)
            pending = []
        blocks[owner].append(n)
    if pending:
        blocks[-1].extend(pending)
    return [b for b in blocks if b]


def adapt_first_conv(model: nn.Module, path: str, in_chans: int) -> None:
    """Replace the first convolution for ``in_chans`` inputs, re-deriving its weights the way timm
    does (sum for one channel, repeat and rescale for more)."""
    from timm.models import adapt_input_conv

    conv = model.get_submodule(path)
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"first conv {path!r} is a {type(conv).__name__}, not Conv2d")
    if conv.in_channels == in_chans:
        return
    new = nn.Conv2d(
        in_chans,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=conv.bias is not None,
        device=conv.weight.device,
    )
    with torch.no_grad():
        new.weight.copy_(adapt_input_conv(in_chans, conv.weight))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    model.set_submodule(path, new)
