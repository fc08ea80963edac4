"""Probes of what a model reads: the effective-length curve (Long-CLIP's Fig. 2)."""

from __future__ import annotations

from typing import Sequence

import torch

from ..model.finelip import FineLIP
from .gallery import Gallery, encode_gallery, encode_texts, score_gallery, text_captions
from .retrieval import gallery_metrics


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

    from ..model.tokenizer import get_tokenizer

    base = encode_gallery(model, data, batch_size=batch_size, device=device)
    captions = text_captions(data)
    tokenizer = get_tokenizer(context_length=model.context_length)
    rows = []
    for length in lengths:
        context = min(int(length), model.context_length)
        texts = encode_texts(model, captions, tokenizer, context, batch_size, device)
        gallery = Gallery(base.images, texts, base.text_image, base.image_groups, base.text_groups)
        scores = score_gallery(model, gallery, mode)
        values = gallery_metrics(scores, scores, gallery)
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
