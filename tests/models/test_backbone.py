"""The Backbone interface on a representative set of registry names (add a name, get the tests)."""

from __future__ import annotations

import functools

import pytest
import torch
from timm.models import adapt_input_conv

from medtl.errors import ConfigError
from medtl.models import create_backbone

# (name, image size): one of each family, small enough to run on CPU in well under a second
REPRESENTATIVE = [
    ("resnet18", 64),
    ("densenet121", 64),
    ("resnet10t", 64),
    ("convnext_atto", 64),
    ("vit_tiny_patch16_224", 64),
    ("swin_tiny_patch4_window7_224", 64),
    ("vit_small_patch14_reg4_dinov2", 56),
]
NAMES = [name for name, _ in REPRESENTATIVE]


@functools.cache
def backbone(name: str, size: int, in_chans: int = 3):
    torch.manual_seed(0)
    return create_backbone(name, in_chans=in_chans, image_size=size).eval()


def param_names(module) -> list[str]:
    return [n for n, _ in module.named_parameters()]


@pytest.mark.parametrize(("name", "size"), REPRESENTATIVE, ids=NAMES)
def test_feature_shapes_follow_the_declared_stages(name, size):
    bb = backbone(name, size)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        maps = bb.forward_stages(x)
        pooled = bb.forward_pooled(x)
        tokens = bb.forward_tokens(x)
    assert len(maps) == bb.num_stages == 4
    for m, channels, reduction in zip(maps, bb.stage_channels, bb.stage_reductions):
        assert m.shape == (2, channels, size // reduction, size // reduction)
    assert pooled.shape == (2, bb.num_features)
    last = size // bb.stage_reductions[-1]
    assert tokens.shape == (2, last * last, bb.token_dim)


@pytest.mark.parametrize(("name", "size"), REPRESENTATIVE, ids=NAMES)
def test_groups_partition_parameters_in_order(name, size):
    bb = backbone(name, size)
    groups = bb.groups()
    assert list(groups) == ["stem", "stage1", "stage2", "stage3", "stage4"]
    assert all(groups.values())
    flat = [n for names in groups.values() for n in names]
    assert sorted(flat) == sorted(param_names(bb))
    assert len(flat) == len(set(flat))


@pytest.mark.parametrize(("name", "size"), REPRESENTATIVE, ids=NAMES)
def test_blocks_cover_everything_but_the_stem_in_stage_order(name, size):
    bb = backbone(name, size)
    groups = bb.groups()
    blocks = bb.blocks()
    flat = [n for block in blocks for n in block]
    assert len(flat) == len(set(flat))
    assert sorted(flat) == sorted(n for g, names in groups.items() if g != "stem" for n in names)
    stage_of = {n: i for i, names in enumerate(groups.values()) for n in names}
    # each block lies in one stage and blocks run from shallow to deep
    block_stages = [{stage_of[n] for n in block} for block in blocks]
    assert all(len(s) == 1 for s in block_stages)
    order = [s.pop() for s in block_stages]
    assert order == sorted(order) and order[-1] == 4


@pytest.mark.parametrize(("name", "size"), REPRESENTATIVE, ids=NAMES)
def test_truncated_keeps_stem_and_first_stages(name, size):
    bb = backbone(name, size)
    for k in (1, 2):
        short = bb.truncated(k)
        groups = short.groups()
        assert list(groups) == ["stem"] + [f"stage{i}" for i in range(1, k + 1)]
        assert set(param_names(short)) == {n for names in groups.values() for n in names}
        assert groups["stem"] == bb.groups()["stem"]
        x = torch.randn(1, 3, size, size)
        with torch.no_grad():
            maps = short.forward_stages(x)
            pooled = short.forward_pooled(x)
        assert len(maps) == k and short.num_features == bb.stage_channels[k - 1]
        assert pooled.shape == (1, bb.stage_channels[k - 1])
        torch.testing.assert_close(pooled, maps[-1].mean(dim=(2, 3)))
    # the original is untouched
    assert bb.num_stages == 4 and len(bb.groups()) == 5


@pytest.mark.parametrize(("name", "size"), REPRESENTATIVE, ids=NAMES)
def test_one_channel_input_adapts_the_first_conv_like_timm(name, size):
    rgb, gray = backbone(name, size), backbone(name, size, in_chans=1)
    key = rgb.first_conv + ".weight"
    w_rgb, w_gray = rgb.model.state_dict()[key], gray.model.state_dict()[key]
    assert w_gray.shape[1] == 1
    # same seed, so the 1-channel weights are timm's adaptation of the 3-channel ones (timm builds
    # its 1-channel conv directly, so only torchvision models are compared value by value)
    if rgb.source == "torchvision":
        torch.testing.assert_close(w_gray, adapt_input_conv(1, w_rgb))
    with torch.no_grad():
        assert gray.forward_pooled(torch.randn(1, 1, size, size)).shape == (1, gray.num_features)


def test_torchvision_features_equal_torchvision_forward():
    for name in ("resnet18", "densenet121"):
        bb = backbone(name, 64)
        x = torch.randn(2, 3, 64, 64)
        with torch.no_grad():
            torch.testing.assert_close(bb.forward_pooled(x), bb.model(x))  # classifier is Identity


def test_resnet50_blocks_are_bottlenecks():
    with torch.device("meta"):
        bb = create_backbone("resnet50")
    blocks = bb.blocks()
    assert [len(b) for b in blocks].count(0) == 0 and len(blocks) == 16
    assert blocks[-1][0] == "model.layer4.2.conv1.weight"
    params = dict(bb.named_parameters())
    conv = sum(params[n].numel() for n in blocks[-1] if ".conv" in n)
    assert conv == 4_456_448
    assert bb.groups()["stem"] == ["model.conv1.weight", "model.bn1.weight", "model.bn1.bias"]


def test_densenet_transition_opens_the_next_stage():
    groups = backbone("densenet121", 64).groups()
    assert groups["stage2"][0].startswith("model.features.transition1.")
    assert groups["stage4"][-1] == "model.features.norm5.bias"


# Full-size models on the meta device: shapes without allocating or computing.
@pytest.mark.parametrize(
    ("name", "tokens", "stages"),
    [
        ("vit_base_patch16_224.augreg_in21k", (196, 768), 4),
        ("vit_base_patch16_clip_224", (196, 768), 4),
        ("convnext_base", (49, 1024), 4),
        ("swin_tiny_patch4_window7_224", (49, 768), 4),
        ("vit_small_patch14_dinov2", (37 * 37, 384), 4),
        ("resnet50", (49, 2048), 4),
        ("timm/resnet50", (49, 2048), 4),
        ("resnet101", (49, 2048), 4),
        ("resnet34", (49, 512), 4),
    ],
)
def test_full_size_token_shapes(name, tokens, stages):
    with torch.device("meta"):
        bb = create_backbone(name)
        size = bb.pretrained_cfg["input_size"][-1]
        out = bb.forward_tokens(torch.zeros(1, 3, size, size))
    assert tuple(out.shape[1:]) == tokens and bb.token_dim == tokens[1]
    assert bb.num_stages == stages


def test_vit_stages_end_at_evenly_spaced_blocks():
    groups = backbone("vit_tiny_patch16_224", 64).groups()
    assert groups["stem"] == ["model.cls_token", "model.pos_embed", "model.patch_embed.proj.weight",
                              "model.patch_embed.proj.bias"]  # fmt: skip
    assert groups["stage1"][-1].startswith("model.blocks.2.")
    assert groups["stage4"][-2:] == ["model.norm.weight", "model.norm.bias"]


@pytest.mark.parametrize("k", [0, 5])
def test_truncation_out_of_range(k):
    with pytest.raises(ConfigError, match=f"has 4 stages; cannot truncate to {k}"):
        backbone("resnet18", 64).truncated(k)
