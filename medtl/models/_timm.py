"""Any timm model behind the Backbone interface.

Everything is derived from timm's own metadata, never from the architecture's name: stages from
``feature_info`` (ViTs, whose blocks all share one resolution, get 4 evenly spaced blocks as stage
ends), the stem from ``group_matcher``, blocks from timm's fine parameter groups, feature maps from
``forward_intermediates`` and truncation from ``prune_intermediate_layers``.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from torch import Tensor, nn

from medtl.errors import ConfigError
from medtl.models.backbone import (
    Backbone,
    blocks_from_groups,
    has_prefix,
    parameter_names,
    prefixed,
    split_by_stage_ends,
)

VIT_STAGES = 4


def _stem_pattern(model: nn.Module) -> re.Pattern[str] | None:
    matcher = model.group_matcher(coarse=True) if hasattr(model, "group_matcher") else {}
    stem = matcher.get("stem")
    if isinstance(stem, str):
        return re.compile(stem)
    if isinstance(stem, (list, tuple)):
        return re.compile("|".join(f"(?:{p[0] if isinstance(p, tuple) else p})" for p in stem))
    return None


def stage_feature_indices(model: nn.Module) -> tuple[str, list[int]]:
    """(the first feature module after the stem, indices into ``model.feature_info`` that end a stage)."""
    names = parameter_names(model)
    stem = _stem_pattern(model)
    indices = []
    for i, info in enumerate(model.feature_info):
        owned = [n for n in names if has_prefix(n, info["module"])]
        # Entries without parameters (ResNet's 'act1') or made of stem parameters are the stem's output.
        if owned and not (stem is not None and all(stem.match(n) for n in owned)):
            indices.append(i)
    first = model.feature_info[indices[0]]["module"]
    if len(indices) > VIT_STAGES and len({model.feature_info[i]["reduction"] for i in indices}) == 1:
        n = len(indices)
        indices = [indices[(s + 1) * n // VIT_STAGES - 1] for s in range(VIT_STAGES)]
    return first, indices


class TimmBackbone(Backbone):
    source = "timm"

    def __init__(
        self,
        name: str,
        model: nn.Module,
        *,
        in_chans: int,
        feature_info: list[dict[str, Any]] | None = None,
        stages: tuple[str, list[int]] | None = None,
        truncated_to: int | None = None,
    ) -> None:
        super().__init__()
        if not hasattr(model, "forward_intermediates"):
            raise ConfigError(f"timm model '{name}' has no feature-map interface; choose another backbone")
        self.name = name
        self.model = model
        self.in_chans = in_chans
        self.truncated_to = truncated_to
        self._feature_info = [dict(f) for f in (feature_info or model.feature_info)]
        self._first_module, self._feature_indices = stages or stage_feature_indices(model)
        infos = [self._feature_info[i] for i in self._feature_indices]
        self.stage_channels = [int(f["num_chs"]) for f in infos]
        self.stage_reductions = [int(f["reduction"]) for f in infos]
        if truncated_to is None:
            self.num_features = int(getattr(model, "head_hidden_size", None) or model.num_features)
            self.token_dim = int(model.num_features)
        else:
            self.num_features = self.token_dim = self.stage_channels[-1]
        self.pretrained_cfg = dict(model.pretrained_cfg)

    @property
    def stage_modules(self) -> list[str]:
        return [self._feature_info[i]["module"] for i in self._feature_indices]

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        return self.model.forward_intermediates(
            x, indices=self._feature_indices, intermediates_only=True, output_fmt="NCHW"
        )

    @property
    def _stem_index(self) -> int | None:
        """The feature_info entry of the stem's output (timm ResNets' ``act1`` at 1/2), if it is finer
        than the first stage."""
        first = self._feature_indices[0]
        finer = [
            i for i in range(first) if int(self._feature_info[i]["reduction"]) < self.stage_reductions[0]
        ]
        return finer[-1] if finer else None

    @property
    def stem_feature(self) -> tuple[int, int] | None:
        index = self._stem_index
        if index is None:
            return None
        info = self._feature_info[index]
        return int(info["num_chs"]), int(info["reduction"])

    def forward_pyramid(self, x: Tensor) -> list[Tensor]:
        index = self._stem_index
        if index is None:
            return self.forward_stages(x)
        return self.model.forward_intermediates(
            x, indices=[index, *self._feature_indices], intermediates_only=True, output_fmt="NCHW"
        )

    def forward_pooled(self, x: Tensor) -> Tensor:
        if self.truncated_to is not None:
            return self.forward_stages(x)[-1].mean(dim=(2, 3))
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)

    def forward_tokens(self, x: Tensor) -> Tensor:
        if self.truncated_to is not None:
            return self.forward_stages(x)[-1].flatten(2).transpose(1, 2)
        features = self.model.forward_features(x)
        if features.ndim == 3:  # (B, prefix + N, C)
            return features[:, getattr(self.model, "num_prefix_tokens", 0) :]
        if getattr(self.model, "output_fmt", "NCHW") == "NHWC":
            return features.flatten(1, 2)
        return features.flatten(2).transpose(1, 2)

    def _native_groups(self) -> dict[str, list[str]]:
        names = parameter_names(self.model)
        return split_by_stage_ends(names, self.stage_modules, self._first_module, _stem_pattern(self.model))

    def groups(self) -> dict[str, list[str]]:
        return {k: prefixed(v) for k, v in self._native_groups().items()}

    def blocks(self) -> list[list[str]]:
        from timm.models import group_parameters

        names = parameter_names(self.model)
        last_module = self.stage_modules[-1]
        last_end = max(i for i, n in enumerate(names) if has_prefix(n, last_module))
        fine = group_parameters(self.model, self.model.group_matcher(coarse=False))
        blocks = blocks_from_groups(fine.values(), self._native_groups()["stem"], names[last_end + 1 :])
        return [prefixed(b) for b in blocks]

    def truncated(self, num_stages: int) -> TimmBackbone:
        self._check_truncation(num_stages)
        model = copy.deepcopy(self.model)
        keep = self._feature_indices[:num_stages]
        model.prune_intermediate_layers(indices=[keep[-1]], prune_norm=True, prune_head=True)
        return TimmBackbone(
            self.name,
            model,
            in_chans=self.in_chans,
            feature_info=self._feature_info,
            stages=(self._first_module, keep),
            truncated_to=num_stages,
        )
