"""The Cross-Domain Transfer Module (CDTM), used by the ``frt`` and ``staged`` strategies.

tokens (B, N, C) -> LayerNorm -> block -> LayerNorm -> mean over tokens -> (B, C); the model's head
is the final Linear(C, K). The block is ``x = ClusterAttention(LN(x))`` (no residual) followed by
``x = x + MLP(LN(x))``. ClusterAttention mixes tokens with a transfer matrix chosen per image: a
softmax over M learned cluster centres, by cosine similarity to the image's mean token, weights M
token-mixing matrices (N x N).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medtl.errors import ConfigError

NUM_CENTERS = 300
MLP_RATIO = 4


class ClusterAttention(nn.Module):
    def __init__(self, dim: int, num_tokens: int, num_centers: int = NUM_CENTERS) -> None:
        super().__init__()
        self.num_tokens = num_tokens
        self.centers = nn.Parameter(torch.empty(dim, num_centers))
        self.tran_ms = nn.Parameter(torch.empty(num_centers, num_tokens, num_tokens))
        self.proj = nn.Linear(dim, dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.centers, std=0.02)
        # There is no residual around the attention, so each transfer matrix starts at the identity:
        # the block then begins as a per-token linear map and passes the backbone's tokens through
        # instead of scrambling them. The small noise lets the M matrices drift apart.
        with torch.no_grad():
            eye = torch.eye(self.num_tokens).expand_as(self.tran_ms)
            self.tran_ms.copy_(eye + 1e-3 * torch.randn_like(self.tran_ms))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] != self.num_tokens:
            raise ConfigError(
                f"the CDTM was built for {self.num_tokens} tokens but got {x.shape[1]}; "
                "use the image size the model was built with"
            )
        q = F.normalize(x.mean(dim=1), dim=-1)  # (B, C)
        a = torch.softmax(q @ F.normalize(self.centers, dim=0), dim=-1)  # (B, M)
        transfer = torch.einsum("bm,mnk->bnk", a, self.tran_ms)  # (B, N, N)
        return self.proj(transfer @ x)


class CDTMBlock(nn.Module):
    def __init__(self, dim: int, num_tokens: int, num_centers: int = NUM_CENTERS) -> None:
        super().__init__()
        from timm.layers import Mlp

        self.norm1 = nn.LayerNorm(dim)
        self.attn = ClusterAttention(dim, num_tokens, num_centers)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, MLP_RATIO * dim, act_layer=nn.GELU)

    def forward(self, x: Tensor) -> Tensor:
        x = self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class CrossDomainTransferModule(nn.Module):
    """Tokens (B, N, C) -> pooled features (B, C)."""

    def __init__(self, dim: int, num_tokens: int, num_centers: int = NUM_CENTERS) -> None:
        super().__init__()
        self.out_features = dim
        self.norm_in = nn.LayerNorm(dim)
        self.block = CDTMBlock(dim, num_tokens, num_centers)
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.norm_out(self.block(self.norm_in(tokens))).mean(dim=1)
