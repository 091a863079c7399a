"""Backbone names: listing with wildcards, resolving, unknown names, and backbone_info."""

from __future__ import annotations

import pytest

from medtl.errors import UnknownChoiceError
from medtl.models import backbone_info, create_backbone, list_backbones
from medtl.models.registry import resolve_name


def test_list_puts_torchvision_first_and_prefixes_timm_duplicates():
    names = list_backbones("resnet1*")
    assert names[:2] == ["resnet18", "resnet101"]
    assert "timm/resnet18" in names and "resnet10t" in names
    assert all(n.split("/")[-1].startswith("resnet1") for n in names)


@pytest.mark.parametrize(
    ("pattern", "expected", "absent"),
    [
        ("tv/*", ["tv/resnet18", "tv/densenet121"], ["tv/resnet10t"]),
        ("timm/densenet121", ["timm/densenet121"], ["densenet121"]),
        ("convnext_atto", ["convnext_atto"], ["resnet18"]),
    ],
)
def test_list_source_prefixes(pattern, expected, absent):
    names = list_backbones(pattern)
    assert all(e in names for e in expected)
    assert not any(a in names for a in absent)


def test_list_pretrained_gives_tags():
    names = list_backbones("vit_base_patch16_224*", pretrained=True)
    assert "vit_base_patch16_224.augreg_in21k" in names
    assert all("." in n for n in names)


@pytest.mark.parametrize(
    ("name", "resolved"),
    [
        ("resnet50", ("torchvision", "resnet50")),
        ("tv/densenet121", ("torchvision", "densenet121")),
        ("timm/resnet50", ("timm", "resnet50")),
        ("vit_base_patch16_224.augreg_in21k", ("timm", "vit_base_patch16_224.augreg_in21k")),
        ("vit_base_patch16_clip_224", ("timm", "vit_base_patch16_clip_224")),
    ],
)
def test_resolve_name(name, resolved):
    assert resolve_name(name) == resolved


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("resnet5O", "unknown backbone 'resnet5O', did you mean 'resnet50'"),
        ("convnext_tinyy", "unknown backbone 'convnext_tinyy', did you mean 'convnext_tiny'"),
        ("tv/resnet152", "unknown torchvision backbone 'resnet152', did you mean"),
        ("vit_base_patch16_224.augreg_in22k", "unknown pretrained tag 'vit_base_patch16_224.augreg_in22k'"),
    ],
)
def test_unknown_names_suggest_close_matches(name, message):
    with pytest.raises(UnknownChoiceError) as info:
        create_backbone(name)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_info_of_torchvision_resnet50():
    info = backbone_info("resnet50")
    assert info["source"] == "torchvision"
    assert (info["num_features"], info["token_dim"]) == (2048, 2048)
    assert info["stage_channels"] == [256, 512, 1024, 2048]
    assert info["stage_reductions"] == [4, 8, 16, 32]
    assert info["num_blocks"] == 16
    assert info["parameters"] == 23_508_032  # torchvision's 25,557,032 less the 1000-class fc
    assert list(info["groups"]) == ["stem", "stage1", "stage2", "stage3", "stage4"]
    assert info["groups"]["stem"] == 9_536 and info["groups"]["stage1"] == 215_808
    cfg = info["default_cfg"]
    assert cfg["mean"] == pytest.approx((0.485, 0.456, 0.406)) and cfg["input_size"] == (3, 224, 224)
    assert info["imagenet_weights"]["put"].endswith("hub/checkpoints/resnet50-0676ba61.pth")


def test_info_of_timm_vit_uses_its_pretrained_cfg():
    info = backbone_info("vit_base_patch16_224.augreg_in21k")
    assert info["source"] == "timm"
    assert (info["num_features"], info["token_dim"], info["num_blocks"]) == (768, 768, 12)
    assert info["default_cfg"]["mean"] == (0.5, 0.5, 0.5)
    assert info["default_cfg"]["tag"] == "augreg_in21k"
    assert info["imagenet_weights"]["hf_hub_id"] == "timm/vit_base_patch16_224.augreg_in21k"
    assert sum(info["groups"].values()) == info["parameters"]
