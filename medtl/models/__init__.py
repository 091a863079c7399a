"""Backbones (torchvision and timm behind one interface), the transfer model, CDTM and checkpoints."""

from medtl.models.backbone import Backbone
from medtl.models.checkpoints import (
    LoadReport,
    detect_format,
    load_init,
    load_model_weights,
    read_model_metadata,
    save_model,
)
from medtl.models.registry import backbone_info, create_backbone, list_backbones
from medtl.models.transfer_model import TransferModel, build_model

__all__ = [
    "Backbone",
    "LoadReport",
    "TransferModel",
    "backbone_info",
    "build_model",
    "create_backbone",
    "detect_format",
    "list_backbones",
    "load_init",
    "load_model_weights",
    "read_model_metadata",
    "save_model",
]
