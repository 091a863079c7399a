"""Exported backbones load into `--init` with zero missing keys (full, truncated, timm, torchvision)."""

from __future__ import annotations

import pytest
import torch

from medtl.errors import CheckpointError
from medtl.models import build_model, create_backbone, load_init
from medtl.models.projection import build_projector
from medtl.pretrain.export import backbone_spec, export_backbone, export_module, read_export_metadata


@pytest.mark.parametrize(
    "name, truncate, in_chans", [("resnet18", None, 3), ("resnet10t", None, 1), ("resnet18", 1, 1)]
)
def test_exported_backbone_loads_with_zero_missing_keys(tmp_path, name, truncate, in_chans):
    torch.manual_seed(0)
    backbone = create_backbone(name, in_chans=in_chans)
    if truncate:
        backbone = backbone.truncated(truncate)
    spec = backbone_spec(backbone, image_size=32)
    path = export_backbone(
        backbone, tmp_path / "backbone.safetensors", spec=spec, origin={"objective": "simclr"}
    )
    meta = read_export_metadata(path)
    assert meta["format"] == "medtl-backbone" and meta["spec"]["truncate"] == truncate
    assert meta["origin"] == {"objective": "simclr"}
    model = build_model(name, 3, in_chans=in_chans, truncate=truncate, image_size=32)
    report = load_init(model, str(path))
    assert report.missing == [] and report.mismatched == [] and report.unexpected == []
    for key, value in backbone.native_state_dict().items():
        assert torch.equal(model.backbone.native_state_dict()[key], value), key


def test_truncated_export_does_not_fill_a_full_network(tmp_path):
    backbone = create_backbone("resnet18").truncated(2)
    path = export_backbone(backbone, tmp_path / "b.safetensors", spec=backbone_spec(backbone))
    with pytest.raises(CheckpointError, match="backbone tensors missing"):
        load_init(build_model("resnet18", 2), str(path))


def test_projector_is_kept_separately(tmp_path):
    head = build_projector("study", 16, out=8)
    path = export_module(head, tmp_path / "projector.safetensors", kind="projector", spec={"kind": "study"})
    from safetensors.torch import load_file

    assert set(load_file(path)) == {"0.weight", "2.weight", "4.weight"}
    assert read_export_metadata(path)["format"] == "medtl-projector"
