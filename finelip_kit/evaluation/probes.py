"""Probes of what a model reads: the effective-length curve (Long-CLIP's Fig. 2), and the
sentence-level robustness probes DeBias-CLIP and HiMo-CLIP evaluate (``caption_probes``): the
first sentence moved later or dropped, filler sentences prepended, the sentences shuffled, the
first-k-sentences curve, and a prefix-monotonicity score (``himo``)."""

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


def himo(scores: Sequence[Sequence[float]], counts: Sequence[int]) -> tuple[float, int]:
    """HiMo@K, as HiMo-CLIP's evaluation computes it (``eval/text_mono/get_himo.py``): for each
    caption, the Pearson correlation between k and its own image's score with the caption's first
    k sentences, over k = 1 … min(K, its sentences) (``scores[i][k-1]``; ``counts[i]``: the
    caption's number of sentences); a score that does not move with k counts as 0, as there; the
    mean over captions. Captions of one sentence have no curve and are left out (HiMo-CLIP's set
    holds none). Returns (mean, captions scored); (NaN, 0) when none has two sentences.
    +1: every added sentence raises the score in proportion (HiMo-CLIP reports HiMo@5 on its DOCCI
    subset of 5-sentence prefix chains; the kit takes the prefixes from ``data.captions.split_sentences``,
    where HiMo-CLIP's chains were cut by hand, some at semicolons)."""
    import math

    values = []
    for row, count in zip(scores, counts):
        ys = [float(v) for v in list(row)[: min(len(row), int(count))]]
        if len(ys) < 2:
            continue
        xs = list(range(1, len(ys) + 1))
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
        sxx, syy = sum((x - mx) ** 2 for x in xs), sum((y - my) ** 2 for y in ys)
        values.append(sxy / math.sqrt(sxx * syy) if syy > 0 else 0.0)
    if not values:
        return math.nan, 0
    return sum(values) / len(values), len(values)


@torch.no_grad()
def caption_probes(
    model: FineLIP,
    data,
    probes: Sequence[str] = ("move_first", "drop_first", "prepend_filler", "shuffle", "first_k"),
    modes: Sequence[str] | None = None,
    position: int = 2,
    fillers: int = 2,
    max_k: int = 5,
    seed: int = 0,
    batch_size: int = 64,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Retrieval with every caption of ``data`` transformed (``data.captions.probe_caption``; the
    images encoded once), in each of ``modes`` (default: the model's). Metrics:

    - ``probe/move_first/<mode>/<metric>``: the first sentence moved to position ``position``;
    - ``probe/drop_first/...``, ``probe/prepend_filler/...`` (``fillers`` × "This is a photo."),
      ``probe/shuffle/...`` (each caption's sentences shuffled, ``random.Random(seed + caption index)``);
    - ``first_k``: ``prefix/k<k>/<mode>/<metric>`` for k = 1 … ``max_k`` (the first k sentences),
      ``prefix/<mode>/himo@<max_k>`` (``himo`` over those k) and ``prefix/<mode>/himo_captions``
      (how many captions it scored; the others have one sentence).

    ``<metric>``: R@1 each way and, where the data has groups, within-group accuracy."""
    from ..data.captions import PROBES, probe_caption, split_sentences
    from ..model.tokenizer import get_tokenizer
    from .gallery import model_modes

    unknown = [p for p in probes if p not in PROBES]
    if unknown:
        raise ValueError(f"unknown probe(s) {unknown}; probes: {PROBES}")
    modes = tuple(modes) if modes is not None else model_modes(model)
    base = encode_gallery(model, data, batch_size=batch_size, device=device)
    captions = text_captions(data)
    tokenizer = get_tokenizer(context_length=model.context_length)

    def scored(texts: list[str]) -> dict[str, tuple[dict[str, float], torch.Tensor]]:
        encoded = encode_texts(model, texts, tokenizer, model.context_length, batch_size, device)
        gallery = Gallery(base.images, encoded, base.text_image, base.image_groups, base.text_groups)
        out = {}
        for mode in modes:
            scores = score_gallery(model, gallery, mode)
            values = gallery_metrics(scores, scores, gallery)
            own = scores[base.text_image, torch.arange(len(texts))]  # each caption with its own image
            out[mode] = ({k: v for k, v in values.items() if k.endswith("R@1") or "group" in k}, own)
        return out

    metrics: dict[str, float] = {}
    variants = {"move_first": lambda c, i: probe_caption(c, "move_first", position),
                "drop_first": lambda c, i: probe_caption(c, "drop_first"),
                "prepend_filler": lambda c, i: probe_caption(c, "prepend_filler", fillers),
                "shuffle": lambda c, i: probe_caption(c, "shuffle", seed=seed + i)}
    for probe in (p for p in probes if p != "first_k"):
        for mode, (values, _) in scored([variants[probe](c, i) for i, c in enumerate(captions)]).items():
            metrics.update({f"probe/{probe}/{mode}/{k}": v for k, v in values.items()})
    if "first_k" in probes:
        counts = [len(split_sentences(c)) for c in captions]
        own = {mode: [] for mode in modes}
        for k in range(1, max_k + 1):
            for mode, (values, scores) in scored([probe_caption(c, "first_k", k) for c in captions]).items():
                metrics.update({f"prefix/k{k}/{mode}/{name}": v for name, v in values.items()})
                own[mode].append(scores.tolist())
        for mode, columns in own.items():
            rows = [list(r) for r in zip(*columns)]  # (captions, k)
            value, used = himo(rows, counts)
            if used:
                metrics[f"prefix/{mode}/himo@{max_k}"] = value
            metrics[f"prefix/{mode}/himo_captions"] = float(used)
    return metrics


def probes_table(metrics: dict[str, float], plain: dict[str, float] | None = None):
    """``caption_probes``' metrics (and, with ``plain``, the unprobed evaluation's own metrics, the
    ``none`` row) as a table: one row per probe (``move_first``, …, ``first k=1`` … ``first k=K``),
    one column per ``<mode>/<metric>``; HiMo@K per mode in ``table.attrs["himo"]``."""
    import pandas

    rows: dict[str, dict[str, float]] = {}
    if plain:
        wanted = {k.split("/", 2)[2] for k in metrics if k.startswith(("probe/", "prefix/k"))}  # <mode>/<metric>
        rows["none"] = {k: v for k, v in plain.items() if k in wanted}
    for key, value in metrics.items():
        parts = key.split("/")
        if parts[0] == "probe":
            rows.setdefault(parts[1], {})["/".join(parts[2:])] = value
        elif parts[0] == "prefix" and parts[1].startswith("k") and parts[1][1:].isdigit():
            rows.setdefault(f"first k={parts[1][1:]}", {})["/".join(parts[2:])] = value
    table = pandas.DataFrame.from_dict(rows, orient="index")
    table.attrs["himo"] = {key.split("/")[1]: value for key, value in metrics.items()
                           if key.startswith("prefix/") and "/himo@" in key}
    return table
