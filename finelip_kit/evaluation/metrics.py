"""Retrieval metrics on score matrices (pure functions): ranks, recall@k, within-group accuracy and its
chance level.

Ranks and ties: a candidate outranks the ground truth when its score is higher, or equal with a lower
index (ties broken by index, deterministically). Image→text counts a hit when *any* of the image's
captions is within the top k (COCO / Flickr convention).
"""

from __future__ import annotations

from typing import Sequence

import torch
from einops import rearrange


def ranks_of_truth(scores: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Rank (0 = top) of column ``truth[r]`` in each row of ``scores`` ``(rows, cols)``; ties by index."""
    rows = torch.arange(scores.shape[0], device=scores.device)
    target = scores[rows, truth].unsqueeze(1)
    columns = torch.arange(scores.shape[1], device=scores.device).unsqueeze(0)
    ahead = (scores > target) | ((scores == target) & (columns < truth.unsqueeze(1)))
    return ahead.sum(1)


def recall_at_k(ranks: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    return {f"R@{k}": 100.0 * (ranks < k).float().mean().item() for k in ks}


def image_to_text_ranks(scores: torch.Tensor, text_image: torch.Tensor) -> torch.Tensor:
    """For each image (row), the rank of its best-ranked own caption; ties by index."""
    order = torch.argsort(-scores, dim=1, stable=True)  # stable: equal scores keep index order
    own = text_image[order] == torch.arange(scores.shape[0], device=scores.device).unsqueeze(1)
    never = torch.full((scores.shape[0],), scores.shape[1], dtype=torch.long, device=scores.device)
    return torch.where(own.any(1), own.float().argmax(1), never)


def retrieval_metrics(scores: torch.Tensor, text_image: torch.Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Recall@k both ways from an ``(n_images, n_texts)`` score matrix; several captions per image allowed."""
    scores = scores.float()
    i2t = recall_at_k(image_to_text_ranks(scores, text_image), ks)
    t2i = recall_at_k(ranks_of_truth(scores.T, text_image), ks)
    return {**{f"i2t/{k}": v for k, v in i2t.items()}, **{f"t2i/{k}": v for k, v in t2i.items()}}


def group_accuracy(
    scores: torch.Tensor, text_image: torch.Tensor, image_groups: torch.Tensor, text_groups: torch.Tensor
) -> dict[str, float]:
    """Within-group accuracy (percent): is the right image / caption top-scored *inside its group*?"""
    same = rearrange(image_groups, "i -> i 1") == rearrange(text_groups, "t -> 1 t")  # (images, texts)
    masked = scores.float().masked_fill(~same, float("-inf"))
    i2t = image_to_text_ranks(masked, text_image) == 0
    t2i = ranks_of_truth(masked.T, text_image) == 0
    return {"group/i2t": 100.0 * i2t.float().mean().item(), "group/t2i": 100.0 * t2i.float().mean().item()}


def group_chance(text_image: torch.Tensor, image_groups: torch.Tensor, text_groups: torch.Tensor) -> dict[str, float]:
    """Within-group accuracy (percent) of a random scorer, as ``group_accuracy`` counts it: image→text, an
    image's own captions among its group's captions; text→image, one image among its group's images
    (25 % each way for the synthetic benchmark's groups of four)."""
    same = rearrange(image_groups, "i -> i 1") == rearrange(text_groups, "t -> 1 t")  # (images, texts)
    own = torch.zeros_like(same)
    own[text_image, torch.arange(len(text_image))] = True
    i2t = own.sum(1).float() / same.sum(1).float()
    t2i = 1.0 / same.sum(0).float()
    return {"group/i2t": 100.0 * i2t.mean().item(), "group/t2i": 100.0 * t2i.mean().item()}
