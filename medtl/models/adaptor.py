"""The Adaptor: a small vision-language fusion module trained on embeddings of frozen encoders.

Image embeddings (B, Dv) and text embeddings (B, Dt) are projected to ``dim`` (768) by bias-free
linear layers and L2-normalised, then pass ``layers`` (2) post-norm Transformer layers (multi-head
attention with 12 heads, dropout 0.1, feed-forward 2048 with ReLU). In each layer the image is
updated by cross-attention with the text (queries from the image, keys and values from the text),
then the text by cross-attention with the updated image; one layer serves both modalities, as in
the original. Without text (downstream use) the image passes the same layers with self-attention.
The outputs are L2-normalised; the loss is CLIP's InfoNCE with a learnable logit scale.

Downstream (``--strategy adaptor --init ADAPTOR_RUN``), ``AdaptorImagePath`` is the image path
alone — the projection and the layers with self-attention, what ``Adaptor.encode_image`` computes —
between a frozen encoder's pooled features and a new head (``adaptor_head``) or a U-Net's bottleneck;
``medtl.models.adaptor_run`` reads a finished Adaptor run.

The original's trap: attention over (B, D) input. Every sample here is its own sequence of ONE token
(B, 1, D) with ``batch_first=True``; a (B, D) tensor handed to a sequence-first attention is one
sequence of B tokens, and every sample attends to the others. (With one token the attention weight
is 1: the update is the other modality's value projection, which is what the layer can learn.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medtl.errors import CheckpointError, ConfigError
from medtl.models.contrastive import CLIP_LOGIT_SCALE_INIT, clip_loss

ADAPTOR_DIM = 768
IMAGE_LOSS_WEIGHT = 0.75
# The Adaptor's spec keys that shape its image path, and the Adaptor's defaults for them.
IMAGE_PATH_KEYS = ("vision_dim", "dim", "layers", "heads", "feedforward", "dropout")
IMAGE_PATH_DEFAULTS = {"dim": ADAPTOR_DIM, "layers": 2, "heads": 12, "feedforward": 2048, "dropout": 0.1}


class AdaptorLayer(nn.Module):
    """Post-norm attention + feed-forward on one-token sequences (B, 1, D)."""

    def __init__(self, dim: int, heads: int, feedforward: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.linear1 = nn.Linear(dim, feedforward)
        self.linear2 = nn.Linear(feedforward, dim)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout, self.dropout1, self.dropout2 = (
            nn.Dropout(dropout),
            nn.Dropout(dropout),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        """``x`` attends to ``context`` (cross-attention), or to itself when there is none."""
        kv = x if context is None else context
        x = self.norm1(x + self.dropout1(self.attn(x, kv, kv, need_weights=False)[0]))
        return self.norm2(x + self.dropout2(self.linear2(self.dropout(F.relu(self.linear1(x))))))


class Adaptor(nn.Module):
    """See the module docstring. ``spec`` rebuilds the same module (stored with its weights)."""

    def __init__(
        self,
        vision_dim: int,
        text_dim: int,
        *,
        dim: int = ADAPTOR_DIM,
        layers: int = 2,
        heads: int = 12,
        feedforward: int = 2048,
        dropout: float = 0.1,
        image_loss_weight: float = IMAGE_LOSS_WEIGHT,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"adaptor width {dim} is not divisible by its {heads} attention heads")
        if vision_dim < 1 or text_dim < 1:
            raise ConfigError(f"embedding sizes must be positive (vision {vision_dim}, text {text_dim})")
        self.vision_dim, self.text_dim, self.dim = vision_dim, text_dim, dim
        self.image_loss_weight = image_loss_weight
        self.vision_projection = nn.Linear(vision_dim, dim, bias=False)
        self.text_projection = nn.Linear(text_dim, dim, bias=False)
        self.layers = nn.ModuleList(AdaptorLayer(dim, heads, feedforward, dropout) for _ in range(layers))
        self.logit_scale = nn.Parameter(torch.tensor(CLIP_LOGIT_SCALE_INIT))
        self.spec: dict[str, Any] = {
            "vision_dim": vision_dim,
            "text_dim": text_dim,
            "dim": dim,
            "layers": layers,
            "heads": heads,
            "feedforward": feedforward,
            "dropout": dropout,
            "image_loss_weight": image_loss_weight,
        }

    def _check(self, x: Tensor, expected: int, what: str) -> None:
        if x.ndim != 2 or x.shape[1] != expected:
            raise ConfigError(
                f"the Adaptor takes {what} embeddings of size {expected}, got shape {tuple(x.shape)}"
            )

    def forward(self, image: Tensor, text: Tensor) -> tuple[Tensor, Tensor]:
        """Fused, L2-normalised (image, text) embeddings (B, dim) of paired (B, Dv) and (B, Dt)."""
        self._check(image, self.vision_dim, "vision")
        self._check(text, self.text_dim, "text")
        # (B, 1, dim): B sequences of one token, never one sequence of B tokens.
        img = F.normalize(self.vision_projection(image), dim=-1).unsqueeze(1)
        txt = F.normalize(self.text_projection(text), dim=-1).unsqueeze(1)
        for layer in self.layers:
            img = layer(img, txt)
            txt = layer(txt, img)
        return F.normalize(img[:, 0], dim=-1), F.normalize(txt[:, 0], dim=-1)

    def encode_image(self, image: Tensor) -> Tensor:
        """The image path alone (downstream tasks): projection, the layers with self-attention."""
        self._check(image, self.vision_dim, "vision")
        return _image_path(self.vision_projection, self.layers, image)

    # -- what strategies address --------------------------------------------------------------------
    def groups(self) -> dict[str, list[str]]:
        """One group, "module": strategies train it whole ("all" or "module")."""
        return {"module": [n for n, _ in self.named_parameters()]}

    def blocks(self) -> list[list[str]]:
        """The projections (and logit scale), then each layer (what ``last_blocks:N`` counts)."""
        names = [n for n, _ in self.named_parameters()]
        blocks = [[n for n in names if not n.startswith("layers.")]]
        return blocks + [[n for n in names if n.startswith(f"layers.{i}.")] for i in range(len(self.layers))]

    def norm_layers(self) -> list[nn.Module]:
        return []  # LayerNorm only: nothing for a BatchNorm policy to hold

    def loss(self, image: Tensor, text: Tensor) -> Tensor:
        """CLIP InfoNCE of the fused embeddings, image and caption terms weighted 0.75 / 0.25."""
        img, txt = self(image, text)
        return clip_loss(img, txt, self.logit_scale, image_weight=self.image_loss_weight)


def _image_path(projection: nn.Linear, layers: Sequence[AdaptorLayer], image: Tensor) -> Tensor:
    img = F.normalize(projection(image), dim=-1).unsqueeze(1)  # B sequences of one token
    for layer in layers:
        img = layer(img)
    return F.normalize(img[:, 0], dim=-1)


class AdaptorImagePath(nn.Module):
    """A pretrained Adaptor's image path on pooled features (B, vision_dim) -> (B, dim), L2-normalised:
    the same parameters under the same names as the Adaptor's (``vision_projection``, ``layers``).

    Frozen (no parameter requires grad) it stays in eval mode whatever ``train()`` asks, as the
    Adaptor study held it: its dropout would otherwise make a frozen feature extractor random, and
    its features could not be cached for a head-only phase.
    """

    takes = "pooled"  # what it reads from a backbone (a CDTM reads tokens)

    def __init__(
        self, vision_dim: int, *, dim: int, layers: int, heads: int, feedforward: int, dropout: float
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ConfigError(f"adaptor width {dim} is not divisible by its {heads} attention heads")
        self.vision_dim, self.out_features = vision_dim, dim
        self.vision_projection = nn.Linear(vision_dim, dim, bias=False)
        self.layers = nn.ModuleList(AdaptorLayer(dim, heads, feedforward, dropout) for _ in range(layers))
        self.spec = {"vision_dim": vision_dim, "dim": dim, "layers": layers, "heads": heads,
                     "feedforward": feedforward, "dropout": dropout}  # fmt: skip

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> AdaptorImagePath:
        missing = [k for k in IMAGE_PATH_KEYS if k not in spec]
        if missing:
            raise ConfigError(f"an Adaptor spec needs {', '.join(missing)}")
        return cls(int(spec["vision_dim"]), **{k: spec[k] for k in IMAGE_PATH_KEYS[1:]})

    def load_adaptor(self, state_dict: Mapping[str, Tensor], source: str | Path) -> list[str]:
        """Fill from an Adaptor's state dict (its text path and logit scale are left out); returns
        the names loaded. Every image-path tensor must be there with its shape."""
        own = self.state_dict()
        missing = [k for k in own if k not in state_dict]
        wrong = [k for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
        if missing or wrong:
            raise CheckpointError(
                source, f"not this Adaptor's image path ({len(missing)} tensors missing, {len(wrong)} "
                f"of another shape; first: {(missing + wrong)[0]})",
            )  # fmt: skip
        self.load_state_dict({k: state_dict[k] for k in own})
        return list(own)

    def train(self, mode: bool = True) -> AdaptorImagePath:
        return super().train(mode and any(p.requires_grad for p in self.parameters()))

    def forward(self, pooled: Tensor) -> Tensor:
        if pooled.ndim != 2 or pooled.shape[1] != self.vision_dim:
            raise ConfigError(
                f"the Adaptor takes vision embeddings of size {self.vision_dim}, got {tuple(pooled.shape)}"
            )
        return _image_path(self.vision_projection, self.layers, pooled)


def adaptor_head(
    num_outputs: int, *, dim: int = ADAPTOR_DIM, hidden: int = 512, dropout: float = 0.1
) -> nn.Sequential:
    """The downstream classifier on adaptor features: Dropout -> Linear(dim, hidden, no bias) ->
    BatchNorm -> ReLU -> Dropout -> Linear(hidden, num_outputs)."""
    if num_outputs < 1:
        raise ConfigError(f"a head needs at least one output, got {num_outputs}")
    return nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(dim, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Dropout(dropout),
        nn.Linear(hidden, num_outputs),
    )
