"""NT-Xent and CLIP InfoNCE: values against a direct computation, errors, and the DDP gather."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from medtl.models.contrastive import CLIP_LOGIT_SCALE_INIT, clip_loss, nt_xent


def reference_nt_xent(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    """The SimCLR paper's loss written out anchor by anchor."""
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n = z1.shape[0]
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        sims = [math.exp(float(z[i] @ z[k]) / t) for k in range(2 * n) if k != i]
        total += -math.log(math.exp(float(z[i] @ z[j]) / t) / sum(sims))
    return total / (2 * n)


@pytest.mark.parametrize("n, t", [(2, 0.5), (5, 0.1), (7, 1.0)])
def test_nt_xent_matches_the_definition(n, t):
    g = torch.Generator().manual_seed(n)
    z1, z2 = torch.randn(n, 6, generator=g), torch.randn(n, 6, generator=g)
    assert nt_xent(z1, z2, t, gather=False).item() == pytest.approx(reference_nt_xent(z1, z2, t), rel=1e-5)


def test_nt_xent_is_low_when_views_agree_and_images_differ():
    z = torch.eye(4) * 3
    agree = nt_xent(z, z.clone(), 0.1).item()
    shuffled = nt_xent(z, z[[1, 2, 3, 0]], 0.1).item()
    assert agree < 1e-3 < 5 < shuffled


def test_nt_xent_refuses_a_batch_of_one():
    with pytest.raises(ValueError, match="at least 2 images"):
        nt_xent(torch.randn(1, 4), torch.randn(1, 4))


def test_nt_xent_refuses_mismatched_views():
    with pytest.raises(ValueError, match="one shape"):
        nt_xent(torch.randn(3, 4), torch.randn(2, 4))


def test_clip_loss_weights_image_and_caption_terms():
    g = torch.Generator().manual_seed(0)
    img, txt = torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g)
    scale = torch.tensor(CLIP_LOGIT_SCALE_INIT)
    logits = math.exp(CLIP_LOGIT_SCALE_INIT) * F.normalize(img) @ F.normalize(txt).T
    target = torch.arange(6)
    i2t, t2i = F.cross_entropy(logits, target), F.cross_entropy(logits.T, target)
    assert clip_loss(img, txt, scale).item() == pytest.approx((0.75 * i2t + 0.25 * t2i).item(), rel=1e-5)
    assert clip_loss(img, txt, scale, image_weight=1.0).item() == pytest.approx(i2t.item(), rel=1e-5)
    assert pytest.approx(math.log(1 / 0.07)) == CLIP_LOGIT_SCALE_INIT


def test_clip_loss_gradient_reaches_the_logit_scale():
    scale = torch.nn.Parameter(torch.tensor(CLIP_LOGIT_SCALE_INIT))
    clip_loss(torch.randn(4, 3), torch.randn(4, 3), scale).backward()
    assert scale.grad is not None and scale.grad.abs() > 0


# ------------------------------------------------------------------------------ across two ranks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank: int, port: int, z1: torch.Tensor, z2: torch.Tensor, out: str) -> None:
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    n = z1.shape[0] // 2
    a = z1[rank * n : (rank + 1) * n].clone().requires_grad_(True)
    b = z2[rank * n : (rank + 1) * n].clone().requires_grad_(True)
    loss = nt_xent(a, b, 0.2, gather=True)
    loss.backward()
    local = nt_xent(a.detach(), b.detach(), 0.2, gather=False)
    torch.save({"loss": loss.detach(), "local": local, "ga": a.grad, "gb": b.grad}, f"{out}/r{rank}.pt")
    torch.distributed.destroy_process_group()


def test_gathered_negatives_give_the_global_loss_and_its_gradient(tmp_path):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    mp.spawn(_rank, args=(_free_port(), z1, z2, str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"r{r}.pt") for r in (0, 1))
    a, b = z1.clone().requires_grad_(True), z2.clone().requires_grad_(True)
    full = nt_xent(a, b, 0.2, gather=False)
    full.backward()
    # DDP averages the ranks' gradients: (mean of rank losses) is the global loss.
    assert ((r0["loss"] + r1["loss"]) / 2).item() == pytest.approx(full.item(), rel=1e-5)
    grad_a = torch.cat([r0["ga"], r1["ga"]]) / 2
    grad_b = torch.cat([r0["gb"], r1["gb"]]) / 2
    assert torch.allclose(grad_a, a.grad, atol=1e-6) and torch.allclose(grad_b, b.grad, atol=1e-6)
    # local-only negatives: each rank's loss is the loss of its own half
    assert r0["local"].item() == pytest.approx(nt_xent(z1[:3], z2[:3], 0.2, gather=False).item(), rel=1e-6)
