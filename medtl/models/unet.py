"""A U-Net over any registry backbone: encoder feature maps -> MONAI decoder -> segmentation head.

The encoder is a ``Backbone`` and its maps come from ``forward_pyramid`` (the stem's own map where it
is finer than stage 1, then one map per stage), so the decoder is written once against channels and
reductions, never against an architecture (segmentation_models_pytorch's encoder contract):

* **pyramid** encoders (ResNets, DenseNet, ConvNeXt, EfficientNet, Swin, ...) feed MONAI's
  ``UNetDecoder``: one block per factor 2 from the deepest map back to full resolution, each
  upsampling (nearest), concatenating the encoder map of that resolution when there is one and
  applying two 3x3 conv-BN-ReLU. For a ResNet that is segmentation_models_pytorch's U-Net: the stem
  (1/2) and stages 1-3 are the skips, stage 4 the bottleneck, decoder widths 256, 128, 64, 32, 16.
* **isotropic** encoders (ViT and other token models whose maps share one reduction) are decoded
  UNETR-style with MONAI's blocks: the last map is the bottleneck, earlier maps are brought up to
  the resolutions they skip into by learned transposed convolutions, and a conv block on the image
  is the full-resolution skip.

The head is MONAI's ``SegmentationHead`` (a 3x3 conv to one logit per output channel). Groups are the
backbone's (``stem``, ``stage1`` ...) then ``decoder`` and ``head``; ``head_groups()`` names the
parts a head-only (frozen encoder) phase trains.

Conditioned on a pretrained Adaptor (``module``, an ``AdaptorImagePath``; the ``adaptor``
strategy): the Adaptor's image feature of the encoder's pooled features, (B, 768), is broadcast over
the bottleneck's grid and concatenated with the bottleneck map, so every decoder level below sees
it (group ``module``). The Adaptor study's own U-Net decoded from the fused vector alone, expanded
by transposed convolutions fixed to 224/448/896-pixel inputs; concatenation keeps the encoder's
deepest map too and works at any size. The pooled features are those the Adaptor was trained on
(``forward_pooled`` of the unpadded image, one more pass of the frozen encoder).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medtl.errors import ConfigError
from medtl.models.adaptor import IMAGE_PATH_DEFAULTS, AdaptorImagePath
from medtl.models.backbone import Backbone
from medtl.models.registry import create_backbone

ARCHITECTURE = "unet"
# segmentation_models_pytorch's U-Net defaults, which the 21-model benchmark used.
DECODER_CHANNELS: tuple[int, ...] = (256, 128, 64, 32, 16)
# What the refusal of an encoder names as working instead.
WORKING_ENCODERS = (
    "CNNs with per-stage feature maps at 1/4 ... 1/32 (resnet18/34/50/101, densenet121, timm resnet*, "
    "convnext*, efficientnet*, regnet*, swin*) and ViTs with patch size 8 or 16 (UNETR-style)"
)


@dataclass(frozen=True)
class EncoderPlan:
    """How the decoder reads an encoder: ``levels`` factor-2 steps from the bottleneck to full size;
    ``skips[k]`` is the index into ``forward_pyramid`` of the map at reduction ``2**(k + 1)`` (or None),
    for k = 0 .. levels - 2."""

    kind: str  # "pyramid" or "isotropic"
    levels: int
    channels: tuple[int, ...]  # of every pyramid map
    reductions: tuple[int, ...]
    skips: tuple[int | None, ...]


def _refuse(backbone: Backbone, why: str) -> ConfigError:
    return ConfigError(
        f"backbone '{backbone.name}' cannot be a U-Net encoder: {why}; encoders that work: {WORKING_ENCODERS}"
    )


def encoder_plan(backbone: Backbone) -> EncoderPlan:
    """Check that ``backbone`` can serve as a U-Net encoder and describe its maps (ConfigError if not)."""
    if backbone.truncated_to is not None:
        raise _refuse(backbone, f"it is truncated to {backbone.truncated_to} stages")
    channels = [int(c) for c in backbone.stage_channels]
    reductions = [int(r) for r in backbone.stage_reductions]
    stem = backbone.stem_feature
    if stem is not None:
        channels, reductions = [stem[0], *channels], [stem[1], *reductions]
    if not reductions:
        raise _refuse(backbone, "it has no feature maps")
    if any(r < 2 or r & (r - 1) for r in reductions):
        listed = ", ".join(map(str, reductions))
        raise _refuse(
            backbone,
            f"its feature maps are at 1/{listed.replace(', ', ', 1/')} of the image, and the decoder "
            "doubles the resolution per level, so each must be a power of two",
        )
    levels = int(math.log2(reductions[-1]))
    if len(set(reductions)) == 1:
        if len(reductions) < levels:
            raise _refuse(
                backbone,
                f"its {len(reductions)} maps at 1/{reductions[0]} give too few skips for {levels} levels",
            )
        # Skip into reduction 2**(k+1) from the map (levels - 1 - k) places before the bottleneck.
        skips = tuple(len(reductions) - levels + k for k in range(levels - 1))
        return EncoderPlan("isotropic", levels, tuple(channels), tuple(reductions), skips)
    if any(b < a for a, b in itertools.pairwise(reductions)):
        raise _refuse(backbone, f"its feature maps do not get coarser stage by stage ({reductions})")
    if len(reductions) < 2:
        raise _refuse(backbone, "it has a single feature map, so there is nothing to skip")
    # The deepest map at each reduction is the skip into it.
    at = {r: i for i, r in enumerate(reductions[:-1]) if r < reductions[-1]}
    skips = tuple(at.get(2 ** (k + 1)) for k in range(levels - 1))
    return EncoderPlan("pyramid", levels, tuple(channels), tuple(reductions), skips)


class PyramidDecoder(nn.Module):
    """MONAI's UNetDecoder (segmentation_models_pytorch's structure: nearest upsampling, concatenation,
    two conv-BN-ReLU per level) over the maps an ``EncoderPlan`` names."""

    def __init__(
        self, plan: EncoderPlan, widths: Sequence[int], in_chans: int, bottleneck_extra: int = 0
    ) -> None:
        from monai.networks.nets.flexible_unet import UNetDecoder

        super().__init__()
        self.plan = plan
        skip_channels = [0 if i is None else plan.channels[i] for i in plan.skips]
        self.decoder = UNetDecoder(
            spatial_dims=2,
            # [input, maps at 1/2 ... 1/2**(levels-1), bottleneck]; the input's entry is never used.
            encoder_channels=[in_chans, *skip_channels, plan.channels[-1] + bottleneck_extra],
            decoder_channels=list(widths),
            act=("relu", {"inplace": True}),
            norm="batch",
            dropout=0.0,
            bias=False,
            upsample="nontrainable",
            pre_conv=None,
            interp_mode="nearest",
            align_corners=None,
            is_pad=True,
        )

    def forward(self, maps: list[Tensor], image: Tensor) -> Tensor:
        skips: list[Tensor | None] = [None if i is None else maps[i] for i in self.plan.skips]
        return self.decoder([*skips, maps[-1]], skip_connect=self.plan.levels - 1)  # type: ignore[list-item]


class TokenDecoder(nn.Module):
    """UNETR's decoder with MONAI's blocks, for maps that all share one reduction (ViT tokens)."""

    def __init__(
        self,
        plan: EncoderPlan,
        widths: Sequence[int],
        in_chans: int,
        bottleneck_extra: int = 0,
        norm: str = "instance",
    ) -> None:
        from monai.networks.blocks import UnetrBasicBlock, UnetrPrUpBlock, UnetrUpBlock

        super().__init__()
        self.plan = plan
        hidden = plan.channels[-1] + bottleneck_extra
        levels = plan.levels
        # Level j (1-based, deepest first) upsamples to 1/2**(levels - j); its skip is widths[j-1] wide.
        self.skip_ups = nn.ModuleList(
            UnetrPrUpBlock(
                2,
                plan.channels[plan.skips[levels - 1 - j]],
                widths[j - 1],
                num_layer=j - 1,
                kernel_size=3,
                stride=1,
                upsample_kernel_size=2,
                norm_name=norm,
                conv_block=True,
                res_block=True,
            )
            for j in range(1, levels)
        )
        self.image_block = UnetrBasicBlock(2, in_chans, widths[levels - 1], 3, 1, norm, res_block=True)
        ins = [hidden, *widths[: levels - 1]]
        self.ups = nn.ModuleList(
            UnetrUpBlock(
                2, ins[j], widths[j], kernel_size=3, upsample_kernel_size=2, norm_name=norm, res_block=True
            )
            for j in range(levels)
        )

    def forward(self, maps: list[Tensor], image: Tensor) -> Tensor:
        levels = self.plan.levels
        x = maps[-1]
        for j, up in enumerate(self.ups, start=1):
            if j < levels:
                skip = self.skip_ups[j - 1](maps[self.plan.skips[levels - 1 - j]])
            else:
                skip = self.image_block(image)
            x = up(x, skip)
        return x


class UNet(nn.Module):
    """``head(decoder(backbone.forward_pyramid(x)))``: logits (B, num_outputs, H, W) at the input size.

    Inputs whose sides are not multiples of the encoder's deepest reduction are zero-padded to the next
    multiple and the logits cropped back, so any image size works (fixed-size encoders such as ViT are
    built for one size and refuse others). ``module``: an Adaptor's image path whose feature
    conditions the bottleneck (module docstring). ``spec`` holds the ``build_unet`` arguments.
    """

    def __init__(
        self,
        backbone: Backbone,
        num_outputs: int,
        *,
        decoder_channels: Sequence[int] = DECODER_CHANNELS,
        module: AdaptorImagePath | None = None,
        spec: dict[str, Any] | None = None,
    ) -> None:
        from monai.networks.nets.flexible_unet import SegmentationHead

        super().__init__()
        if num_outputs < 1:
            raise ConfigError(f"a model needs at least one output, got {num_outputs}")
        plan = encoder_plan(backbone)
        if len(decoder_channels) < plan.levels:
            raise ConfigError(
                f"backbone '{backbone.name}' needs {plan.levels} decoder widths (its deepest map is at "
                f"1/{plan.reductions[-1]}); got {len(decoder_channels)}: {list(decoder_channels)}"
            )
        widths = [int(w) for w in decoder_channels[: plan.levels]]
        self.plan = plan
        self.backbone = backbone
        self.module = module
        extra = 0 if module is None else int(module.out_features)
        decoder_cls = PyramidDecoder if plan.kind == "pyramid" else TokenDecoder
        self.decoder = decoder_cls(plan, widths, backbone.in_chans, extra)
        self.head = SegmentationHead(2, widths[-1], num_outputs, kernel_size=3)
        self.divisor = plan.reductions[-1]
        self.spec = dict(
            spec
            or {
                "architecture": ARCHITECTURE,
                "backbone": backbone.name,
                "num_outputs": num_outputs,
                "in_chans": backbone.in_chans,
                "decoder_channels": widths,
            }
        )

    @property
    def num_outputs(self) -> int:
        return int(self.head[0].out_channels)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        pad_h, pad_w = (-height) % self.divisor, (-width) % self.divisor
        image = x
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        maps = self.backbone.forward_pyramid(x)
        if self.module is not None:
            feature = self.module(self.backbone.forward_pooled(image))  # (B, dim)
            bottleneck = maps[-1]
            grid = feature[:, :, None, None].expand(-1, -1, *bottleneck.shape[-2:]).to(bottleneck.dtype)
            maps = [*maps[:-1], torch.cat([bottleneck, grid], dim=1)]
        logits = self.head(self.decoder(maps, x))
        return logits[..., :height, :width]

    # -- what strategies address ------------------------------------------------------------------
    def groups(self) -> dict[str, list[str]]:
        """Backbone groups (stem, stage1..N), then "decoder" and "head"; full parameter names."""
        groups = {g: [f"backbone.{n}" for n in names] for g, names in self.backbone.groups().items()}
        if self.module is not None:
            groups["module"] = [f"module.{n}" for n, _ in self.module.named_parameters()]
        groups["decoder"] = [f"decoder.{n}" for n, _ in self.decoder.named_parameters()]
        groups["head"] = [f"head.{n}" for n, _ in self.head.named_parameters()]
        return groups

    def head_groups(self) -> list[str]:
        """The groups a head-only phase trains: everything that is new on top of the encoder."""
        return ["decoder", "head"]

    def blocks(self) -> list[list[str]]:
        return [[f"backbone.{n}" for n in block] for block in self.backbone.blocks()]

    def norm_layers(self) -> list[nn.Module]:
        """The encoder's BatchNorm-type layers: the BN policy of a strategy is about pretrained
        statistics; the decoder's BatchNorm layers are new and train with the decoder."""
        return [m for m in self.backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def build_unet(
    backbone: str,
    num_outputs: int,
    *,
    in_chans: int = 3,
    image_size: int | None = None,
    decoder_channels: Sequence[int] = DECODER_CHANNELS,
    architecture: str = ARCHITECTURE,
    adaptor: dict[str, Any] | bool | None = None,
) -> UNet:
    """A randomly initialised U-Net over the registry backbone ``backbone``; ``checkpoints.load_init``
    then fills its encoder. ``image_size`` sizes fixed-size encoders (ViT, Swin). ``adaptor``: the
    spec of an Adaptor's image path conditioning the bottleneck (True: the Adaptor's default
    architecture on this encoder); its weights come from the Adaptor run."""
    if architecture != ARCHITECTURE:
        raise ConfigError(f"build_unet builds '{ARCHITECTURE}' models, not '{architecture}'")
    net = create_backbone(backbone, in_chans=in_chans, image_size=image_size)
    module = None
    if adaptor:
        given = adaptor if isinstance(adaptor, dict) else {}
        module = AdaptorImagePath.from_spec(given or {"vision_dim": net.num_features, **IMAGE_PATH_DEFAULTS})
    spec = {
        "architecture": ARCHITECTURE,
        "backbone": backbone,
        "num_outputs": num_outputs,
        "in_chans": in_chans,
        "image_size": image_size,
        "decoder_channels": [int(w) for w in decoder_channels],
    }
    if module is not None:
        spec["adaptor"] = dict(module.spec)
    return UNet(net, num_outputs, decoder_channels=decoder_channels, module=module, spec=spec)


def unet_info(backbone: str, num_outputs: int = 1, *, image_size: int | None = None) -> dict[str, Any]:
    """Groups with parameter counts and the decoder's levels of a U-Net over ``backbone`` (built on the
    meta device: counts without allocating weights)."""
    with torch.device("meta"):
        model = build_unet(backbone, num_outputs, image_size=image_size)
    params = dict(model.named_parameters())
    groups = {g: sum(params[n].numel() for n in names) for g, names in model.groups().items()}
    plan = model.plan
    return {
        "name": backbone,
        "architecture": ARCHITECTURE,
        "decoder": plan.kind,
        "levels": plan.levels,
        "skips": [None if i is None else 2 ** (k + 1) for k, i in enumerate(plan.skips)],
        "map_channels": list(plan.channels),
        "map_reductions": list(plan.reductions),
        "decoder_channels": model.spec["decoder_channels"][: plan.levels],
        "num_outputs": num_outputs,
        "parameters": sum(p.numel() for p in params.values()),
        "groups": groups,
        "head_groups": model.head_groups(),
    }


def sliding_window_logits(
    model: nn.Module, images: Tensor, roi_size: int, *, overlap: float = 0.25, batch_size: int = 4
) -> Tensor:
    """Logits of images larger than the training size, from ``roi_size`` windows (MONAI's
    sliding-window inference, Gaussian-weighted where windows overlap); smaller images go in whole."""
    if max(images.shape[-2:]) <= roi_size:
        return model(images)
    from monai.inferers import sliding_window_inference

    return sliding_window_inference(
        images, (roi_size, roi_size), batch_size, model, overlap=overlap, mode="gaussian"
    )
