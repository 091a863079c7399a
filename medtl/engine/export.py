"""``export_features``: pooled features per split (``features_<split>.npy`` + labels + index) for
``medtl probe``, from a finished run or a backbone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medtl.data.dataset import label_targets
from medtl.data.splits import default_split_path, load_split
from medtl.data.transforms import build_transforms
from medtl.engine.features import extract_features
from medtl.engine.inference import load_run
from medtl.engine.runtime import resolve_device
from medtl.io.features import FeatureWriter
from medtl.io.paths import FEATURES, guard_output
from medtl.io.store import Store
from medtl.models import build_model, load_init
from medtl.objectives.classification import infer_task
from medtl.progress import NULL_PROGRESS, Progress


def _split_partitions(store: Store, split: str | Path | None) -> tuple[dict[str, np.ndarray], str]:
    """Partitions of the split file (given, or the store's default one), else the whole store as "all"."""
    path = Path(split) if split is not None else default_split_path(store.path)
    if split is None and not path.is_file():
        return {"all": np.arange(len(store))}, "all"
    parts = load_split(path, store).partitions
    return {name: np.asarray(idx, dtype=np.int64) for name, idx in parts.items() if len(idx)}, str(path)


def export_features(
    source: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    split: str | Path | None = None,
    init: str = "imagenet",
    allow_partial: bool = False,
    min_loaded_fraction: float = 0.5,
    weights_dir: Path | None = None,
    image_size: int | None = None,
    normalise: str = "imagenet",
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "auto",
    overwrite: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> Path:
    """Write the head-input features of every split of ``data`` to ``out`` (``medtl.io.features`` format).

    ``source`` is a run directory (its best weights and its preprocessing are used; ``init``,
    ``image_size`` and ``normalise`` are ignored) or a backbone name initialised with ``init``.
    """
    store = Store(data)
    store.verify(quick=True)  # labels and patients as prepared; `medtl data check` hashes every byte
    infer_task(store.task, store.num_classes, "auto", store.path)  # features need class labels
    source_path = Path(source)
    is_run = (source_path / "config.toml").is_file()
    guard_output(out, FEATURES, inputs=[store.path, source_path if is_run else None], overwrite=overwrite)
    partitions, split_source = _split_partitions(store, split)
    dev = resolve_device(device)
    origin = {"run": str(source_path)} if is_run else {"init": init}
    # The writer refuses an existing output before any model is loaded or feature computed.
    with FeatureWriter(
        out,
        backbone="",
        task=store.task,
        class_names=store.class_names,
        store=store.path,
        store_checksum=store.checksum,
        extra={**origin, "split": split_source},
        overwrite=overwrite,
    ) as writer:
        if is_run:
            loaded = load_run(source_path, "best")
            model, transform, backbone = loaded.model, loaded.transform(), loaded.config.backbone
            writer.meta["init"] = loaded.config.init
        else:
            in_chans = int(store.shape[0])
            model = build_model(
                str(source), 1, in_chans=in_chans, image_size=image_size or int(store.shape[-1])
            )
            report = load_init(
                model,
                init,
                allow_partial=allow_partial,
                weights_dir=weights_dir,
                min_loaded_fraction=min_loaded_fraction,
            )
            progress.message(report.summary())
            transform = build_transforms(False, size=image_size, normalise=normalise, in_chans=in_chans)
            backbone = str(source)
        writer.meta["backbone"] = backbone
        model.to(dev)
        for name, idx in partitions.items():
            feats = extract_features(
                model,
                store,
                idx,
                batch_size=batch_size,
                device=dev,
                transform=transform,
                num_workers=num_workers,
                progress=progress,
            )
            writer.add_split(name, feats, label_targets(store, idx), idx, store.patient_ids[idx])
        return writer.finish()
