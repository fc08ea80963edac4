"""Losses: InfoNCE on global embeddings, a VSE++ triplet on any score matrix, and
Long-CLIP's primary-component matching. Also the distributed gather they rely on.

Under ``torch.distributed`` features are gathered from every rank *with gradients*
(functional collectives), so a loss computed on the gathered batch gives each rank the
gradient of the full-batch loss (times the world size, which DDP's averaging removes).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import einsum, rearrange, reduce


def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0, keeping the autograd graph of the local part."""
    if world()[1] == 1:
        return x
    from torch.distributed._functional_collectives import all_gather_tensor_autograd

    return all_gather_tensor_autograd(x.contiguous(), 0, dist.group.WORLD)


def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` (ids, masks) from every rank along dim 0, without gradients."""
    if world()[1] == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world()[1])]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def positives_from_ids(image_ids: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
    """``(n, n)`` bool: pair ``(i, j)`` is positive when images ``i`` and ``j`` share an id (diagonal if no ids)."""
    if image_ids is None:
        return torch.eye(n, dtype=torch.bool, device=device)
    return rearrange(image_ids, "i -> i 1") == rearrange(image_ids, "j -> 1 j")


def info_nce(
    image_embeds: torch.Tensor,
    text_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    image_ids: torch.Tensor | None = None,
    local_loss: bool = False,
    label_smoothing: float = 0.0,
    normalise_images: bool = True,
) -> torch.Tensor:
    """CLIP's symmetric InfoNCE on the batch gathered across ranks.

    ``image_embeds``/``text_embeds`` ``(b, d)`` (this rank's pairs, normalised here unless
    ``normalise_images=False`` for the images); ``logit_scale`` is the log temperature (a
    scalar, already clamped by the caller). With ``image_ids``, every pair sharing the image
    is a positive: the target is uniform over them (plain CLIP when ids are unique).
    ``label_smoothing`` ε mixes the target with the uniform one, ``(1 - ε)·target + ε / n``
    (``F.cross_entropy``'s ``label_smoothing`` when ids are unique). ``local_loss``: each rank
    scores only its own rows against all columns (open_clip's form); the mean over ranks is the full loss.
    """
    image_embeds = F.normalize(image_embeds, dim=-1) if normalise_images else image_embeds
    text_embeds = F.normalize(text_embeds, dim=-1)
    all_images, all_texts = gather_with_grad(image_embeds), gather_with_grad(text_embeds)
    all_ids = None if image_ids is None else gather_no_grad(image_ids)
    positives = positives_from_ids(all_ids, all_images.shape[0], all_images.device).to(image_embeds.dtype)
    scale = logit_scale.exp()
    if local_loss:
        rank, _ = world()
        rows = slice(rank * image_embeds.shape[0], (rank + 1) * image_embeds.shape[0])
        logits_i2t = scale * einsum(image_embeds, all_texts, "i d, t d -> i t")
        logits_t2i = scale * einsum(text_embeds, all_images, "t d, i d -> t i")
        targets = positives[rows]
    else:
        logits_i2t = scale * einsum(all_images, all_texts, "i d, t d -> i t")
        logits_t2i = logits_i2t.T
        targets = positives
    return 0.5 * (_soft_cross_entropy(logits_i2t, targets, label_smoothing)
                  + _soft_cross_entropy(logits_t2i, targets, label_smoothing))


def _soft_cross_entropy(logits: torch.Tensor, positives: torch.Tensor, smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy with the target spread uniformly over each row's positives, mixed with
    the uniform target over all columns by ``smoothing``."""
    targets = positives / reduce(positives, "r c -> r 1", "sum")
    if smoothing:
        targets = (1 - smoothing) * targets + smoothing / logits.shape[-1]
    return -(targets * logits.log_softmax(-1)).sum(-1).mean()


def triplet_loss(
    scores: torch.Tensor,
    positives: torch.Tensor,
    margin: float = 0.2,
    negatives: str = "sum",
    reduction: str = "sum",
) -> torch.Tensor:
    """Bidirectional VSE++ hinge on a square ``(n, n)`` image × text score matrix.

    The diagonal holds each pair's own score; ``positives`` ``(n, n)`` marks pairs that
    must not act as negatives (same image id). For every diagonal pair ``(k, k)``:
    image→text costs ``relu(margin + s[k, j] - s[k, k])`` over negative texts ``j`` and
    text→image costs ``relu(margin + s[i, k] - s[k, k])`` over negative images ``i``;
    ``negatives="sum"`` adds them up, ``"hardest"`` keeps the largest (VSE++ max-violation).
    ``reduction="sum"`` sums over the batch as the official FineLIP code does; ``"mean"``
    divides by ``n`` so the loss does not grow with the batch.
    """
    if scores.ndim != 2 or scores.shape[0] != scores.shape[1]:
        raise ValueError(f"triplet_loss needs a square score matrix, got shape {tuple(scores.shape)}")
    if positives.shape != scores.shape:
        raise ValueError(f"positives must have the scores' shape {tuple(scores.shape)}, got {tuple(positives.shape)}")
    if negatives not in ("sum", "hardest"):
        raise ValueError(f"negatives must be 'sum' or 'hardest', got {negatives!r}")
    if reduction not in ("sum", "mean"):
        raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
    diagonal = torch.diagonal(scores)
    cost_text = (margin + scores - rearrange(diagonal, "i -> i 1")).clamp(min=0).masked_fill(positives, 0)
    cost_image = (margin + scores - rearrange(diagonal, "t -> 1 t")).clamp(min=0).masked_fill(positives, 0)
    if negatives == "hardest":
        cost_text, cost_image = reduce(cost_text, "i t -> i", "max"), reduce(cost_image, "i t -> t", "max")
    total = cost_text.sum() + cost_image.sum()
    return total / scores.shape[0] if reduction == "mean" else total


def primary_components(x: torch.Tensor, k: int, basis_gradient: bool = False) -> torch.Tensor:
    """``x`` ``(n, d)`` reconstructed from its top-``k`` principal components (Long-CLIP's PCA step).

    Centre, project on the ``k`` leading principal directions, project back, add the mean.
    Computed in float32 at least. By default the basis is a constant for autograd (the kit's choice:
    the eigendecomposition's gradient is undefined when eigenvalues repeat, which they do
    whenever the batch is smaller than the feature dimension). ``basis_gradient=True`` is
    Long-CLIP's code: the directions come from an SVD of the centred features and the
    gradient flows through it too (it can be huge or non-finite when singular values nearly
    tie; the trainer skips such a step and counts it).
    """
    if not 1 <= k <= x.shape[1]:
        raise ValueError(f"pcm_components must be in [1, {x.shape[1]}] for {x.shape[1]}-d features, got {k}")
    wide = x.to(torch.promote_types(x.dtype, torch.float32))  # half precision: in float32, as Long-CLIP does
    mean = reduce(wide, "n d -> 1 d", "mean")
    centred = wide - mean
    if basis_gradient:
        _, _, rows = torch.linalg.svd(centred, full_matrices=False)  # descending singular values
        top = rearrange(rows[:k], "k d -> d k")
    else:
        with torch.no_grad():
            _, vectors = torch.linalg.eigh(einsum(centred, centred, "n d, n e -> d e"))  # ascending eigenvalues
        top = vectors[:, -k:]
    coordinates = einsum(centred, top, "n d, d k -> n k")
    return (einsum(coordinates, top, "n k, d k -> n d") + mean).to(x.dtype)


def primary_component_loss(
    image_embeds: torch.Tensor,
    short_text_embeds: torch.Tensor,
    logit_scale: torch.Tensor,
    components: int = 32,
    image_ids: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    variant: str = "kit",
    local_loss: bool = False,
) -> torch.Tensor:
    """Long-CLIP's primary-component matching: InfoNCE between short captions and the image
    features reduced to their top principal components.

    ``variant="kit"``: the PCA runs on the batch gathered across ranks (one basis for the
    whole batch, as the single-process loss has), the basis is a constant, and the reduced
    features are renormalised. ``variant="official"``: Long-CLIP's code: each process reduces
    its own normalised features (gradient through the SVD) and they are not renormalised;
    ``local_loss`` applies to this variant only (the official code scores its own rows).
    """
    if variant == "official":
        normalised = F.normalize(image_embeds, dim=-1)
        k = min(components, normalised.shape[0], normalised.shape[1])
        reduced = primary_components(normalised, k, basis_gradient=True)
        return info_nce(reduced, short_text_embeds, logit_scale, image_ids, local_loss, label_smoothing,
                        normalise_images=False)
    if variant != "kit":
        raise ValueError(f"variant must be 'kit' or 'official', got {variant!r}")
    all_images = gather_with_grad(F.normalize(image_embeds, dim=-1))
    reduced = primary_components(all_images, min(components, all_images.shape[0], all_images.shape[1]))
    rank, _ = world()
    local = reduced[rank * image_embeds.shape[0] : (rank + 1) * image_embeds.shape[0]]
    return info_nce(local, short_text_embeds, logit_scale, image_ids=image_ids, label_smoothing=label_smoothing)


def slot_overlap(weights: torch.Tensor) -> torch.Tensor:
    """ATRM's slots' overlap, a penalty against their collapse (a kit lever, not FineLIP's):
    ``(b, k, n)`` slot weights over the tokens → the mean cosine between the weight maps of two
    distinct slots, over the batch. 1 when every slot weighs the tokens alike (all slots the
    same refined token), 0 when the slots attend disjoint tokens."""
    k = weights.shape[1]
    if k < 2:
        return weights.new_zeros(())
    unit = F.normalize(weights, dim=-1)
    gram = einsum(unit, unit, "b k n, b j n -> b k j")
    return (reduce(gram, "b k j -> b", "sum") - reduce(torch.diagonal(gram, dim1=1, dim2=2), "b k -> b", "sum")).mean() / (k * (k - 1))

