"""`medtl models`: the backbones medtl can build, and what each offers."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from medtl_cli.app import console, new_app

app = new_app("Backbones: torchvision ResNets/DenseNet-121 and any timm model.")

# Feature sizes need each model built (on the meta device, ~0.1 s each): only for short lists.
FEATURES_LIMIT = 30

PatternArg = Annotated[
    Optional[str], typer.Argument(help="wildcard pattern, e.g. 'resnet*', 'vit_base*', 'timm/*', 'tv/*'")
]
PretrainedOpt = Annotated[
    bool, typer.Option("--pretrained", help="list timm names with their pretrained tags (one per weight set)")
]
NameArg = Annotated[
    str, typer.Argument(help="backbone name, e.g. resnet50 or vit_base_patch16_224.augreg_in21k")
]


@app.command("list")
def list_(pattern: PatternArg = None, pretrained: PretrainedOpt = False) -> None:
    """List backbone names with their source and pooled feature size."""
    from medtl.errors import MedtlError, UnknownChoiceError
    from medtl.models.registry import list_backbones, num_features, resolve_name

    names = list_backbones(pattern or "*", pretrained=pretrained)
    if not names:
        # Names often carry the family in the middle (vit_small_patch14_dinov2): suggest *PATTERN*.
        wider = f"*{(pattern or '').strip('*')}*"
        if list_backbones(wider, pretrained=pretrained):
            raise MedtlError(f"no backbone matches '{pattern}'; '{wider}' matches some")
        raise UnknownChoiceError("backbone pattern", pattern or "*", list_backbones())
    show_features = len(names) <= FEATURES_LIMIT
    table = Table("name", "source", "features")
    for name in names:
        features = f"{num_features(name)}" if show_features else "-"
        table.add_row(name, resolve_name(name)[0], features)
    console.print(table)
    note = "" if show_features else f"; narrow the pattern to {FEATURES_LIMIT} or fewer to see feature sizes"
    console.print(f"{len(names)} backbone(s){note}", highlight=False)


TaskOpt = Annotated[
    str,
    typer.Option(
        "--task", help="classification (backbone + linear head) or segmentation (U-Net over the backbone)"
    ),
]
ClassesOpt = Annotated[int, typer.Option("--classes", min=1, help="segmentation: output channels")]


@app.command("inspect")
def inspect(name: NameArg, task: TaskOpt = "classification", classes: ClassesOpt = 1) -> None:
    """Show a backbone's groups (with parameter counts), blocks, feature sizes and default config."""
    from medtl.errors import UnknownChoiceError
    from medtl.models import backbone_info

    if task not in ("classification", "segmentation"):
        raise UnknownChoiceError("task", task, ["classification", "segmentation"])
    if task == "segmentation":
        _inspect_unet(name, classes)
        return
    info = backbone_info(name)
    title = f"[bold]{info['name']}[/] ({info['source']}): {info['parameters']:,} parameters"
    console.print(title, highlight=False)
    console.print(
        f"pooled features {info['num_features']}, tokens of {info['token_dim']}, {info['num_blocks']} blocks",
        highlight=False,
    )
    groups = Table("group", "parameters", "channels", "reduction")
    stages = zip(info["stage_channels"], info["stage_reductions"])
    for group, count in info["groups"].items():
        channels, reduction = ("", "") if group == "stem" else map(str, next(stages))
        groups.add_row(group, f"{count:,}", channels, reduction)
    # The head is medtl's, not the backbone's: a Linear on the pooled features per output class.
    features = info["num_features"]
    groups.add_row("head", f"{features + 1:,} per output", f"{features} -> K", "")
    console.print(groups)
    cfg = Table("default config", "value")
    for key, value in info["default_cfg"].items():
        cfg.add_row(key, "" if value is None else str(value))
    weights = info["imagenet_weights"]
    cfg.add_row("imagenet weights", weights["put"])
    if weights.get("url"):
        cfg.add_row("from", weights["url"])
    console.print(cfg)


def _inspect_unet(name: str, classes: int) -> None:
    """The U-Net over ``name``: groups with parameter counts, the maps its decoder reads, the head groups."""
    from medtl.models.unet import unet_info

    info = unet_info(name, classes)
    console.print(
        f"[bold]U-Net over {info['name']}[/]: {info['parameters']:,} parameters, {info['decoder']} decoder "
        f"of {info['levels']} levels (widths {', '.join(map(str, info['decoder_channels']))})",
        highlight=False,
    )
    table = Table("group", "parameters", "role")
    skips = ", ".join(f"1/{r}" for r in info["skips"] if r is not None) or "none"
    for group, count in info["groups"].items():
        role = {
            "decoder": f"new; skips at {skips}",
            "head": f"new; 3x3 conv {info['decoder_channels'][-1]} -> {classes}",
        }.get(group, "encoder")
        table.add_row(group, f"{count:,}", role)
    console.print(table)
    maps = ", ".join(f"{c}@1/{r}" for c, r in zip(info["map_channels"], info["map_reductions"]))
    console.print(f"encoder maps (channels@reduction): {maps}", highlight=False)
    console.print(
        f"a head-only phase (strategy selector 'head') trains: {', '.join(info['head_groups'])}",
        highlight=False,
    )
