"""ATRM — Adaptive Token Refinement Module.

A small MLP scores every local token for each of K slots; a softmax over the tokens
(padding masked out) turns the scores into K weight vectors; the K refined tokens are
the weighted sums. The module keeps no global token itself: ``FineLIP`` puts the class /
EOT token beside the K refined ones.
"""

from __future__ import annotations

import torch
from einops import einsum, rearrange
from torch import nn


class ATRM(nn.Module):
    """``ATRM(dim, k)``: ``(b, n, d)`` tokens + ``(b, n)`` mask → ``(b, k, d)`` refined, ``(b, k, n)`` weights."""

    def __init__(self, dim: int, k: int, hidden_ratio: float = 0.2, scale_init: float = 1.0):
        super().__init__()
        if k < 1:
            raise ValueError(f"atrm_k must be >= 1, got {k}")
        hidden = max(1, int(dim * hidden_ratio))
        self.k = k
        self.score = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, k))
        # The slot logits' learned scale: at 1 a fresh ATRM's weights are nearly uniform over the
        # tokens (every slot the mean token); a larger start makes the slots sharper from step 0.
        self.scale = nn.Parameter(torch.full((), float(scale_init)))

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        logits = rearrange(self.score(tokens), "b n k -> b k n") * self.scale
        weights = masked_softmax(logits, None if mask is None else rearrange(mask, "b n -> b 1 n"))
        refined = einsum(weights, tokens, "b k n, b n d -> b k d")
        return refined, weights


def masked_softmax(logits: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the last axis with ``mask`` False entries excluded; an all-masked row gives zeros."""
    if mask is None:
        return logits.softmax(-1)
    # The lowest finite value, not -inf: an all-masked row then stays finite (uniform) in the
    # forward and the backward pass, and is zeroed below so it contributes nothing.
    weights = logits.masked_fill(~mask, torch.finfo(logits.dtype).min).softmax(-1)
    return torch.where(mask.any(-1, keepdim=True), weights, torch.zeros_like(weights))
