"""Backbone names: list them, describe them, create them.

``resnet18|34|50|101`` and ``densenet121`` are torchvision models; every other name is a timm model,
optionally with a pretrained tag (``vit_base_patch16_224.augreg_in21k``). ``timm/<name>`` forces timm
and ``tv/<name>`` torchvision. Models are always created with random weights; ``checkpoints.load_init``
fills them.
"""

from __future__ import annotations

import fnmatch
from typing import Any

import torch

from medtl.errors import UnknownChoiceError
from medtl.models import _torchvision
from medtl.models.backbone import Backbone

TORCHVISION_NAMES: tuple[str, ...] = tuple(_torchvision.ARCHS)
TIMM_PREFIX, TV_PREFIX = "timm/", "tv/"


def _timm_display(name: str) -> str:
    return TIMM_PREFIX + name if name.split(".")[0] in TORCHVISION_NAMES else name


def list_backbones(pattern: str = "*", *, pretrained: bool = False) -> list[str]:
    """Backbone names matching ``pattern`` (fnmatch wildcards): torchvision first, then timm.

    With ``pretrained``, timm names carry their pretrained tag (one entry per set of weights).
    timm names that torchvision also has are listed as ``timm/<name>``.
    """
    import timm

    if pattern.startswith(TV_PREFIX):
        return [TV_PREFIX + n for n in TORCHVISION_NAMES if fnmatch.fnmatch(n, pattern[len(TV_PREFIX) :])]
    timm_only = pattern.startswith(TIMM_PREFIX)
    bare = pattern[len(TIMM_PREFIX) :] if timm_only else pattern
    tv = [] if timm_only else [n for n in TORCHVISION_NAMES if fnmatch.fnmatch(n, bare)]
    return tv + [_timm_display(n) for n in timm.list_models(bare, pretrained=pretrained)]


def resolve_name(name: str) -> tuple[str, str]:
    """(source, name within that library) for a backbone name; unknown names raise with close matches."""
    import timm

    if name.startswith(TV_PREFIX):
        bare = name[len(TV_PREFIX) :]
        if bare not in TORCHVISION_NAMES:
            raise UnknownChoiceError("torchvision backbone", bare, TORCHVISION_NAMES)
        return "torchvision", bare
    if not name.startswith(TIMM_PREFIX) and name in TORCHVISION_NAMES:
        return "torchvision", name
    bare = name[len(TIMM_PREFIX) :] if name.startswith(TIMM_PREFIX) else name
    arch, _, tag = bare.partition(".")
    if not timm.is_model(arch):
        raise UnknownChoiceError("backbone", name, list_backbones())
    if tag and bare not in timm.list_pretrained(f"{arch}.*"):
        raise UnknownChoiceError("pretrained tag", bare, timm.list_pretrained(f"{arch}.*"))
    return "timm", bare


def create_backbone(name: str, *, in_chans: int = 3, image_size: int | None = None) -> Backbone:
    """A randomly initialised backbone; ``image_size`` only matters for fixed-size models (ViT, Swin)."""
    source, bare = resolve_name(name)
    if source == "torchvision":
        return _torchvision.TorchvisionBackbone.create(bare, in_chans=in_chans)
    import timm

    from medtl.models._timm import TimmBackbone

    kwargs: dict[str, Any] = {}
    cfg = timm.models.get_pretrained_cfg(bare)
    if image_size is not None and cfg is not None and cfg.fixed_input_size:
        kwargs["img_size"] = image_size
    model = timm.create_model(bare, pretrained=False, num_classes=0, in_chans=in_chans, **kwargs)
    return TimmBackbone(bare, model, in_chans=in_chans)


def _describe_cfg(backbone: Backbone) -> dict[str, Any]:
    keys = ("architecture", "tag", "input_size", "mean", "std", "interpolation", "crop_pct", "first_conv")
    cfg = {k: backbone.pretrained_cfg.get(k) for k in keys}
    cfg["classifier"] = backbone.pretrained_cfg.get("classifier")
    return cfg


def backbone_info(name: str) -> dict[str, Any]:
    """What a backbone offers: source, feature sizes, stages, groups with parameter counts, blocks,
    and its pretrained configuration (mean/std, input size) and where its ImageNet weights go."""
    from medtl.models.weights import imagenet_location

    # Built on the meta device: shapes and counts without allocating or initialising weights.
    with torch.device("meta"):
        backbone = create_backbone(name)
    params = dict(backbone.named_parameters())
    groups = {g: sum(params[n].numel() for n in names) for g, names in backbone.groups().items()}
    return {
        "name": name,
        "source": backbone.source,
        "num_features": backbone.num_features,
        "token_dim": backbone.token_dim,
        "stage_channels": backbone.stage_channels,
        "stage_reductions": backbone.stage_reductions,
        "num_blocks": len(backbone.blocks()),
        "parameters": sum(p.numel() for p in params.values()),
        "groups": groups,
        "default_cfg": _describe_cfg(backbone),
        "imagenet_weights": imagenet_location(backbone),
    }


def num_features(name: str) -> int:
    """Pooled feature size without allocating the model."""
    with torch.device("meta"):
        return create_backbone(name).num_features
