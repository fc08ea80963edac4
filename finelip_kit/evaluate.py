"""Retrieval evaluation: encode a gallery once, score it in every mode, compute recalls.

    result = evaluate_retrieval(model, SyntheticScenes(split="test"), modes=("global", "fine", "fused"))
    result.table        # pandas: mode x direction x R@1/5/10 (+ within-group accuracy)
    result.metrics      # {"global/i2t/R@1": 42.0, ...} in percent

Ranks and ties: a candidate outranks the ground truth when its score is higher, or equal
with a lower index (ties broken by index, deterministically). Image→text counts a hit
when *any* of the image's captions is within the top k (COCO / Flickr convention).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch
from einops import rearrange

from .clim import DEFAULT_CHUNK_BYTES
from .model import FineLIP, global_similarity
from .towers import Features

MODES = ("global", "fine", "fused")


@dataclass
class Gallery:
    """A dataset encoded once: one entry per distinct image, one per caption."""

    images: Features  # (n_images, ...)
    texts: Features  # (n_texts, ...)
    text_image: torch.Tensor  # (n_texts,) index of each caption's image
    image_groups: torch.Tensor | None = None  # (n_images,) hard-negative group, when declared
    text_groups: torch.Tensor | None = None


@dataclass
class RetrievalResult:
    metrics: dict[str, float]
    table: Any  # pandas.DataFrame when pandas is installed, else the rows as a list

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]


# ----------------------------------------------------------------------------- metrics (pure)
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


# ----------------------------------------------------------------------------- encoding and scoring
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

    from .data.transforms import clip_transform
    from .tokenizer import get_tokenizer

    device = torch.device(device) if device is not None else next(model.parameters()).device
    tokenizer = tokenizer or get_tokenizer(context_length=model.context_length)
    transform = transform or clip_transform(model.config.vision)
    captions, text_keys, text_groups, image_rows, image_keys = _index(data)
    image_index = {key: i for i, key in enumerate(image_keys)}
    was_training = model.training
    model.eval()
    try:
        image_parts, text_parts = [], []
        bar = tqdm(total=len(image_rows) + len(captions), desc="encoding", disable=not progress, leave=False)
        for start in range(0, len(image_rows), batch_size):
            rows = image_rows[start : start + batch_size]
            images = torch.stack([transform(data[r]["image"]) for r in rows]).to(device)
            image_parts.append(model.encode_image(images).to("cpu"))
            bar.update(len(rows))
        for start in range(0, len(captions), batch_size):
            batch = tokenizer(captions[start : start + batch_size], context_length=model.context_length)
            text_parts.append(model.encode_text(batch.input_ids.to(device), batch.attention_mask.to(device)).to("cpu"))
            bar.update(len(batch.input_ids))
        bar.close()
    finally:
        model.train(was_training)
    text_image = torch.tensor([image_index[k] for k in text_keys])
    groups = None
    if text_groups is not None:
        text_groups_t = torch.tensor(text_groups)
        image_groups = torch.empty(len(image_keys), dtype=torch.long)
        image_groups[text_image] = text_groups_t
        groups = (image_groups, text_groups_t)
    return Gallery(Features.cat(image_parts), Features.cat(text_parts), text_image, *(groups or (None, None)))


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


def _text_fields(record: dict[str, Any]) -> tuple[str, Any, int | None]:
    return record["caption"], record["image_id"], record.get("group")


def score_gallery(
    model: FineLIP, gallery: Gallery, mode: str, fuse_weight: float = 0.2, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> torch.Tensor:
    """``(n_images, n_texts)`` scores of ``gallery`` in ``mode`` (``global``, ``fine``, ``fused``)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "global":
        return global_similarity(gallery.images.global_, gallery.texts.global_)
    return model.similarity(gallery.images, gallery.texts, mode=mode, fuse_weight=fuse_weight, chunk_bytes=chunk_bytes)


def evaluate_retrieval(
    model: FineLIP,
    data,
    modes: Iterable[str] = MODES,
    fuse_weight: float = 0.2,
    batch_size: int = 64,
    memory_budget: int = DEFAULT_CHUNK_BYTES,
    device: torch.device | str | None = None,
    progress: bool = False,
    gallery: Gallery | None = None,
) -> RetrievalResult:
    """Recall@1/5/10 both ways for each scoring mode, and within-group accuracy where groups exist."""
    modes = tuple(modes)
    if not model.config.use_clim:
        modes = tuple(m for m in modes if m == "global") or ("global",)
    gallery = gallery or encode_gallery(model, data, batch_size=batch_size, device=device, progress=progress)
    metrics: dict[str, float] = {}
    rows = []
    for mode in modes:
        scores = score_gallery(model, gallery, mode, fuse_weight, memory_budget)
        values = retrieval_metrics(scores, gallery.text_image)
        if gallery.image_groups is not None:
            values.update(group_accuracy(scores, gallery.text_image, gallery.image_groups, gallery.text_groups))
        metrics.update({f"{mode}/{k}": v for k, v in values.items()})
        for direction in ("i2t", "t2i"):
            row = {"mode": mode, "direction": direction, **{k.split("/")[-1]: v for k, v in values.items() if k.startswith(direction)}}
            if f"group/{direction}" in values:
                row["group acc"] = values[f"group/{direction}"]
            rows.append(row)
    try:
        import pandas

        table = pandas.DataFrame(rows).set_index(["mode", "direction"]).round(2)
    except ImportError:
        table = rows
    return RetrievalResult(metrics, table)
