"""A gallery encoded once and scored in every mode: ``global`` (cosine of the global embeddings),
``fine`` (CLIM over the refined tokens), ``fused``; two-stage re-ranking (global top-k, then CLIM) and
the in-group scores within-group accuracy reads, for galleries too large for the full CLIM matrix."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from einops import rearrange

from ..model.config import DEFAULT_CHUNK_BYTES, SCORE_MODES
from ..model.finelip import FineLIP, global_similarity
from ..model.towers import Features

MODES = SCORE_MODES  # the scoring modes, named once in the model's config


@dataclass
class Gallery:
    """A dataset encoded once: one entry per distinct image, one per caption."""

    images: Features  # (n_images, ...)
    texts: Features  # (n_texts, ...)
    text_image: torch.Tensor  # (n_texts,) index of each caption's image
    image_groups: torch.Tensor | None = None  # (n_images,) hard-negative group, when declared
    text_groups: torch.Tensor | None = None


@contextmanager
def eval_mode(model: torch.nn.Module):
    """``model`` in ``eval()`` inside the block, and back in the mode it had after it (even
    on an error): every evaluation helper leaves a model in training as it found it."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@torch.no_grad()
def encode_gallery(
    model: FineLIP,
    data,
    tokenizer=None,
    transform=None,
    batch_size: int = 64,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> Gallery:
    """Encode every distinct image and every caption of ``data`` once.

    ``data``: records with ``image``, ``caption``, ``image_id`` (and optionally ``group``):
    ``SyntheticScenes``, ``Pairs`` from ``load_pairs``, or a list of dicts.
    """
    from tqdm.auto import tqdm

    from ..data.transforms import clip_transform
    from ..model.tokenizer import get_tokenizer

    device = torch.device(device) if device is not None else next(model.parameters()).device
    tokenizer = tokenizer or get_tokenizer(context_length=model.context_length)
    transform = transform or clip_transform(model.config.vision)
    captions, text_keys, text_groups, image_rows, image_keys = _index(data)
    image_index = {key: i for i, key in enumerate(image_keys)}
    with eval_mode(model):
        image_parts = []
        bar = tqdm(total=len(image_rows) + len(captions), desc=f"encoding {len(image_rows)} images + {len(captions)} "
                   f"captions", unit="item", disable=not progress, leave=False)
        for start in range(0, len(image_rows), batch_size):
            rows = image_rows[start : start + batch_size]
            images = torch.stack([transform(data[r]["image"]) for r in rows]).to(device)
            image_parts.append(model.encode_image(images).to("cpu"))
            bar.update(len(rows))
        texts = encode_texts(model, captions, tokenizer, model.context_length, batch_size, device, on_batch=bar.update)
        bar.close()
    text_image = torch.tensor([image_index[k] for k in text_keys])
    groups = None
    if text_groups is not None:
        text_groups_t = torch.tensor(text_groups)
        image_groups = torch.empty(len(image_keys), dtype=torch.long)
        image_groups[text_image] = text_groups_t
        groups = (image_groups, text_groups_t)
    return Gallery(Features.cat(image_parts), texts, text_image, *(groups or (None, None)))


@torch.no_grad()
def encode_texts(model: FineLIP, captions: list[str], tokenizer, context_length: int, batch_size: int = 64,
                 device: torch.device | str | None = None, on_batch=None) -> Features:
    """``captions`` encoded in batches at ``context_length`` tokens (cut there, EOT kept), on the CPU;
    ``on_batch(n)`` is told each batch's size (a progress bar)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    parts = []
    with eval_mode(model):
        for start in range(0, len(captions), batch_size):
            batch = tokenizer(captions[start : start + batch_size], context_length=context_length)
            parts.append(model.encode_text(batch.input_ids.to(device), batch.attention_mask.to(device)).to("cpu"))
            if on_batch is not None:
                on_batch(len(batch.input_ids))
    return Features.cat(parts)


def _index(data) -> tuple[list[str], list[Any], list[int] | None, list[int], list[Any]]:
    """(captions, each caption's image key, groups or None, record index of each distinct image, image keys)."""
    hf = getattr(data, "hf", None)
    if hf is not None:  # Pairs: read the columns without opening every image
        captions, keys = list(hf["caption"]), list(hf["image_id"])
        groups = list(hf["group"]) if "group" in hf.column_names else None
    else:
        records = [_text_fields(data[i]) for i in range(len(data))]
        captions = [r[0] for r in records]
        keys = [r[1] for r in records]
        groups = [r[2] for r in records] if all(r[2] is not None for r in records) else None
    first: dict[Any, int] = {}
    for row, key in enumerate(keys):
        first.setdefault(key, row)
    return captions, keys, groups, list(first.values()), list(first.keys())


def text_captions(data) -> list[str]:
    """Every caption of ``data``, in order (one per text of its gallery)."""
    return _index(data)[0]


def _text_fields(record: dict[str, Any]) -> tuple[str, Any, int | None]:
    return record["caption"], record["image_id"], record.get("group")


def score_gallery(
    model: FineLIP, gallery: Gallery, mode: str, fuse_weight: float | None = None, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> torch.Tensor:
    """``(n_images, n_texts)`` scores of ``gallery`` in ``mode`` (``global``, ``fine``, ``fused``); ``fuse_weight``:
    the fused score's CLIM weight (None: the model's own ``fuse_weight``)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "global":
        return check_finite(global_similarity(gallery.images.global_, gallery.texts.global_), mode)
    return check_finite(model.similarity(gallery.images, gallery.texts, mode=mode, fuse_weight=fuse_weight,
                                         chunk_bytes=chunk_bytes), mode)


def rerank_scores(
    model: FineLIP, gallery: Gallery, k: int, mode: str = "fine", fuse_weight: float | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Two-stage scoring: global top-``k`` candidates, then CLIM (``fine``) or ``fused`` re-ranking
    (``fuse_weight`` None: the model's own).

    Returns ``(for_i2t, for_t2i)``, two ``(n_images, n_texts)`` matrices: in each direction a
    query's ``k`` candidates carry their re-ranked score and every other entry its global score
    minus a large offset, so candidates come first and the rest keep their global order.
    """
    if mode not in ("fine", "fused"):
        raise ValueError(f"re-ranking applies to 'fine' or 'fused', got {mode!r}")
    fuse_weight = model.config.fuse_weight if fuse_weight is None else fuse_weight
    coarse = check_finite(global_similarity(gallery.images.global_, gallery.texts.global_), "global")
    offset = 1e4
    results = []
    for by, scores in (("image", coarse), ("text", coarse.T)):  # rows are the queries
        top = scores.topk(min(k, scores.shape[1]), dim=1).indices
        out = scores - offset
        out[_rows(top), top] = _candidate_scores(model, gallery, by, scores, top, mode, fuse_weight, chunk_bytes)
        results.append(out if by == "image" else out.T)
    return results[0], results[1]


def _rows(candidates: torch.Tensor) -> torch.Tensor:
    return torch.arange(candidates.shape[0]).unsqueeze(1).expand_as(candidates)


def _candidate_scores(model: FineLIP, gallery: Gallery, by: str, coarse: torch.Tensor, candidates: torch.Tensor,
                      mode: str, fuse_weight: float, chunk_bytes: int) -> torch.Tensor:
    """``(n_queries, k)`` ``fine`` or ``fused`` scores of each query's candidates; ``coarse`` holds
    the global scores with the queries as rows."""
    from ..math.clim import clim_candidate_scores

    images, texts = gallery.images, gallery.texts
    image_mask = None if bool(images.mask.all()) else images.mask
    text_mask = None if bool(texts.mask.all()) else texts.mask
    fine = check_finite(clim_candidate_scores(images.tokens, texts.tokens, candidates, by, text_mask, image_mask,
                                              model.config.clim_slope, chunk_bytes), "fine")
    return fine if mode == "fine" else (1 - fuse_weight) * coarse[_rows(candidates), candidates] + fuse_weight * fine


def group_members(query_groups: torch.Tensor, pool_groups: torch.Tensor) -> torch.Tensor:
    """``(n_queries, m)`` indices into the pool of each query's group members, ``m`` the largest
    group; shorter rows repeat their first member (scoring a candidate twice changes nothing)."""
    same = rearrange(query_groups, "q -> q 1") == rearrange(pool_groups, "p -> 1 p")
    counts = same.sum(1)
    if bool((counts == 0).any()):
        missing = query_groups[counts == 0][0].item()
        raise ValueError(f"group {missing} has queries but no candidates in the gallery; every group needs both sides")
    # Members first (stable sort keeps pool order), then padded with the first member.
    order = torch.argsort((~same).to(torch.int8), dim=1, stable=True)[:, : int(counts.max())]
    slot = torch.arange(order.shape[1]).unsqueeze(0)
    return torch.where(slot < counts.unsqueeze(1), order, order[:, :1])


def within_group_scores(
    model: FineLIP, gallery: Gallery, mode: str = "fine", fuse_weight: float | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``mode`` scores of every in-group pair only — what within-group accuracy reads — as
    ``(for_i2t, for_t2i)`` ``(n_images, n_texts)`` matrices, ``-inf`` outside the groups.

    Costs ``n · group size`` CLIM pairs instead of ``n²``: exact within-group accuracy for
    galleries too large for the full CLIM matrix (``evaluate_retrieval(..., rerank_k=...)``)."""
    if gallery.image_groups is None:
        raise ValueError("the gallery declares no groups; within-group scores need data with a 'group' field")
    if mode not in ("fine", "fused"):
        raise ValueError(f"within_group_scores applies to 'fine' or 'fused', got {mode!r}")
    fuse_weight = model.config.fuse_weight if fuse_weight is None else fuse_weight
    coarse = check_finite(global_similarity(gallery.images.global_, gallery.texts.global_), "global")
    results = []
    for by, scores, queries, pool in (("image", coarse, gallery.image_groups, gallery.text_groups),
                                      ("text", coarse.T, gallery.text_groups, gallery.image_groups)):
        members = group_members(queries, pool)
        out = torch.full_like(scores, float("-inf"))
        out[_rows(members), members] = _candidate_scores(model, gallery, by, scores, members, mode, fuse_weight, chunk_bytes)
        results.append(out if by == "image" else out.T)
    return results[0], results[1]


def model_modes(model: FineLIP) -> tuple[str, ...]:
    """The scoring modes ``model`` can compute: ``fine`` and ``fused`` need CLIM."""
    return MODES if model.config.use_clim else ("global",)


def check_finite(scores: torch.Tensor, mode: str) -> torch.Tensor:
    """``scores`` unchanged, or a FloatingPointError naming the mode and how many were not finite
    (a NaN compares false with everything and would rank first: a perfect, false recall)."""
    bad = int((~torch.isfinite(scores)).sum())
    if bad:
        raise FloatingPointError(
            f"{bad} of {scores.numel()} {mode} scores are not finite (NaN or inf): the model's features are broken "
            f"(diverged training or corrupt weights); no recall is reported from them"
        )
    return scores
