"""U-Net over registry backbones: shapes, skips, groups, strategies, init into the encoder, refusals."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medtl.errors import CheckpointError, ConfigError
from medtl.models import build_model, load_init, load_model_weights, read_model_metadata, save_model
from medtl.models.backbone import Backbone
from medtl.models.registry import create_backbone
from medtl.models.unet import UNet, build_unet, encoder_plan, sliding_window_logits, unet_info
from medtl.strategies import get_strategy
from medtl.strategies.selection import apply_phase, resolve_phase


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("backbone", "kind", "skips", "size"),
    [
        ("resnet18", "pyramid", [2, 4, 8, 16], 64),  # stem (before max-pool) and stages 1-3
        ("resnet10t", "pyramid", [2, 4, 8, 16], 64),
        ("densenet121", "pyramid", [2, 4, 8, 16], 64),
        ("convnext_atto", "pyramid", [None, 4, 8, 16], 64),  # patchify stem: no map at 1/2
        ("vit_tiny_patch16_224", "isotropic", [2, 4, 8], 32),  # UNETR-style
    ],
)
def test_logits_at_input_size_for_every_kind_of_encoder(backbone, kind, skips, size):
    torch.manual_seed(0)
    model = build_unet(backbone, 3, image_size=size if "vit" in backbone else None).eval()
    info = unet_info(backbone, 3, image_size=size if "vit" in backbone else None)
    assert (info["decoder"], info["skips"]) == (kind, skips)
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 3, size, size) and torch.isfinite(out).all()
    assert info["parameters"] == n_params(model)


def test_resnet_unet_has_segmentation_models_pytorchs_structure():
    # smp.Unet("resnet18"/"resnet50", classes=1) has 14,328,209 / 32,521,105 parameters (measured with
    # segmentation_models_pytorch 0.6 in benchmarks/bench_segmentation.py).
    info18 = unet_info("resnet18", 1)
    assert info18["parameters"] == 14_328_209
    assert info18["decoder_channels"] == [256, 128, 64, 32, 16]
    assert info18["groups"]["head"] == 16 * 9 + 1
    assert unet_info("resnet50", 1)["parameters"] == 32_521_105


def test_odd_sizes_are_padded_and_cropped_back():
    model = build_unet("resnet10t", 2).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 50, 70))
    assert out.shape == (1, 2, 50, 70)


def test_skips_carry_the_encoder_maps():
    """Changing only the stem's skip map changes the full-resolution logits: the skip is wired."""
    torch.manual_seed(0)
    model = build_unet("resnet10t", 1).eval()
    x = torch.randn(1, 3, 64, 64)
    maps = model.backbone.forward_pyramid(x)
    assert [m.shape[-1] for m in maps] == [32, 16, 8, 4, 2]
    with torch.no_grad():
        base = model.head(model.decoder(maps, x))
        changed = [maps[0] + 1.0, *maps[1:]]
        other = model.head(model.decoder(changed, x))
    assert not torch.allclose(base, other)


def test_groups_cover_every_parameter_and_head_groups_name_decoder_and_head():
    model = build_unet("resnet10t", 4)
    groups = model.groups()
    assert list(groups) == ["stem", "stage1", "stage2", "stage3", "stage4", "decoder", "head"]
    assert groups["head"] == ["head.0.weight", "head.0.bias"]
    assert all(n.startswith("decoder.") for n in groups["decoder"])
    flat = [n for names in groups.values() for n in names]
    assert sorted(flat) == sorted(n for n, _ in model.named_parameters())
    assert model.head_groups() == ["decoder", "head"]
    assert len(model.blocks()) == 4
    encoder_norms = {id(m) for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)}
    assert {id(m) for m in model.norm_layers()} == encoder_norms


def _trainable_groups(model: UNet, strategy: str, phase: int = 0) -> dict[str, tuple[int, int]]:
    return resolve_phase(model, get_strategy(strategy).phases[phase]).group_counts


def test_classification_strategies_address_the_unet():
    model = build_unet("resnet18", 1)
    counts = _trainable_groups(model, "linear")  # frozen encoder: decoder + head train
    assert counts["decoder"][0] == counts["decoder"][1] > 0 and counts["head"][0] == counts["head"][1]
    assert all(counts[g][0] == 0 for g in ("stem", "stage1", "stage2", "stage3", "stage4"))
    l1sb = _trainable_groups(model, "l1sb")  # last encoder block + decoder + head
    assert 0 < l1sb["stage4"][0] < l1sb["stage4"][1] and l1sb["stage3"][0] == 0
    assert l1sb["decoder"][0] == l1sb["decoder"][1]
    full = _trainable_groups(model, "full")
    assert all(t == total for t, total in full.values())
    phases = [_trainable_groups(model, "progressive", i) for i in range(3)]
    assert phases[0]["stage4"][0] == 0 and phases[1]["stage4"][0] > 0 and phases[2]["stem"][0] > 0


def test_frozen_bn_holds_the_encoders_statistics_and_trains_the_decoders():
    model = build_unet("resnet10t", 1)
    resolved = apply_phase(model, get_strategy("linear").phases[0])
    model.train()
    from medtl.strategies.selection import apply_bn_policy

    apply_bn_policy(model, resolved)
    decoder_bn = [m for m in model.decoder.modules() if isinstance(m, nn.BatchNorm2d)]
    encoder_bn = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert decoder_bn and all(m.training and m.weight.requires_grad for m in decoder_bn)
    assert all(not m.training and not m.weight.requires_grad for m in encoder_bn)


def test_imagenet_and_ssl_init_load_into_the_encoder(tmp_path):
    import torchvision

    torch.manual_seed(1)
    source = torchvision.models.resnet18(weights=None).state_dict()
    moco = {f"module.encoder_q.{k}": v for k, v in source.items() if not k.startswith("fc.")}
    path = tmp_path / "moco.pth"
    torch.save({"state_dict": moco}, path)
    model = build_unet("resnet18", 2)
    report = load_init(model, str(path))
    assert report.format == "moco" and report.missing == [] and report.unexpected == []
    assert torch.equal(model.backbone.model.conv1.weight, source["conv1.weight"])
    assert sorted({n.split(".")[0] for n in report.new}) == ["decoder", "head"]
    assert "new: decoder, head" in report.summary()


def test_medtl_runs_init_the_encoder_of_a_unet(tmp_path):
    """A classification run's checkpoint initialises a U-Net's encoder; its linear head is left out."""
    classifier = build_model("resnet10t", 2)
    path = tmp_path / "cls.safetensors"
    save_model(classifier, path, {})
    unet = build_unet("resnet10t", 3)
    report = load_init(unet, str(path))
    assert report.format == "medtl" and report.missing == []
    assert sorted(report.unexpected) == ["head.bias", "head.weight"]
    torch.testing.assert_close(unet.backbone.model.conv1[0].weight, classifier.backbone.model.conv1[0].weight)


def test_unet_checkpoint_roundtrip_and_head_mismatch(tmp_path):
    model = build_unet("resnet10t", 3)
    path = tmp_path / "unet.safetensors"
    save_model(model, path, {"task": "segmentation"})
    spec = read_model_metadata(path)["spec"]
    assert spec["architecture"] == "unet" and spec["num_outputs"] == 3
    rebuilt = build_unet(**spec)
    load_model_weights(rebuilt, path)
    for a, b in zip(model.state_dict().values(), rebuilt.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(CheckpointError, match=r"classifier shape mismatch: checkpoint head \(3, 16, 3, 3\)"):
        load_init(build_unet("resnet10t", 2), str(path))


class _TokensOnly(Backbone):
    """A backbone that offers tokens but no feature maps (a text or token-only encoder)."""

    name, source, in_chans, truncated_to = "tokens_only", "timm", 3, None
    stage_channels: list[int] = []  # noqa: RUF012
    stage_reductions: list[int] = []  # noqa: RUF012

    def forward_pooled(self, x):
        raise NotImplementedError

    forward_stages = forward_tokens = forward_pooled

    def groups(self):
        return {"stem": []}

    def blocks(self):
        return []

    def truncated(self, num_stages):
        raise NotImplementedError


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda: _TokensOnly(), "it has no feature maps"),
        (lambda: create_backbone("resnet10t").truncated(2), "it is truncated to 2 stages"),
        (
            lambda: create_backbone("vit_small_patch14_dinov2", image_size=28),
            "its feature maps are at 1/14, 1/14, 1/14, 1/14 of the image",
        ),
    ],
)
def test_encoders_without_usable_feature_maps_are_refused_naming_what_works(make, problem):
    backbone = make()
    with pytest.raises(ConfigError) as info:
        encoder_plan(backbone)
    message = str(info.value)
    assert message.startswith(f"backbone '{backbone.name}' cannot be a U-Net encoder: {problem}")
    assert "encoders that work: " in message and "resnet18/34/50/101" in message and "ViTs" in message
    assert "\n" not in message


def test_sliding_window_predicts_images_larger_than_the_training_size():
    torch.manual_seed(0)
    model = build_unet("resnet10t", 2).eval()
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        whole = sliding_window_logits(model, x[..., :64, :], 64)
        windows = sliding_window_logits(model, x, 64, overlap=0.5)
    assert windows.shape == (1, 2, 96, 64)
    torch.testing.assert_close(whole, model(x[..., :64, :]))


@pytest.mark.parametrize(("backbone", "size"), [("resnet10t", 48), ("vit_tiny_patch16_224", 32)])
def test_a_unet_conditioned_on_adaptor_features_at_its_bottleneck(backbone, size):
    """The Adaptor's image feature of the pooled encoder features, broadcast and concatenated with
    the bottleneck map: it changes the logits, the decoder is that much wider, the group is 'module'."""
    from medtl.models.adaptor import AdaptorImagePath

    torch.manual_seed(0)
    image_size = size if "vit" in backbone else None
    plain = build_unet(backbone, 2, image_size=image_size)
    model = build_unet(backbone, 2, image_size=image_size, adaptor=True).eval()
    assert isinstance(model.module, AdaptorImagePath) and model.spec["adaptor"]["dim"] == 768
    encoder_groups = list(plain.groups())[:-2]
    assert list(model.groups()) == [*encoder_groups, "module", "decoder", "head"]
    assert model.head_groups() == ["decoder", "head"]
    grown = n_params(model.decoder) - n_params(plain.decoder)
    assert grown > 0 and n_params(model.module) > 0
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        out = model(x)
        assert out.shape == (2, 2, size, size) and torch.isfinite(out).all()
        model.module.vision_projection.weight.mul_(-1)  # another Adaptor feature, the same encoder
        assert not torch.allclose(model(x), out)
    rebuilt = build_unet(**model.spec)
    assert rebuilt.spec == model.spec and set(rebuilt.state_dict()) == set(model.state_dict())
