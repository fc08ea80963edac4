"""Diagnostics of the fine-grained path: does ATRM use its K slots, how far can one differing
object move a score, and what the fine loss does to the towers while training.

    from finelip_kit.diagnose import slot_statistics, group_margins, loss_diagnostics
    slot_statistics(model, SyntheticScenes(split="val", size=256))     # entropy, similarity, effective slots
    group_margins(model, SyntheticScenes(split="val", size=1000))      # within-group margin per scoring mode
    loss_diagnostics(model, batch)                                     # gradient shares, hinge active fraction

Every function is pure with respect to the model (no update, training mode restored).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from einops import einsum, rearrange, reduce

from .gallery import encode_gallery, eval_mode, group_members
from ..model.finelip import FineLIP, global_similarity


# ----------------------------------------------------------------------------- pure statistics
def weight_entropy(weights: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``(b, k, n)`` slot weights (each row sums to 1 over the valid tokens) → ``(b, k)``
    entropy normalised by log(valid tokens): 1 = uniform over the tokens, 0 = one token."""
    valid = weights.shape[-1] if mask is None else rearrange(mask.sum(-1).clamp(min=2), "b -> b 1")
    entropy = -(weights * weights.clamp(min=1e-12).log()).sum(-1)
    return entropy / torch.as_tensor(valid, dtype=weights.dtype).log()


def slot_similarity(refined: torch.Tensor) -> torch.Tensor:
    """``(b, k, d)`` refined tokens → ``(b,)`` mean cosine similarity between distinct slots."""
    unit = F.normalize(refined, dim=-1)
    cosine = einsum(unit, unit, "b k d, b j d -> b k j")
    k = refined.shape[1]
    if k < 2:
        return torch.ones(refined.shape[0])
    return (reduce(cosine, "b k j -> b", "sum") - k) / (k * (k - 1))


def token_similarity(tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``(b, n, d)`` local tokens (``mask`` ``(b, n)``: valid ones) → ``(b,)`` mean cosine between
    distinct valid tokens: how alike the tokens ATRM chooses from are to begin with."""
    unit = F.normalize(tokens, dim=-1)
    valid = torch.ones(tokens.shape[:2], dtype=torch.bool) if mask is None else mask
    unit = unit * rearrange(valid, "b n -> b n 1")
    total = reduce(einsum(unit, unit, "b n d, b m d -> b n m"), "b n m -> b", "sum")
    count = valid.sum(-1).to(tokens.dtype)
    return (total - count) / (count * (count - 1)).clamp(min=1)


def effective_slots(refined: torch.Tensor) -> torch.Tensor:
    """``(b, k, d)`` → ``(b,)`` participation ratio of the slots' singular values,
    ``(Σσ²)² / Σσ⁴``: K when the K slots are orthogonal and equally strong, 1 when they collapse
    onto one direction."""
    sigma = torch.linalg.svdvals(F.normalize(refined, dim=-1).double())
    power = sigma**2
    return (power.sum(-1) ** 2 / (power**2).sum(-1).clamp(min=1e-24)).float()


# ----------------------------------------------------------------------------- on a model
@torch.no_grad()
def slot_statistics(model: FineLIP, scenes, batch_size: int = 64) -> dict[str, float]:
    """Slot diversity of ATRM, per modality, over ``scenes`` (mean over samples): weight entropy
    (normalised), mean cosine between slots, effective slots (of K), and for images how many
    slots peak on a drawn object (vs the cells objects cover) and how many objects have a slot
    peaking on them (``objects_found``; needs ``scenes.objects``)."""
    if model.image_atrm is None:
        raise ValueError("slot statistics need ATRM (use_atrm=True); this model has none")
    gallery = encode_gallery(model, scenes, batch_size=batch_size)
    out: dict[str, float] = {"k_image": float(model.config.atrm_k), "k_text": float(model.config.text_k)}
    for name, features in (("image", gallery.images), ("text", gallery.texts)):
        weights, refined = features.slot_weights, features.tokens[:, 1:]  # the global token first
        # padding tokens get exactly zero weight in every slot (masked softmax): the valid ones are the rest
        local_mask = weights.sum(1) > 0 if name == "text" else None
        out[f"{name}/entropy"] = float(weight_entropy(weights, local_mask).mean())
        out[f"{name}/token_cosine"] = float(token_similarity(*_local_tokens(model, scenes, name, batch_size)).mean())
        out[f"{name}/slot_cosine"] = float(slot_similarity(refined).mean())
        out[f"{name}/effective_slots"] = float(effective_slots(refined).mean())
    if hasattr(scenes, "objects"):
        out.update(_slot_localisation(model, scenes, gallery.images.slot_weights))
    return out


@torch.no_grad()
def _local_tokens(model: FineLIP, scenes, modality: str, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The towers' own local tokens (before ATRM) of the first ``batch_size`` samples, with their mask."""
    from ..data.transforms import clip_transform
    from ..model.tokenizer import get_tokenizer

    records = [scenes[i] for i in range(min(batch_size, len(scenes)))]
    device = next(model.parameters()).device
    with eval_mode(model):
        if modality == "image":
            transform = clip_transform(model.config.vision)
            raw = model.encode_image(torch.stack([transform(r["image"]) for r in records]).to(device), fine=False)
            return raw.tokens.cpu(), raw.mask.cpu()
        batch = get_tokenizer(context_length=model.context_length)([r["caption"] for r in records])
        raw = model.encode_text(batch.input_ids.to(device), batch.attention_mask.to(device), fine=False)
        return raw.tokens.cpu(), raw.mask.cpu()


def _slot_localisation(model: FineLIP, scenes, weights: torch.Tensor) -> dict[str, float]:
    gh, gw = model.vision.grid_size
    grid = scenes.config.grid_size
    on_object = found = objects = 0
    covered = 0.0
    n = min(len(scenes), weights.shape[0])
    for index in range(n):
        cells = {(o.row, o.col) for o in scenes.objects(index)}
        peaks = weights[index].argmax(-1).tolist()  # a patch per slot
        peak_cells = {(p // gw * grid // gh, p % gw * grid // gw) for p in peaks}
        on_object += sum((p // gw * grid // gh, p % gw * grid // gw) in cells for p in peaks)
        found += len(cells & peak_cells)
        objects += len(cells)
        covered += len(cells) / grid**2
    k = weights.shape[1]
    return {"image/slots_on_objects": 100.0 * on_object / (n * k), "image/slots_on_objects_chance": 100.0 * covered / n,
            "image/objects_found": 100.0 * found / objects}


@torch.no_grad()
def group_margins(model: FineLIP, scenes, batch_size: int = 64) -> dict[str, float]:
    """For every caption of a hard group: its image's score minus the best other member's,
    per scoring mode, in raw units and in units of the score spread over the whole gallery
    (the std of all image × text scores): how far one differing object moves each score."""
    gallery = encode_gallery(model, scenes, batch_size=batch_size)
    if gallery.image_groups is None:
        raise ValueError("group margins need data with hard-negative groups (SyntheticScenes)")
    members = group_members(gallery.text_groups, gallery.image_groups)  # (texts, group size) image indices
    modes = ["global"] + (["fine", "fused"] if model.config.use_clim else [])
    out: dict[str, float] = {}
    for mode in modes:
        scores = global_similarity(gallery.images.global_, gallery.texts.global_) if mode == "global" else \
            model.similarity(gallery.images, gallery.texts, mode=mode)  # (images, texts)
        by_text = scores.T  # (texts, images)
        candidate = torch.gather(by_text, 1, members)
        truth = by_text[torch.arange(by_text.shape[0]), gallery.text_image]
        others = candidate.masked_fill(members == gallery.text_image[:, None], -math.inf).max(1).values
        margin = truth - others
        spread = scores.std()
        out[f"{mode}/margin"] = float(margin.mean())
        out[f"{mode}/margin_in_spread"] = float(margin.mean() / spread)
        out[f"{mode}/spread"] = float(spread)
        out[f"{mode}/correct"] = 100.0 * float((margin > 0).float().mean())
    return out


def loss_diagnostics(model: FineLIP, batch: dict[str, Any], negatives: str | None = None) -> dict[str, float]:
    """On one batch (``Collate``'s output): each loss term's gradient norm on the pretrained
    towers and on the new modules (ATRM, temperature, new position rows), the fine term's
    share of the towers' gradient, and the fraction of the triplet's hinges that are active
    (margin violated) in each direction."""
    new = {id(p) for p in model.new_parameters()}
    params = [p for p in model.parameters() if p.requires_grad]
    with eval_mode(model):  # deterministic features; the towers have no dropout either way
        image = model.encode_image(batch["images"])
        text = model.encode_text(batch["input_ids"], batch["attention_mask"])
        terms = model.loss_terms(image, text, batch.get("image_ids"), negatives=negatives)
        out: dict[str, float] = {}
        for name in ("global", "fine"):
            if name not in terms:
                continue
            grads = torch.autograd.grad(terms[name], params, retain_graph=True, allow_unused=True)
            towers = math.sqrt(sum(float(g.pow(2).sum()) for p, g in zip(params, grads) if g is not None and id(p) not in new))
            fresh = math.sqrt(sum(float(g.pow(2).sum()) for p, g in zip(params, grads) if g is not None and id(p) in new))
            out[f"{name}/grad_towers"], out[f"{name}/grad_new"] = towers, fresh
        if "fine" in terms and "global" in terms:
            weight = model.config.fine_weight
            fine, glob = weight * out["fine/grad_towers"], model.config.global_weight * out["global/grad_towers"]
            out["fine/tower_share"] = fine / max(fine + glob, 1e-30)
        if model.config.use_clim:
            with torch.no_grad():
                scores = model.similarity(image, text, mode="fine")
                diagonal = torch.diagonal(scores)
                off = ~torch.eye(scores.shape[0], dtype=torch.bool)
                margin = model.config.margin
                out["hinge/i2t_active"] = 100.0 * float(((margin + scores - diagonal[:, None]) > 0)[off].float().mean())
                out["hinge/t2i_active"] = 100.0 * float(((margin + scores - diagonal[None, :]) > 0)[off].float().mean())
    return out
