"""``medtl pretrain simclr``: a SimCLR run (the ``simclr`` objective) and the backbone it exports.

The run is an ordinary medtl run — checkpoints, exact resume, energy, TensorBoard — of the SimCLR
objective with the ``presets/simclr.toml`` strategy (LARS, warmup then cosine). The images reach the
objective unnormalised (it normalises its views after augmenting them) and unaugmented by the
engine. Afterwards ``<run>/export/backbone.safetensors`` holds the backbone for ``--init`` and
``<run>/export/projector.safetensors`` the projector.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medtl.data.unlabelled import parse_sources
from medtl.errors import ConfigError
from medtl.pretrain.export import BACKBONE_FILE, backbone_spec, export_backbone, export_module

PRESETS = Path(__file__).with_name("presets")
EXPORT_DIR = "export"
PROJECTOR_FILE = "projector.safetensors"
WARMUP_FRACTION = 0.1  # SimCLR warms up for 10 of 100 epochs


def simclr_config(
    data: Sequence[str],
    *,
    backbone: str,
    init: str = "random",
    allow_partial: bool = False,
    epochs: int | None = None,
    lr: float | None = None,
    warmup: float | None = None,
    patience: int | None = None,
    run_name: str | None = None,
    objective: Mapping[str, Any] | None = None,
    base: Mapping[str, Any] | None = None,
) -> Any:
    """The RunConfig of a SimCLR run on ``data`` (``STORE`` or ``STORE:WEIGHT``; the first is the run's
    store, the others are mixed into training)."""
    from medtl.engine import RunConfig
    from medtl.strategies.strategy import load_strategy_file

    sources = parse_sources(data)
    if not sources:
        raise ConfigError("pretrain simclr needs at least one --data store")
    preset = PRESETS / "simclr.toml"
    total = epochs or load_strategy_file(preset).phases[0].epochs
    section = {
        "kind": "simclr",
        **dict(objective or {}),
        "weight": sources[0].weight,
        "stores": {str(s.path): s.weight for s in sources[1:]},
    }
    values = {
        **dict(base or {}),
        "data": sources[0].path,
        "backbone": backbone,
        "init": init,
        "allow_partial": allow_partial,
        "strategy": str(preset),
        "phase_epochs": {"simclr": total},
        "scheduler": "cosine",
        "warmup_epochs": warmup if warmup is not None else WARMUP_FRACTION * total,
        "normalise": "none",  # the objective normalises its views after augmenting them
        "augment": "none",
        "cache_features": False,
        "bootstrap": 0,
        "objective": section,
    }
    for key, value in (("lr", lr), ("patience", patience), ("run_name", run_name)):
        if value is not None:
            values[key] = value
    config = RunConfig.parse(values, source="pretrain simclr options")
    if config.batch_size < 2:
        raise ConfigError(
            f"SimCLR needs at least 2 images per batch (a view's negatives are the other images), "
            f"got --batch-size {config.batch_size}"
        )
    return config


def check_batches(config: Any) -> None:
    """Refuse a training partition that cannot fill one batch (contrastive batches need negatives)."""
    from medtl.engine import resolve_split
    from medtl.io.store import Store

    store = Store(config.data)
    partitions, source = resolve_split(config, store)
    extra = sum(len(Store(p)) for p in config.objective.stores)
    if len(partitions["train"]) < config.batch_size and not extra:
        raise ConfigError(
            f"{store.path}: {len(partitions['train'])} training images ({source}), fewer than the batch size "
            f"{config.batch_size}; lower --batch-size"
        )


def pretrain_simclr(config: Any, *, progress: Any = None) -> tuple[Any, Path]:
    """Run (or resume) the SimCLR run and export its backbone and projector."""
    from medtl.engine import load_run, run
    from medtl.progress import NULL_PROGRESS

    check_batches(config)
    result = run(config, progress=progress or NULL_PROGRESS)
    loaded = load_run(result.run_dir, "best")
    net = loaded.model
    export = result.run_dir / EXPORT_DIR
    origin = {"run": str(result.run_dir.resolve()), "objective": "simclr", "init": config.init}
    spec = backbone_spec(net.backbone, image_size=net.spec.get("image_size"))
    path = export_backbone(net.backbone, export / BACKBONE_FILE, spec=spec, origin=origin)
    section = config.objective
    export_module(
        net.head,
        export / PROJECTOR_FILE,
        kind="projector",
        spec={
            "projector": section.projector,
            "hidden": section.projector_hidden,
            "out": section.projection_dim,
        },
    )
    return result, path
