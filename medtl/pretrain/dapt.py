"""``medtl pretrain dapt``: supervised domain-adaptive pretraining, then the backbone for downstream use.

A DAPT run is an ordinary supervised run (the resource-efficient study's DA, DA_L1SB, ...,
DA_TF_F1B/F2B presets on a source store such as BraTS grades), trained, checkpointed, resumed and
metered like every run. Its best weights' backbone is then exported to
``<run>/export/backbone.safetensors`` (truncated where the strategy truncates), with the run named as
its origin, so ``--init`` of any later command loads it and ``medtl runs lineage`` follows it back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medtl.errors import ConfigError
from medtl.pretrain.export import BACKBONE_FILE, backbone_spec, export_backbone

EXPORT_DIR = "export"


def check_trains_backbone(strategy_name: str, backbone: str, *, in_chans: int = 3) -> None:
    """Refuse a strategy none of whose phases trains a backbone parameter (its export would be the
    initialisation unchanged)."""
    from medtl.models import build_model
    from medtl.strategies import get_strategy
    from medtl.strategies.selection import resolve_phase

    strategy = get_strategy(strategy_name)
    with torch.device("meta"):
        model = build_model(
            backbone, 2, in_chans=in_chans, module=strategy.module, truncate=strategy.truncate
        )
    backbone_groups = set(model.backbone.groups())
    trained = set()
    for phase in strategy.phases:
        counts = resolve_phase(model, phase).group_counts
        trained |= {group for group, (n, _) in counts.items() if n}
    if not trained & backbone_groups:
        raise ConfigError(
            f"strategy '{strategy.name}' trains no backbone parameter (only {', '.join(sorted(trained))}); "
            "a DAPT export would be its initialisation unchanged — choose DA, DA_L1SB, ... or DA_TF_F1B"
        )


def export_run_backbone(run_dir: str | Path, *, which: str = "best") -> Path:
    """Export the backbone of a finished run's ``which`` checkpoint to ``<run>/export/``."""
    from medtl.engine import load_run

    run_dir = Path(run_dir)
    loaded = load_run(run_dir, which)
    backbone = loaded.model.backbone
    spec = backbone_spec(backbone, image_size=loaded.model.spec.get("image_size"))
    origin: dict[str, Any] = {
        "run": str(run_dir.resolve()),
        "checkpoint": which,
        "objective": "classification",
        "strategy": loaded.config.strategy,
        "init": loaded.config.init,
    }
    return export_backbone(backbone, run_dir / EXPORT_DIR / BACKBONE_FILE, spec=spec, origin=origin)


def pretrain_dapt(config: Any, *, progress: Any = None) -> tuple[Any, Path]:
    """Train ``config`` (a supervised RunConfig with a DA preset) and export its backbone.

    The strategy is checked before anything is written; rerunning the same config resumes the run
    (or finds it finished) and exports again.
    """
    from medtl.engine import run
    from medtl.progress import NULL_PROGRESS

    check_trains_backbone(config.strategy, config.backbone, in_chans=config.in_chans or 3)
    result = run(config, progress=progress or NULL_PROGRESS)
    return result, export_run_backbone(result.run_dir)
