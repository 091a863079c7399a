"""TransferModel and build_model: heads, groups with full names, truncation, module, head reset."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medtl.errors import ConfigError, UnknownChoiceError
from medtl.models import TransferModel, build_model
from medtl.models.cdtm import CrossDomainTransferModule


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("backbone", "module", "head_in"),
    [("resnet18", None, 512), ("convnext_atto", None, 320), ("resnet10t", "cdtm", 512)],
)
def test_forward_and_head_input(backbone, module, head_in):
    torch.manual_seed(0)
    model = build_model(backbone, 3, module=module, image_size=64).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = model.forward_head_input(x)
        logits = model(x)
    assert features.shape == (2, head_in) and logits.shape == (2, 3)
    torch.testing.assert_close(logits, model.head(features))
    if module is None:
        with torch.no_grad():
            torch.testing.assert_close(features, model.backbone.forward_pooled(x))
    else:
        assert isinstance(model.module, CrossDomainTransferModule)


def test_groups_use_full_names_and_cover_every_parameter():
    model = build_model("resnet10t", 2, module="cdtm", image_size=64)
    groups = model.groups()
    assert list(groups) == ["stem", "stage1", "stage2", "stage3", "stage4", "module", "head"]
    assert groups["head"] == ["head.weight", "head.bias"]
    assert groups["stem"][0] == "backbone.model.conv1.0.weight"
    assert all(n.startswith("module.") for n in groups["module"])
    flat = [n for names in groups.values() for n in names]
    assert sorted(flat) == sorted(n for n, _ in model.named_parameters())
    blocks = model.blocks()
    assert len(blocks) == 4 and blocks[0][0].startswith("backbone.model.layer1.0.")


def test_truncated_resnet50_matches_the_studys_counts():
    # TF_F1B / TF_F2B with one output: stem + stage(s) + Linear(C, 1)
    assert n_params(build_model("resnet50", 1, truncate=1)) == 225_601
    assert n_params(build_model("resnet50", 1, truncate=2)) == 1_445_441


def test_norm_layers_are_the_batchnorms():
    model = build_model("resnet18", 2)
    norms = model.norm_layers()
    assert len(norms) == 20 and all(isinstance(m, nn.BatchNorm2d) for m in norms)
    assert build_model("vit_tiny_patch16_224", 2, image_size=32).norm_layers() == []


def test_reset_head_keeps_the_backbone():
    model = build_model("resnet18", 2)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    model.reset_head(5)
    assert model.head.out_features == 5 and model.num_outputs == 5 and model.spec["num_outputs"] == 5
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 5)
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_spec_rebuilds_the_same_architecture():
    model = build_model("resnet10t", 4, in_chans=1, truncate=2, image_size=48)
    again = build_model(**model.spec)
    assert [(k, v.shape) for k, v in again.state_dict().items()] == [
        (k, v.shape) for k, v in model.state_dict().items()
    ]


def test_bad_choices():
    with pytest.raises(UnknownChoiceError, match="unknown module 'cdmt', did you mean 'cdtm'"):
        build_model("resnet18", 2, module="cdmt")
    with pytest.raises(ConfigError, match="at least one output"):
        build_model("resnet18", 0)
    model = build_model("resnet18", 2)
    assert isinstance(model, TransferModel)
    with pytest.raises(ConfigError):
        model.reset_head(0)
