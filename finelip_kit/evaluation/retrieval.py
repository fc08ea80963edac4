"""Retrieval evaluation: encode a gallery once, score it in every mode, compute recalls.

    result = evaluate_retrieval(model, SyntheticScenes(split="test"), modes=("global", "fine", "fused"))
    result.table        # pandas: mode x direction x R@1/5/10 (+ within-group accuracy and its chance level)
    result.metrics      # {"global/i2t/R@1": 42.0, ...} in percent
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

import torch

from ..model.config import DEFAULT_CHUNK_BYTES
from ..model.finelip import FineLIP
from .gallery import (Gallery, MODES, encode_gallery, model_modes, rerank_scores, score_gallery,
                      within_group_scores)
from .metrics import group_accuracy, group_chance, retrieval_metrics
from .tables import metrics_table


@dataclass
class RetrievalResult:
    metrics: dict[str, float]
    table: Any  # pandas.DataFrame: mode x direction x R@1/5/10, within-group accuracy and its chance level
    protocol: str | None = None  # the evaluation protocol of the data (``Pairs.protocol``; data/protocols.py)
    chance: dict[str, float] | None = None  # within-group accuracy of a random scorer (group_chance), where groups exist

    def __getitem__(self, key: str) -> float:
        return self.metrics[key]


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
    chance = (group_chance(gallery.text_image, gallery.image_groups, gallery.text_groups)
              if gallery.image_groups is not None else None)
    for mode in modes:
        if rerank_k and mode != "global":
            for_i2t, for_t2i = rerank_scores(model, gallery, rerank_k, mode, fuse_weight, chunk_bytes)
            values = gallery_metrics(for_i2t, for_t2i, gallery)
            if gallery.image_groups is not None:  # exact: every in-group pair scored, not only the top k
                in_i2t, in_t2i = within_group_scores(model, gallery, mode, fuse_weight, chunk_bytes)
                exact = group_accuracy(in_i2t, gallery.text_image, gallery.image_groups, gallery.text_groups)
                exact_t2i = group_accuracy(in_t2i, gallery.text_image, gallery.image_groups, gallery.text_groups)
                values["group/i2t"], values["group/t2i"] = exact["group/i2t"], exact_t2i["group/t2i"]
            name = f"{mode}@rerank{rerank_k}"
        else:
            scores = score_gallery(model, gallery, mode, fuse_weight, chunk_bytes)
            values = gallery_metrics(scores, scores, gallery)
            name = mode
        metrics.update({f"{name}/{k}": v for k, v in values.items()})
    table = metrics_table(metrics, by="direction", chance=chance, decimals=2)
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


def gallery_metrics(for_i2t: torch.Tensor, for_t2i: torch.Tensor, gallery: Gallery) -> dict[str, float]:
    """R@k each way (``for_i2t`` ranks captions per image, ``for_t2i`` images per caption) and, where the
    gallery has groups, within-group accuracy."""
    i2t = retrieval_metrics(for_i2t, gallery.text_image)
    t2i = retrieval_metrics(for_t2i, gallery.text_image)
    values = {**{k: v for k, v in i2t.items() if k.startswith("i2t")}, **{k: v for k, v in t2i.items() if k.startswith("t2i")}}
    if gallery.image_groups is not None:
        values["group/i2t"] = group_accuracy(for_i2t, gallery.text_image, gallery.image_groups, gallery.text_groups)["group/i2t"]
        values["group/t2i"] = group_accuracy(for_t2i, gallery.text_image, gallery.image_groups, gallery.text_groups)["group/t2i"]
    return values
