"""The Adaptor: vision-language pretraining of a small fusion module on embeddings of frozen encoders.

Training reads only the cached embeddings ``medtl extract --reports`` wrote (``config.embeddings``):
no image or text encoder runs. The embeddings must come from the run's store (its checksum), and
an Adaptor asked for another vision width than theirs is refused. Batches carry the image
embeddings as ``features`` (B, Dv) and the text embeddings as ``text`` (B, Dt); the loss is the
CLIP InfoNCE of ``medtl.models.adaptor.Adaptor`` (image and caption terms 0.75 / 0.25, learnable
logit scale). Validation: the loss (the default monitor, for early stopping) and retrieval recall@1
in both directions over the whole partition.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from medtl.errors import ConfigError, StoreError
from medtl.io.embeddings import load_embeddings
from medtl.io.store import Store
from medtl.models.adaptor import Adaptor
from medtl.models.contrastive import clip_loss
from medtl.objectives.base import FEATURES, INDEX, TEXT, Batch, Objective, Outputs, PartitionMetrics
from medtl.objectives.configs import AdaptorConfig


class EmbeddingPairs(Dataset):
    """(image, text) embedding pairs of store rows; items are batch dicts."""

    def __init__(self, image: torch.Tensor, text: torch.Tensor, rows: np.ndarray) -> None:
        self.image, self.text, self.rows = image, text, torch.as_tensor(rows, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, items: list[int]) -> list[Batch]:
        pos = torch.as_tensor(items, dtype=torch.int64)
        image, text, rows = self.image[pos], self.text[pos], self.rows[pos]
        return [{FEATURES: image[i], TEXT: text[i], INDEX: rows[i]} for i in range(len(items))]

    def __getitem__(self, item: int) -> Batch:
        return self.__getitems__([item])[0]


class RetrievalMetric:
    """Recall@1 of image->text and text->image retrieval among all pairs of a partition."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._image: list[torch.Tensor] = []
        self._text: list[torch.Tensor] = []

    def update(self, outputs: Outputs, batch: Batch) -> None:
        self._image.append(outputs["image"].detach().float().cpu())
        self._text.append(outputs["text"].detach().float().cpu())

    def __len__(self) -> int:
        return int(sum(len(x) for x in self._image))

    def aggregate(self) -> dict[str, Any]:
        out: dict[str, Any] = {"num_samples": len(self)}
        if len(self) < 2:
            return out
        image, text = torch.cat(self._image), torch.cat(self._text)
        sims = image @ text.T  # both are L2-normalised
        target = torch.arange(len(image))
        out["recall_i2t"] = float((sims.argmax(dim=1) == target).float().mean())
        out["recall_t2i"] = float((sims.argmax(dim=0) == target).float().mean())
        return out


def _unwrap(module: nn.Module) -> Adaptor:
    inner = getattr(module, "module", module)  # DDP
    return getattr(inner, "_orig_mod", inner)  # torch.compile


class AdaptorObjective(Objective):
    """See the module docstring."""

    kind = "adaptor"
    learns_labels = False
    config_class = AdaptorConfig
    config: AdaptorConfig

    def __init__(self, config: AdaptorConfig) -> None:
        super().__init__(config)
        self.vision_dim: int | None = None
        self.text_dim: int | None = None
        self._pairs: dict[int, int] = {}

    # -- the store ---------------------------------------------------------------------------------
    def check(self, store: Store) -> None:
        if self.config.embeddings is None:
            raise ConfigError("the adaptor objective trains on cached embeddings: set objective.embeddings")
        emb = load_embeddings(self.config.embeddings, store_checksum=store.checksum)
        self.vision_dim, self.text_dim = emb.vision_dim, emb.text_dim
        self.embedding_meta = emb.meta
        if self.config.vision_dim is not None and self.config.vision_dim != emb.vision_dim:
            raise ConfigError(
                f"{emb.path}: the Adaptor's vision width {self.config.vision_dim} differs from the cached "
                f"image embeddings ({emb.vision_dim}, {emb.meta['vision'].get('backbone')})"
            )
        parts = list(emb.splits.values())
        rows = np.concatenate([p.indices for p in parts])
        self.image = torch.from_numpy(np.concatenate([p.image for p in parts]))
        self.text = torch.from_numpy(np.concatenate([p.text for p in parts]))
        self._pairs = {int(r): i for i, r in enumerate(rows)}

    def describe(self) -> dict[str, Any]:
        return {
            "embeddings": str(self.config.embeddings),
            "vision": self.embedding_meta.get("vision"),
            "text": self.embedding_meta.get("text"),
        }

    # -- the model ---------------------------------------------------------------------------------
    def _build(self, vision_dim: int, text_dim: int) -> Adaptor:
        c = self.config
        return Adaptor(
            vision_dim,
            text_dim,
            dim=c.dim,
            layers=c.layers,
            heads=c.heads,
            feedforward=c.feedforward,
            dropout=c.dropout,
            image_loss_weight=c.image_loss_weight,
        )

    def build_model(
        self,
        *,
        backbone: str,
        in_chans: int,
        module: str | None,
        truncate: int | None,
        image_size: int | None,
        init: str = "random",
    ) -> Adaptor:
        if module is not None or truncate is not None:
            raise ConfigError(
                "Adaptor pretraining trains the Adaptor alone; use a strategy without module/truncate"
            )
        if self.vision_dim is None or self.text_dim is None:
            raise RuntimeError("check(store) first")
        return self._build(self.vision_dim, self.text_dim)

    def model_metadata(self) -> dict[str, str]:
        return {"objective": self.kind, "embeddings": json.dumps(self.describe())}

    def load_model(self, metadata: Mapping[str, Any]) -> Adaptor:
        spec = dict(metadata["spec"])
        self.vision_dim, self.text_dim = int(spec["vision_dim"]), int(spec["text_dim"])
        return self._build(self.vision_dim, self.text_dim)

    # -- training ----------------------------------------------------------------------------------
    def dataset(self, store: Store, indices: np.ndarray, transform: Any) -> EmbeddingPairs:
        missing = [int(r) for r in indices if int(r) not in self._pairs]
        if missing:
            raise StoreError(
                self.config.embeddings,
                f"{len(missing)} samples of the run's partitions have no cached embeddings (first: row "
                f"{missing[0]}); train with the split made with them ({self.config.embeddings}/split.json)",
            )
        pos = torch.as_tensor([self._pairs[int(r)] for r in indices], dtype=torch.int64)
        return EmbeddingPairs(self.image[pos], self.text[pos], np.asarray(indices))

    def forward(self, module: nn.Module, batch: Batch) -> Outputs:
        image, text = module(batch[FEATURES], batch[TEXT])
        return {"image": image, "text": text, "logit_scale": _unwrap(module).logit_scale}

    def loss(self, outputs: Outputs, batch: Batch) -> torch.Tensor:
        image = outputs["image"]
        if image.shape[0] < 2 and not torch.is_grad_enabled():
            return image.new_zeros(())  # a last validation batch of one pair has no negative
        # The outputs are normalised already; clip_loss normalises again (a no-op) and scales.
        return clip_loss(
            image, outputs["text"], outputs["logit_scale"], image_weight=self.config.image_loss_weight
        )

    # -- evaluation --------------------------------------------------------------------------------
    def metric(self, *, final: bool = False) -> RetrievalMetric:
        return RetrievalMetric()

    def summarise(
        self,
        metric: RetrievalMetric,
        *,
        loss: float | None,
        groups: np.ndarray | None,
        bootstrap: int,
        seed: int,
    ) -> PartitionMetrics:  # type: ignore[override]
        values = metric.aggregate()
        num_samples = values.pop("num_samples")
        return PartitionMetrics(num_samples=num_samples, values=values, loss=loss)
