"""``medtl pretrain adaptor``: the Adaptor trained on cached embeddings, exported for downstream use.

The run reads only the embeddings directory (``medtl extract --reports``): its store, and the split
of the samples that have a report (``split.json`` there). AdamW with a linear warmup over 2% of the
steps and a linear decay (``presets/adaptor.toml``), early stopping on the validation loss. The
trained module goes to ``<run>/export/adaptor.safetensors`` with its build spec and the encoders its
embeddings came from, and the frozen vision encoder those embeddings kept to
``<run>/export/backbone.safetensors``: ``--init RUN`` then loads that encoder into any model, and the
``adaptor`` strategy puts the Adaptor's image path after it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medtl.io.embeddings import read_embeddings_meta
from medtl.pretrain.embeddings import ENCODER_FILE
from medtl.pretrain.export import BACKBONE_FILE, export_module

PRESETS = Path(__file__).with_name("presets")
EXPORT_DIR = "export"
ADAPTOR_FILE = "adaptor.safetensors"
WARMUP_FRACTION = 0.02
PATIENCE = 5


def adaptor_config(
    embeddings: str | Path,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    patience: int | None = None,
    monitor: str | None = None,
    run_name: str | None = None,
    base: Mapping[str, Any] | None = None,
) -> Any:
    """The RunConfig of Adaptor pretraining on an embeddings directory."""
    from medtl.engine import RunConfig
    from medtl.strategies.strategy import load_strategy_file

    embeddings = Path(embeddings)
    meta = read_embeddings_meta(embeddings)
    preset = PRESETS / "adaptor.toml"
    total = epochs or load_strategy_file(preset).phases[0].epochs
    section: dict[str, Any] = {"kind": "adaptor", "embeddings": str(embeddings)}
    if monitor is not None:
        section["monitor"] = monitor
    values = {
        **dict(base or {}),
        "data": meta["store"],
        "split": embeddings / "split.json",
        "backbone": str(meta["vision"].get("backbone") or "resnet50"),  # what made the image embeddings
        "init": "random",
        "strategy": str(preset),
        "phase_epochs": {"adaptor": total},
        "scheduler": "linear",
        "warmup_epochs": WARMUP_FRACTION * total,
        "normalise": "none",
        "augment": "none",
        "cache_features": False,
        "bootstrap": 0,
        "patience": patience if patience is not None else PATIENCE,
        "objective": section,
    }
    for key, value in (("lr", lr), ("run_name", run_name)):
        if value is not None:
            values[key] = value
    return RunConfig.parse(values, source="pretrain adaptor options")


def pretrain_adaptor(config: Any, *, progress: Any = None) -> tuple[Any, Path]:
    """Run (or resume) Adaptor pretraining and export the module."""
    from medtl.engine import load_run, run
    from medtl.progress import NULL_PROGRESS

    result = run(config, progress=progress or NULL_PROGRESS)
    loaded = load_run(result.run_dir, "best")
    meta = read_embeddings_meta(config.objective.embeddings)
    spec = {**loaded.model.spec, "vision": meta["vision"], "text": meta["text"], "run": str(result.run_dir)}
    path = export_module(loaded.model, result.run_dir / EXPORT_DIR / ADAPTOR_FILE, kind="adaptor", spec=spec)
    encoder = Path(config.objective.embeddings) / ENCODER_FILE
    if encoder.is_file():  # the frozen encoder the embeddings came from, beside the Adaptor
        target = result.run_dir / EXPORT_DIR / BACKBONE_FILE
        tmp = target.with_name(target.name + ".tmp")
        shutil.copyfile(encoder, tmp)
        os.replace(tmp, target)
    return result, path
