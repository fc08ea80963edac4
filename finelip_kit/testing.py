"""Slow, obvious reference implementations that the tests and benchmarks compare against."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def clim_scores_loop(
    image_tokens: torch.Tensor,
    text_tokens: torch.Tensor,
    text_mask: torch.Tensor | None = None,
    image_mask: torch.Tensor | None = None,
    slope: float = 0.1,
) -> torch.Tensor:
    """CLIM one caption at a time, as the official FineLIP code computes it: ``(i, t)`` scores."""
    n_images, n_texts = image_tokens.shape[0], text_tokens.shape[0]
    images = F.normalize(image_tokens, dim=-1)
    texts = F.normalize(text_tokens, dim=-1)
    scores = torch.empty(n_images, n_texts, dtype=image_tokens.dtype)
    for t in range(n_texts):
        words = texts[t] if text_mask is None else texts[t][text_mask[t]]
        for i in range(n_images):
            regions = images[i] if image_mask is None else images[i][image_mask[i]]
            sim = F.leaky_relu(regions @ words.T, slope)  # (regions, words)
            scores[i, t] = sim.max(dim=0).values.mean() + sim.max(dim=1).values.mean()
    return scores


def kps_stretch_longclip(table: torch.Tensor, keep: int = 20) -> torch.Tensor:
    """Long-CLIP's knowledge-preserving ratio-4 stretch, written row by row as in its release."""
    length, dim = table.shape
    new = torch.zeros(4 * length - 3 * keep, dim, dtype=table.dtype)
    for i in range(keep):
        new[i] = table[i]
    for i in range(length - 1 - keep):
        new[4 * i + keep] = table[i + keep]
        new[4 * i + 1 + keep] = 3 * table[i + keep] / 4 + 1 * table[i + 1 + keep] / 4
        new[4 * i + 2 + keep] = 2 * table[i + keep] / 4 + 2 * table[i + 1 + keep] / 4
        new[4 * i + 3 + keep] = 1 * table[i + keep] / 4 + 3 * table[i + 1 + keep] / 4
    last, step = table[length - 1], table[length - 1] - table[length - 2]
    for j in range(4):
        new[4 * length - 3 * keep - 4 + j] = last + j * step / 4
    return new
