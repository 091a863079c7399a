"""The Cross-Domain Transfer Module: shapes, the cluster attention by hand, initialisation."""

from __future__ import annotations

import math

import pytest
import torch

from medtl.errors import ConfigError
from medtl.models import build_model
from medtl.models.cdtm import ClusterAttention, CrossDomainTransferModule


def test_module_maps_tokens_to_pooled_features():
    module = CrossDomainTransferModule(dim=16, num_tokens=9, num_centers=5)
    out = module(torch.randn(3, 9, 16))
    assert out.shape == (3, 16)
    assert module.block.attn.centers.shape == (16, 5)
    assert module.block.attn.tran_ms.shape == (5, 9, 9)
    assert module.block.mlp.fc1.out_features == 64  # MLP C -> 4C -> C


def test_default_sizes_on_vit_and_convnext_tokens():
    vit = CrossDomainTransferModule(dim=768, num_tokens=196)
    assert vit.block.attn.tran_ms.shape == (300, 196, 196)
    assert vit.block.attn.centers.shape == (768, 300)
    convnext = CrossDomainTransferModule(dim=1024, num_tokens=49)
    assert convnext.block.attn.tran_ms.shape == (300, 49, 49)


def test_cluster_attention_by_hand():
    attn = ClusterAttention(dim=2, num_tokens=2, num_centers=2)
    with torch.no_grad():
        attn.centers.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))  # columns: centres e1, 2*e2
        attn.tran_ms.copy_(torch.stack([torch.eye(2), torch.tensor([[0.0, 1.0], [1.0, 0.0]])]))
        attn.proj.weight.copy_(torch.eye(2))
        attn.proj.bias.zero_()
    x = torch.tensor([[[3.0, 0.0], [1.0, 0.0]]])  # mean token (2, 0): along centre 1
    # cosine similarities (1, 0) -> a = softmax = (e/(e+1), 1/(e+1)); T = a1*I + a2*swap
    a1, a2 = math.e / (math.e + 1), 1 / (math.e + 1)
    expected = torch.tensor([[[3 * a1 + 1 * a2, 0.0], [3 * a2 + 1 * a1, 0.0]]])
    torch.testing.assert_close(attn(x), expected)


def test_block_has_no_residual_around_attention_and_one_around_mlp():
    module = CrossDomainTransferModule(dim=4, num_tokens=3, num_centers=2)
    block = module.block
    with torch.no_grad():
        for p in block.mlp.parameters():
            p.zero_()
    x = torch.randn(2, 3, 4)
    # with a zero MLP the block is exactly the attention on LN(x)
    torch.testing.assert_close(block(x), block.attn(block.norm1(x)))


def test_transfer_matrices_start_near_identity():
    attn = ClusterAttention(dim=8, num_tokens=6, num_centers=4)
    deviation = (attn.tran_ms - torch.eye(6)).abs().max()
    assert 0 < deviation < 1e-2


def test_wrong_token_count_is_a_clear_error():
    module = CrossDomainTransferModule(dim=8, num_tokens=4, num_centers=2)
    with pytest.raises(ConfigError, match="built for 4 tokens but got 9"):
        module(torch.randn(1, 9, 8))


@pytest.mark.parametrize(("backbone", "size", "tokens", "dim"), [
    ("vit_tiny_patch16_224", 64, 16, 192),
    ("convnext_atto", 64, 4, 320),
])  # fmt: skip
def test_build_model_sizes_the_module_from_the_backbone_tokens(backbone, size, tokens, dim):
    model = build_model(backbone, 3, module="cdtm", image_size=size)
    assert model.module.block.attn.tran_ms.shape == (300, tokens, tokens)
    assert model.head.in_features == dim
    assert model(torch.randn(2, 3, size, size)).shape == (2, 3)
