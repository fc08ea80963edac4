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
    """CLIM one caption at a time against every image, as the official FineLIP code computes it.

    Leaky ReLU before the max, as written in the paper; ``(i, t)`` scores.
    """
    images = F.normalize(image_tokens, dim=-1)
    texts = F.normalize(text_tokens, dim=-1)
    valid_regions = torch.ones(images.shape[:2], dtype=torch.bool) if image_mask is None else image_mask
    columns = []
    for t in range(texts.shape[0]):
        words = texts[t] if text_mask is None else texts[t][text_mask[t]]  # (b, d)
        sim = F.leaky_relu(torch.einsum("iad,bd->iab", images, words), slope)  # (images, regions, words)
        best_region = sim.masked_fill(~valid_regions[:, :, None], float("-inf")).max(dim=1).values  # (i, b)
        best_word = sim.max(dim=2).values  # (i, a)
        region_mean = (best_word * valid_regions).sum(1) / valid_regions.sum(1)
        columns.append(best_region.mean(1) + region_mean)
    return torch.stack(columns, dim=1)


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


# The tiny diffusion pipelines the tests use are the library's offline demo (finelip_kit.generate).
