"""What pretraining hands on: a backbone checkpoint that ``--init`` loads, and the parts kept aside.

``backbone.safetensors`` holds the backbone's state dict under its native (torchvision / timm) key
names, so every command that takes ``--init`` reads it with the converters it already has and
loads it with zero missing keys into the same architecture (truncated where the export is). The
metadata records the build spec (backbone name, input channels, truncation, image size) and where
the weights came from (the run, its objective). Heads a pretraining needs but a downstream task
does not (SimCLR's projector, the Adaptor module) go to their own files beside it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from medtl.errors import CheckpointError
from medtl.models.backbone import Backbone

BACKBONE_FORMAT = "medtl-backbone"
BACKBONE_FILE = "backbone.safetensors"


def _save(tensors: Mapping[str, Any], path: Path, metadata: Mapping[str, Any]) -> Path:
    from safetensors.torch import save_file

    from medtl import __version__

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in metadata.items()}
    meta["medtl_version"] = __version__
    tmp = path.with_name(path.name + ".tmp")
    save_file({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def backbone_spec(backbone: Backbone, *, image_size: int | None = None) -> dict[str, Any]:
    """The ``build_model`` arguments that rebuild this backbone."""
    return {
        "backbone": backbone.name,
        "in_chans": backbone.in_chans,
        "truncate": backbone.truncated_to,
        "image_size": image_size,
    }


def export_backbone(
    backbone: Backbone,
    path: str | Path,
    *,
    spec: Mapping[str, Any],
    origin: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``backbone``'s native state dict with its build ``spec`` and ``origin`` (run, objective)."""
    metadata = {"format": BACKBONE_FORMAT, "spec": dict(spec), "origin": dict(origin or {})}
    return _save(backbone.native_state_dict(), Path(path), metadata)


def export_module(module: nn.Module, path: str | Path, *, kind: str, spec: Mapping[str, Any]) -> Path:
    """Write a pretraining head (projector, Adaptor) with what rebuilds it."""
    return _save(module.state_dict(), Path(path), {"format": f"medtl-{kind}", "spec": dict(spec)})


def read_export_metadata(path: str | Path) -> dict[str, Any]:
    """Decoded metadata of an exported backbone or module."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "checkpoint file not found")
    try:
        with safe_open(str(path), "pt") as f:
            raw = dict(f.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(path, f"not a readable safetensors file ({exc})") from None
    out: dict[str, Any] = {}
    for k, v in raw.items():
        try:
            out[k] = json.loads(v)
        except ValueError:
            out[k] = v
    return out
