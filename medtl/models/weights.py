"""Where pretrained ImageNet weights live on disk (nothing is ever downloaded).

torchvision weights go to torch's hub cache under their release file name; timm weights are looked
up in the Hugging Face cache, ``$MEDTL_WEIGHTS_DIR`` (default ``~/.cache/medtl/weights``) and torch's
hub cache. ``find_imagenet_weights`` names the file and where to put it when it is missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from medtl.errors import WeightsMissingError
from medtl.models.backbone import Backbone


def default_weights_dir() -> Path:
    return Path(os.environ.get("MEDTL_WEIGHTS_DIR") or Path.home() / ".cache" / "medtl" / "weights")


def _timm_weight_name(backbone: Backbone) -> str:
    cfg = backbone.pretrained_cfg
    arch, tag = cfg.get("architecture") or backbone.name.split(".")[0], cfg.get("tag")
    return f"{arch}.{tag}" if tag else arch


def imagenet_location(backbone: Backbone, weights_dir: Path | None = None) -> dict[str, Any]:
    """Where ``imagenet`` init looks for this backbone's weights (nothing is downloaded)."""
    cfg = backbone.pretrained_cfg
    if backbone.source == "torchvision":
        from medtl.models._torchvision import imagenet_file

        url, path = imagenet_file(backbone.name)
        return {"candidates": [str(path)], "put": str(path), "url": url}
    weights_dir = Path(weights_dir) if weights_dir is not None else default_weights_dir()
    name = _timm_weight_name(backbone)
    local = [str(weights_dir / f"{name}{ext}") for ext in (".safetensors", ".pth")]
    info: dict[str, Any] = {"candidates": list(local), "put": local[0]}
    if cfg.get("hf_hub_id"):
        files = [cfg["hf_hub_filename"]] if cfg.get("hf_hub_filename") else ["model.safetensors"]
        info["hf_hub_id"], info["hf_files"] = cfg["hf_hub_id"], [*files, "pytorch_model.bin"]
        info["url"] = f"https://huggingface.co/{cfg['hf_hub_id']}/resolve/main/{files[0]}"
    if cfg.get("url"):
        info["candidates"].append(str(Path(torch.hub.get_dir()) / "checkpoints" / Path(cfg["url"]).name))
        info.setdefault("url", cfg["url"])
    return info


def find_imagenet_weights(backbone: Backbone, weights_dir: Path | None = None) -> Path:
    """The local file of the backbone's ImageNet weights, or WeightsMissingError naming where to put it."""
    info = imagenet_location(backbone, weights_dir)
    if info.get("hf_hub_id"):
        from huggingface_hub import try_to_load_from_cache

        for filename in info["hf_files"]:
            cached = try_to_load_from_cache(info["hf_hub_id"], filename)  # cache lookup only, no network
            if isinstance(cached, str):
                return Path(cached)
    for candidate in info["candidates"]:
        if Path(candidate).is_file():
            return Path(candidate)
    if not info.get("url"):
        raise WeightsMissingError(f"timm has no pretrained weights for '{backbone.name}'")
    also = f" (or into the Hugging Face cache as {info['hf_hub_id']})" if info.get("hf_hub_id") else ""
    raise WeightsMissingError(
        f"ImageNet weights for '{backbone.name}' are not on disk: put {info['url']} at {info['put']}{also}",
        hint="medtl never downloads; fetch the file on a machine with internet access",
    )
