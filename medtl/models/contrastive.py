"""Contrastive losses as pure functions: NT-Xent (SimCLR) and CLIP-style InfoNCE (the Adaptor).

Under DDP, NT-Xent can take its negatives from every rank: the projections are gathered with
``torch.distributed.nn.functional.all_gather``, whose backward sends each rank the gradient of the
others' losses with respect to its own samples, so the averaged DDP gradient is the gradient of the
loss over the global batch. Each rank computes the loss of its own anchors only (no work repeated).
With ``gather=False`` (the domain-boundaries study's setting) a rank sees its local negatives only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

CLIP_LOGIT_SCALE_INIT = math.log(1 / 0.07)


def _world() -> tuple[int, int]:
    """(rank, world size) of the default process group, (0, 1) without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` (B, ...) of every rank in rank order; gradients flow back to each rank."""
    _, world = _world()
    if world == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


def nt_xent(z1: Tensor, z2: Tensor, temperature: float = 0.1, *, gather: bool = True) -> Tensor:
    """Normalised temperature-scaled cross entropy of two views (B, D) of the same B images.

    Every projection is an anchor whose positive is the other view of its image and whose negatives
    are the 2B - 2 other projections (2N - 2 over all ranks with ``gather``). Returns the mean over
    this rank's 2B anchors.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(
            f"the two views must be (B, D) of one shape, got {tuple(z1.shape)}, {tuple(z2.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    n = z1.shape[0]
    z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    rank, world = _world() if gather else (0, 1)
    total = n * world
    if total < 2:
        raise ValueError("NT-Xent needs at least 2 images in a batch: with one, a view has no negative")
    # (2N, D): every rank's first views, then every rank's second views
    pair = (gather_with_grad(z1), gather_with_grad(z2)) if world > 1 else (z1, z2)
    candidates = torch.cat(pair)
    anchors = torch.cat([z1, z2])  # (2n, D)
    logits = anchors @ candidates.T / temperature  # (2n, 2N)
    local = torch.arange(n, device=z1.device) + rank * n
    self_idx = torch.cat([local, local + total])
    positive = torch.cat([local + total, local])
    rows = torch.arange(2 * n, device=z1.device)
    logits = logits.index_put((rows, self_idx), torch.tensor(float("-inf"), device=z1.device))
    return F.cross_entropy(logits, positive)


def clip_loss(
    image: Tensor,
    text: Tensor,
    logit_scale: Tensor,
    *,
    image_weight: float = 0.75,
    max_scale: float = 100.0,
) -> Tensor:
    """CLIP InfoNCE between paired embeddings (B, D): ``image_weight`` x image->text cross entropy
    + (1 - ``image_weight``) x text->image, with similarities scaled by ``exp(logit_scale)``
    (clamped at ``max_scale`` as in CLIP). Embeddings are L2-normalised here."""
    if image.shape != text.shape or image.ndim != 2:
        raise ValueError(
            f"image and text must be (B, D) of one shape, got {tuple(image.shape)}, {tuple(text.shape)}"
        )
    if image.shape[0] < 2:
        raise ValueError("a contrastive loss needs at least 2 pairs in a batch")
    image, text = F.normalize(image.float(), dim=1), F.normalize(text.float(), dim=1)
    scale = logit_scale.float().exp().clamp(max=max_scale)
    logits = scale * image @ text.T
    target = torch.arange(image.shape[0], device=image.device)
    return image_weight * F.cross_entropy(logits, target) + (1 - image_weight) * F.cross_entropy(
        logits.T, target
    )
