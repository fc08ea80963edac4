"""Retrieval evaluation: encode a gallery once, score it in every mode, compute recalls.

    result = evaluate_retrieval(model, SyntheticScenes(split="test"), modes=("global", "fine", "fused"))
    result.table        # pandas: mode x direction x R@1/5/10 (+ within-group accuracy)
    result.metrics      # {"global/i2t/R@1": 42.0, ...} in percent

Ranks and ties: a candidate outranks the ground truth when its score is higher, or equal
with a lower index (ties broken by index, deterministically). Image→text counts a hit
when *any* of the image's captions is within the top k (COCO / Flickr convention).
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch
from einops import rearrange

from .clim import DEFAULT_CHUNK_BYTES
from .config import SCORE_MODES
from .model import FineLIP, global_similarity
from .towers import Features

MODES = SCORE_MODES  # the scoring modes, named once in config


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
    table: Any  # pandas.DataFrame: mode x direction x R@1/5/10, within-group accuracy and its chance level
    protocol: str | None = None  # the evaluation protocol of the data (``Pairs.protocol``; data/protocols.py)
    chance: dict[str, float] | None = None  # within-group accuracy of a random scorer (group_chance), where groups exist

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


# ----------------------------------------------------------------------------- encoding and scoring
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

    from .data.transforms import clip_transform
    from .tokenizer import get_tokenizer

    device = torch.device(device) if device is not None else next(model.parameters()).device
    tokenizer = tokenizer or get_tokenizer(context_length=model.context_length)
    transform = transform or clip_transform(model.config.vision)
    captions, text_keys, text_groups, image_rows, image_keys = _index(data)
    image_index = {key: i for i, key in enumerate(image_keys)}
    with eval_mode(model):
        image_parts, text_parts = [], []
        bar = tqdm(total=len(image_rows) + len(captions), desc=f"encoding {len(image_rows)} images + {len(captions)} "
                   f"captions", unit="item", disable=not progress, leave=False)
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
    from .clim import clim_candidate_scores

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


def evaluate_retrieval(
    model: FineLIP,
    data,
    modes: Iterable[str] | None = None,
    fuse_weight: float | None = None,
    rerank_k: int | None = None,
    batch_size: int = 64,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    device: torch.device | str | None = None,
    progress: bool = False,
    gallery: Gallery | None = None,
) -> RetrievalResult:
    """Recall@1/5/10 both ways for each scoring mode, and within-group accuracy where groups exist.

    ``rerank_k``: ``fine`` and ``fused`` become two-stage (global top-k, then CLIM on those) —
    for galleries where the full CLIM matrix costs too much; their within-group accuracy stays
    exact (CLIM on every in-group pair, ``within_group_scores``). ``chunk_bytes``: bytes the
    CLIM scoring may use at once (chunking).
    """
    modes = model_modes(model) if modes is None else tuple(modes)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        raise ValueError(f"modes must be among {MODES}, got {unknown}")
    missing = [m for m in modes if m not in model_modes(model)]
    if missing:
        raise ValueError(f"scoring modes {missing} need CLIM, which this model does not have (use_clim=False); "
                         f"evaluate it with modes=['global'] (--modes global)")
    if rerank_k is not None and (isinstance(rerank_k, bool) or not isinstance(rerank_k, int) or rerank_k < 1):
        raise ValueError(f"rerank_k must be an integer >= 1 (or None for full scoring), got {rerank_k!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    fuse_weight = model.config.fuse_weight if fuse_weight is None else fuse_weight
    if not 0.0 <= fuse_weight <= 1.0:
        raise ValueError(f"fuse_weight must be in [0, 1], got {fuse_weight}")
    gallery = gallery or encode_gallery(model, data, batch_size=batch_size, device=device, progress=progress)
    metrics: dict[str, float] = {}
    rows = []
    chance = (group_chance(gallery.text_image, gallery.image_groups, gallery.text_groups)
              if gallery.image_groups is not None else None)
    for mode in modes:
        if rerank_k and mode != "global":
            for_i2t, for_t2i = rerank_scores(model, gallery, rerank_k, mode, fuse_weight, chunk_bytes)
            values = _metrics_two_ways(for_i2t, for_t2i, gallery)
            if gallery.image_groups is not None:  # exact: every in-group pair scored, not only the top k
                in_i2t, in_t2i = within_group_scores(model, gallery, mode, fuse_weight, chunk_bytes)
                exact = group_accuracy(in_i2t, gallery.text_image, gallery.image_groups, gallery.text_groups)
                exact_t2i = group_accuracy(in_t2i, gallery.text_image, gallery.image_groups, gallery.text_groups)
                values["group/i2t"], values["group/t2i"] = exact["group/i2t"], exact_t2i["group/t2i"]
            name = f"{mode}@rerank{rerank_k}"
        else:
            scores = score_gallery(model, gallery, mode, fuse_weight, chunk_bytes)
            values = _metrics_two_ways(scores, scores, gallery)
            name = mode
        metrics.update({f"{name}/{k}": v for k, v in values.items()})
        for direction in ("i2t", "t2i"):
            row = {"mode": name, "direction": direction, **{k.split("/")[-1]: v for k, v in values.items() if k.startswith(direction)}}
            if f"group/{direction}" in values:
                row["group acc"] = values[f"group/{direction}"]
                row["group chance"] = chance[f"group/{direction}"]
            rows.append(row)
    import pandas

    table = pandas.DataFrame(rows).set_index(["mode", "direction"]).round(2)
    return RetrievalResult(metrics, table, data_protocol(data), chance)


def data_protocol(data) -> str | None:
    """The evaluation protocol ``data`` is (a loaded dataset's ``Pairs.protocol``; ``synthetic:<split>``)."""
    protocol = getattr(data, "protocol", None)
    if protocol is None and hasattr(data, "config") and hasattr(data, "split"):
        return f"synthetic:{data.split}[{len(data)} pairs]"
    return protocol


def clip_benchmark_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """The kit's recalls under CLIP_benchmark's names, so tables merge: ``image_retrieval_recall@k``
    is text→image R@k and ``text_retrieval_recall@k`` image→text R@k, as fractions. The global
    score's under the bare names (CLIP_benchmark scores the global embedding), other modes'
    prefixed (``fused/image_retrieval_recall@1``)."""
    out = {}
    for key, value in metrics.items():
        match = re.fullmatch(r"([\w@]+)/(i2t|t2i)/R@(\d+)", key)
        if match:
            mode, direction, k = match.groups()
            name = f"{'image' if direction == 't2i' else 'text'}_retrieval_recall@{k}"
            out[name if mode == "global" else f"{mode}/{name}"] = value / 100
    return out


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


def _metrics_two_ways(for_i2t: torch.Tensor, for_t2i: torch.Tensor, gallery: Gallery) -> dict[str, float]:
    i2t = retrieval_metrics(for_i2t, gallery.text_image)
    t2i = retrieval_metrics(for_t2i, gallery.text_image)
    values = {**{k: v for k, v in i2t.items() if k.startswith("i2t")}, **{k: v for k, v in t2i.items() if k.startswith("t2i")}}
    if gallery.image_groups is not None:
        values["group/i2t"] = group_accuracy(for_i2t, gallery.text_image, gallery.image_groups, gallery.text_groups)["group/i2t"]
        values["group/t2i"] = group_accuracy(for_t2i, gallery.text_image, gallery.image_groups, gallery.text_groups)["group/t2i"]
    return values


# ----------------------------------------------------------------------------- probes
def effective_length_curve(
    model: FineLIP,
    data,
    lengths: Sequence[int] = (10, 20, 40, 77, 120, 160, 248),
    mode: str = "global",
    batch_size: int = 64,
    device: torch.device | str | None = None,
):
    """R@1 (and within-group accuracy) when captions are cut to each length in tokens, EOT kept
    (Long-CLIP's Fig. 2 probe). Lengths above the model's context are clipped to it. A DataFrame."""
    import pandas

    from .tokenizer import get_tokenizer

    base = encode_gallery(model, data, batch_size=batch_size, device=device)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    captions, *_ = _index(data)
    rows = []
    for length in lengths:
        context = min(int(length), model.context_length)
        tokenizer = get_tokenizer(context_length=context)
        parts = []
        with torch.no_grad(), eval_mode(model):
            for start in range(0, len(captions), batch_size):
                batch = tokenizer(captions[start : start + batch_size])
                parts.append(model.encode_text(batch.input_ids.to(device), batch.attention_mask.to(device)).to("cpu"))
        gallery = Gallery(base.images, Features.cat(parts), base.text_image, base.image_groups, base.text_groups)
        scores = score_gallery(model, gallery, mode)
        values = _metrics_two_ways(scores, scores, gallery)
        rows.append({"length": length, "context": context, **{k: v for k, v in values.items() if k.endswith("R@1") or "group" in k}})
    return pandas.DataFrame(rows).set_index("length").round(2)


def plot_effective_length(curve, title: str = "effective length"):
    """A matplotlib figure of ``effective_length_curve``'s table."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for column in curve.columns:
        if column != "context":
            ax.plot(curve.index, curve[column], marker="o", label=column)
    ax.axvline(77, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("caption tokens kept")
    ax.set_ylabel("percent")
    ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


@torch.no_grad()
def evaluate_zeroshot(
    model: FineLIP,
    images,
    labels: Sequence[int],
    classnames: Sequence[str],
    templates: Sequence[str] = ("a photo of a {}.",),
    batch_size: int = 64,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Zero-shot classification accuracy (top-1 / top-5, percent): each class is the mean of its
    normalised template embeddings; images are PIL images or preprocessed tensors."""
    import torch.nn.functional as F

    from .data.transforms import clip_transform
    from .tokenizer import get_tokenizer

    if len(images) != len(labels):
        raise ValueError(f"got {len(images)} images but {len(labels)} labels")
    bad = [label for label in labels if not 0 <= int(label) < len(classnames)]
    if bad:
        raise ValueError(f"labels must index classnames (0..{len(classnames) - 1}); got {bad[:5]}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    tokenizer = get_tokenizer(context_length=model.context_length)
    transform = clip_transform(model.config.vision)
    with eval_mode(model):
        classes = []
        for name in classnames:
            batch = tokenizer([template.format(name, c=name) for template in templates])  # "{}" or CLIP_benchmark's "{c}"
            embeds = F.normalize(model.encode_text(batch.input_ids.to(device), batch.attention_mask.to(device), fine=False).global_, dim=-1)
            classes.append(F.normalize(embeds.mean(0), dim=-1))
        classifier = torch.stack(classes)  # (classes, d)
        logits = []
        for start in range(0, len(images), batch_size):
            chunk = images[start : start + batch_size]
            pixels = torch.stack([image if isinstance(image, torch.Tensor) else transform(image) for image in chunk]).to(device)
            logits.append(F.normalize(model.encode_image(pixels, fine=False).global_, dim=-1) @ classifier.T)
    logits = torch.cat(logits).cpu()
    targets = torch.as_tensor([int(label) for label in labels])
    top = logits.topk(min(5, len(classnames)), dim=1).indices
    return {"top1": 100.0 * (top[:, 0] == targets).float().mean().item(),
            "top5": 100.0 * (top == targets[:, None]).any(1).float().mean().item()}


# ----------------------------------------------------------------------------- the paper's layout
PUBLISHED = [
    # model, backbone, protocol (data/protocols.py), I2T R@1, T2I R@1, source (see shared/PUBLISHED_RESULTS.md).
    # Urban1k, DOCCI and ShareGPT4V-1k numbers come from Long-CLIP's evaluation code and those that copy
    # it; Long-CLIP's COCO 5k numbers from its coco.py: val2017, the first 5 captions of each image.
    ("Long-CLIP", "B/16", "urban1k", 78.9, 79.5, "HiMo-CLIP paper, Table 1"),
    ("Long-CLIP", "B/16", "docci", 63.2, 71.5, "HiMo-CLIP paper, Table 1"),
    ("Long-CLIP", "L/14", "urban1k", 82.7, 86.1, "HiMo-CLIP paper, Table 1"),
    ("Long-CLIP", "L/14", "docci", 66.5, 78.6, "HiMo-CLIP paper, Table 1"),
    ("TULIP", "B/16", "urban1k", 88.1, 86.6, "quoted in FineLIP (secondary)"),
    ("LAPS", "B/16", "urban1k", 89.0, 88.4, "quoted in FineLIP (secondary)"),
    ("FineLIP", "B/16", "urban1k", 90.7, 89.3, "FineLIP Table 1 as quoted by two secondary sources"),
    ("FineLIP*", "B/16", "urban1k", 91.2, 90.0, "secondary"),
    ("FineLIP", "L/14", "urban1k", 93.2, 93.0, "quoted by HyFL-CLIP from the original paper"),
    ("FineLIP", "L/14", "docci", 82.2, 83.1, "quoted by HyFL-CLIP from the original paper"),
    ("CLIP", "B/16", "coco-val2017-first5", 51.8, 32.7, "Long-CLIP paper"),
    ("Long-CLIP", "B/16", "coco-val2017-first5", 57.6, 40.4, "Long-CLIP paper"),
    ("CLIP", "L/14", "coco-val2017-first5", 56.1, 35.4, "Long-CLIP paper"),
    ("Long-CLIP", "L/14", "coco-val2017-first5", 62.8, 46.3, "Long-CLIP paper"),
    ("CLIP", "B/16", "sharegpt4v-1k", 78.2, 79.6, "Long-CLIP paper"),
    ("Long-CLIP", "B/16", "sharegpt4v-1k", 94.6, 93.3, "Long-CLIP paper"),
]


def published_table(protocol: str | None = None):
    """The literature's R@1 numbers with the protocol each was measured under and their sources;
    ``protocol``: only those of one protocol, or of every protocol of one dataset (``"coco"``)."""
    import pandas

    from .data.protocols import PROTOCOLS

    rows = [dict(model=m, backbone=b, protocol=p, **{"I2T R@1": i, "T2I R@1": t}, source=s) for m, b, p, i, t, s in PUBLISHED]
    table = pandas.DataFrame(rows)
    if protocol is None:
        return table
    wanted = protocol.lower()
    keep = [p == wanted or PROTOCOLS[p].dataset == wanted for p in table.protocol]
    return table[keep].reset_index(drop=True)


def paper_table(results: dict[str, RetrievalResult | dict[str, float]], mode: str = "global", name: str = "this run"):
    """Rows in the FineLIP / Long-CLIP layout: one row per model, columns protocol × I2T/T2I × R@1/R@5.

    ``results``: label → a ``RetrievalResult`` or a metrics dict. A label that is a protocol
    name (``urban1k``, ``coco-val2017-first5``, ...) names the column; otherwise the result's
    own ``protocol`` does. The published numbers (R@1) of the same datasets are stacked beside,
    each in the column of the protocol it was measured under: a published number sits in the
    same column as this run's only when the protocols are the same."""
    import pandas

    from .data.protocols import PROTOCOLS

    row: dict[tuple[str, str, str], float] = {}
    datasets = set()
    for label, result in results.items():
        metrics = result.metrics if isinstance(result, RetrievalResult) else result
        own = result.protocol if isinstance(result, RetrievalResult) else None
        protocol = label.lower() if label.lower() in PROTOCOLS else own or label
        if own in PROTOCOLS and protocol != own:
            raise ValueError(f"paper_table: the result labelled {label!r} was measured under protocol {own!r}; "
                             f"label it {own!r} (or by any name that is not another protocol)")
        datasets.add(PROTOCOLS[protocol].dataset if protocol in PROTOCOLS else protocol.split(":")[0].split("[")[0])
        for direction, column in (("i2t", "I2T"), ("t2i", "T2I")):
            for k in ("R@1", "R@5"):
                key = f"{mode}/{direction}/{k}"
                if key in metrics:
                    row[(protocol, column, k)] = round(metrics[key], 1)
    ours = pandas.DataFrame([row], index=[name])
    published = [(f"{model} {backbone} ({source})", {(protocol, "I2T", "R@1"): i2t, (protocol, "T2I", "R@1"): t2i})
                 for model, backbone, protocol, i2t, t2i, source in PUBLISHED if PROTOCOLS[protocol].dataset in datasets]
    others = pandas.DataFrame([values for _, values in published], index=[label for label, _ in published])
    table = pandas.concat([ours, others]) if published else ours
    table.columns = pandas.MultiIndex.from_tuples(table.columns, names=["protocol", "direction", "metric"])
    return table.sort_index(axis=1)
