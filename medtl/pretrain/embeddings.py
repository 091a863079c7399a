"""``medtl extract --reports``: image and text embeddings of frozen encoders, once per split.

Partitions: the store's split file (given, or its default one), else the split every run of the store
makes (val 0.1, test 0.2, seed 0); each restricted to the samples with a report and written beside
the embeddings as ``split.json``, which Adaptor pretraining trains on.

The image encoder is any registry backbone (its pooled features: a ResNet's average pool, a ViT's
CLS token, e.g. DINOv2's) initialised like every run (``--init``), or a run directory's best weights;
the text encoder a local Hugging Face directory. Only samples with a report are embedded (the
others are counted; ``strict`` refuses them). Adaptor pretraining then reads only these arrays.
When the image embeddings are a backbone's pooled features, that backbone is kept beside them
(``vision_encoder.safetensors``): an Adaptor trained on them hands it on, so downstream models run
the very encoder its embeddings came from.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medtl.errors import InputError, OutputExistsError
from medtl.io.embeddings import EmbeddingSplit, save_embeddings
from medtl.io.reports import read_reports
from medtl.io.store import Store
from medtl.progress import NULL_PROGRESS, Progress


def frozen_image_encoder(
    source: str,
    store: Store,
    *,
    init: str,
    allow_partial: bool = False,
    weights_dir: Path | None = None,
    image_size: int | None = None,
    normalise: str = "imagenet",
) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """(model, eval transform, description) of a backbone name + init, or of a run directory."""
    from medtl.data.transforms import build_transforms
    from medtl.engine import load_run
    from medtl.models import build_model, load_init

    source_path = Path(source)
    if (source_path / "config.toml").is_file():
        loaded = load_run(source_path, "best")
        description = {
            "run": str(source_path.resolve()),
            "backbone": loaded.config.backbone,
            "image_size": loaded.config.image_size,
            "normalise": loaded.config.normalise,
        }
        return loaded.model, loaded.transform(), description
    in_chans = int(store.shape[0])
    size = image_size or int(store.shape[-1])
    model = build_model(source, 1, in_chans=in_chans, image_size=size)
    report = load_init(model, init, allow_partial=allow_partial, weights_dir=weights_dir)
    transform = build_transforms(False, size=image_size, normalise=normalise, in_chans=in_chans)
    description = {
        "backbone": source,
        "init": init,
        "image_size": image_size,
        "normalise": normalise,
        "loaded": len(report.loaded),
    }
    return model, transform, description


ENCODER_FILE = "vision_encoder.safetensors"


def pooled_backbone(model: torch.nn.Module) -> Any:
    """The backbone whose pooled features ``model``'s features are (a TransferModel without a module,
    a SimCLR network, a Backbone), or None (e.g. a CDTM's output)."""
    from medtl.models.backbone import Backbone

    if isinstance(model, Backbone):
        return model
    backbone = getattr(model, "backbone", None)
    if getattr(model, "module", None) is not None or not isinstance(backbone, Backbone):
        return None
    return backbone if hasattr(model, "forward_head_input") else None


def _encoder_writer(backbone: Any, vision: dict[str, Any]) -> Any:
    from medtl.pretrain.export import backbone_spec, export_backbone

    spec = backbone_spec(backbone, image_size=vision.get("image_size"))
    return lambda path: export_backbone(backbone, path, spec=spec, origin={"vision": vision})


# The split a run makes when the store has none (medtl.engine's AUTO_SPLIT), so both agree.
AUTO_SPLIT = {"val": 0.1, "test": 0.2, "seed": 0}
SPLIT_FILE = "split.json"


def embedding_partitions(store: Store, split: str | Path | None) -> tuple[dict[str, np.ndarray], str]:
    """train/val/test rows of the store's split file, or of the split runs generate."""
    from medtl.data.splits import default_split_path, load_split, make_fraction_split

    path = Path(split) if split is not None else default_split_path(store.path)
    if split is not None or path.is_file():
        return dict(load_split(path, store).partitions), str(path)
    parts = make_fraction_split(store, **AUTO_SPLIT).partitions
    return dict(parts), "generated (val {val}, test {test}, seed {seed})".format(**AUTO_SPLIT)


def export_embeddings(
    source: str,
    data: str | Path,
    reports: str | Path,
    text_encoder: str | Path,
    out: str | Path,
    *,
    split: str | Path | None = None,
    key: str = "auto",
    strict: bool = False,
    text_pooling: str = "pooler",
    init: str = "imagenet",
    allow_partial: bool = False,
    weights_dir: Path | None = None,
    image_size: int | None = None,
    normalise: str = "imagenet",
    batch_size: int = 64,
    num_workers: int = 0,
    device: str = "auto",
    overwrite: bool = False,
    progress: Progress = NULL_PROGRESS,
) -> Path:
    """Write image and text embeddings of every split of ``data`` (``medtl.io.embeddings`` format)."""
    from medtl.data.splits import Split
    from medtl.engine import extract_features, resolve_device
    from medtl.models.text_encoders import TextEncoder, describe, resolve_text_encoder

    store = Store(data)
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(out)
    texts = read_reports(reports, store, key=key, strict=strict)
    progress.message(texts.summary())
    encoder = TextEncoder(resolve_text_encoder(text_encoder, weights_dir), pooling=text_pooling)
    model, transform, vision = frozen_image_encoder(
        source,
        store,
        init=init,
        allow_partial=allow_partial,
        weights_dir=weights_dir,
        image_size=image_size,
        normalise=normalise,
    )
    dev = resolve_device(device)
    model.to(dev)
    encoder.to(dev)
    partitions, split_source = embedding_partitions(store, split)
    with_text = set(texts.rows.tolist())
    kept = {
        name: np.array([i for i in idx if i in with_text], dtype=np.int64) for name, idx in partitions.items()
    }
    if not len(kept["train"]):
        raise InputError(reports, f"no sample of the training partition ({split_source}) has a report")
    splits: dict[str, EmbeddingSplit] = {}
    for name, idx in kept.items():
        image = extract_features(
            model,
            store,
            idx,
            batch_size=batch_size,
            device=dev,
            transform=transform,
            num_workers=num_workers,
            progress=progress,
        )
        text = encoder.encode([texts.texts[i] for i in idx], batch_size=batch_size)
        splits[name] = EmbeddingSplit(image, text, idx, store.patient_ids[idx])
    report_info = {
        "path": str(Path(reports).resolve()),
        "key": texts.key,
        "with_report": len(texts.rows),
        "skipped": len(texts.missing),
    }
    meta = {"store": {"path": str(store.path.resolve()), "checksum": store.checksum}}
    restricted = Split(kept, {**meta, "made_from": split_source, "restricted_to": "samples with a report"})
    vision_backbone = pooled_backbone(model)
    vision = {**vision, "in_chans": int(store.shape[0]), "encoder": ENCODER_FILE if vision_backbone else None}
    writers = (
        {ENCODER_FILE: _encoder_writer(vision_backbone.cpu(), vision)} if vision_backbone is not None else {}
    )
    return save_embeddings(
        out,
        splits,
        store=store.path.resolve(),
        store_checksum=store.checksum,
        vision=vision,
        text=describe(encoder),
        extra={"reports": report_info, "split": split_source},
        files={SPLIT_FILE: json.dumps(restricted.to_json(), indent=1) + "\n"},
        writers=writers,
        overwrite=overwrite,
    )
