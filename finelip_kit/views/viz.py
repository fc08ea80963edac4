"""Look inside a FineLIP model: which words match which image regions, what ATRM's slots gather.

``alignment_maps(model, image, caption)`` computes everything once (one forward pass per
tower); the plot helpers draw from it and return matplotlib figures (``path=`` saves PNG/PDF);
``AlignmentExplorer`` is the interactive view; ``pointing_game`` measures how often a phrase's
heatmap peaks on the object it names.

Two views of a word's heatmap:

``raw``      cosine between the word's projected text token(s) and every projected patch
             token, before ATRM (a word of several BPE pieces: the mean over its pieces).
``refined``  through ATRM's image slots: ``Σ_k relu(cos(word, slot_k)) · weight_k(patch)`` —
             the patches that the slots resembling the word gather.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import einsum, rearrange, reduce

from ..evaluation import eval_mode

VIEWS = ("raw", "refined")


@dataclass
class AlignmentMaps:
    """Token-level alignment of one image and one caption (tensors on the CPU, float32).

    ``word_patch``   ``(words, gh, gw)`` raw word-to-patch cosines
    ``image_slots``  ``(k, gh, gw)`` ATRM image-slot weights over patches (None without ATRM)
    ``text_slots``   ``(kt, words)`` ATRM text-slot weights over words, pieces summed (None without ATRM)
    ``word_slot``    ``(words, k)`` cosine of each word with each refined image token
    ``clim``         ``(k, kt)`` cosines between refined image and refined text tokens (CLIM's matrix)
    """

    image: np.ndarray  # (h, w, 3) uint8, the image as the model saw it (resized / cropped)
    caption: str
    words: list[str]
    truncated_words: int  # words past the model's context, not shown
    word_patch: torch.Tensor
    image_slots: torch.Tensor | None
    text_slots: torch.Tensor | None
    word_slot: torch.Tensor | None
    clim: torch.Tensor | None

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.word_patch.shape[1:])

    def word_indices(self, words: str | int | Sequence[str | int]) -> list[int]:
        """Indices of a word index, a word, a phrase (``"red triangle"``: every occurrence of the
        consecutive words) or a list of either."""
        if isinstance(words, int):
            return [self._check_index(words)]
        if isinstance(words, str):
            phrase = words.lower().split()
            found = [i + j for i in range(len(self.words) - len(phrase) + 1)
                     if [w.lower() for w in self.words[i:i + len(phrase)]] == phrase for j in range(len(phrase))]
            if not found:
                raise ValueError(f"{words!r} is not in the caption's first {len(self.words)} words "
                                 f"(the model's context); pick a word shown in .words")
            return found
        return sorted({i for item in words for i in self.word_indices(item)})

    def word_map(self, words: str | int | Sequence[str | int], view: str = "raw") -> torch.Tensor:
        """``(gh, gw)`` heatmap of a word / phrase (the mean over its words) in ``view``."""
        indices = self.word_indices(words)
        if view == "raw":
            return self.word_patch[indices].mean(0)
        if view == "refined":
            if self.word_slot is None:
                raise ValueError("this model has no ATRM (use_atrm=False): only the 'raw' view exists")
            affinity = self.word_slot[indices].mean(0).clamp(min=0)
            return einsum(affinity, self.image_slots, "k, k gh gw -> gh gw")
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")

    def patch_words(self, row: int, col: int) -> torch.Tensor:
        """``(words,)`` similarity of every word to the patch at ``(row, col)`` (raw view)."""
        gh, gw = self.grid
        if not (0 <= row < gh and 0 <= col < gw):
            raise ValueError(f"patch ({row}, {col}) is outside the {gh} x {gw} grid")
        return self.word_patch[:, row, col]

    def word_peaks(self) -> torch.Tensor:
        """``(words,)`` each word's best patch similarity (for caption shading)."""
        return reduce(self.word_patch, "w gh gw -> w", "max")

    def _check_index(self, index: int) -> int:
        if not 0 <= index < len(self.words):
            raise ValueError(f"word index {index} is out of range for {len(self.words)} words")
        return index


@torch.no_grad()
def alignment_maps(model, image, caption: str, tokenizer=None, device: torch.device | str | None = None) -> AlignmentMaps:
    """Alignment maps of ``image`` (PIL or ``(3, h, w)`` preprocessed tensor) and ``caption``."""
    from ..data.transforms import clip_transform
    from ..model.tokenizer import get_tokenizer

    if not isinstance(caption, str) or not caption.strip():
        raise ValueError(f"caption must be a non-empty string, got {caption!r}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    tokenizer = tokenizer or get_tokenizer(context_length=model.context_length)
    transform = clip_transform(model.config.vision)
    pixels = image if isinstance(image, torch.Tensor) else transform(image)
    shown = _unnormalise(pixels, model.config.vision)
    words, token_word = tokenizer.words(caption, context_length=model.context_length)
    all_words, _ = tokenizer.words(caption, context_length=10**6)
    tokens = tokenizer([caption], context_length=model.context_length)
    with eval_mode(model):
        vision = model.vision(pixels[None].to(device))
        text = model.text(tokens.input_ids.to(device), tokens.attention_mask.to(device))
    gh, gw = model.vision.grid_size
    patches = F.normalize(vision.tokens[0].float(), dim=-1)  # (p, d)
    word_tokens = F.normalize(text.tokens[0, 1 : 1 + len(token_word)].float(), dim=-1)  # after BOS
    membership = F.one_hot(torch.tensor(token_word, device=device), len(words)).float()  # (t, w)
    piece_patch = einsum(word_tokens, patches, "t d, p d -> t p")
    word_patch = einsum(membership, piece_patch, "t w, t p -> w p") / membership.sum(0)[:, None]
    word_patch = rearrange(word_patch, "w (gh gw) -> w gh gw", gh=gh, gw=gw)

    image_slots = text_slots = word_slot = clim = None
    if model.image_atrm is not None:
        refined_image, image_weights = model.image_atrm(vision.tokens.float(), vision.mask)
        refined_text, text_weights = model.text_atrm(text.tokens.float(), text.mask)
        image_slots = rearrange(image_weights[0], "k (gh gw) -> k gh gw", gh=gh, gw=gw)
        pieces = text_weights[0, :, 1 : 1 + len(token_word)]  # (kt, t)
        text_slots = einsum(pieces, membership, "kt t, t w -> kt w")
        slots = F.normalize(refined_image[0], dim=-1)
        word_slot = einsum(
            F.normalize(einsum(membership, word_tokens, "t w, t d -> w d"), dim=-1), slots, "w d, k d -> w k")
        clim = einsum(slots, F.normalize(refined_text[0], dim=-1), "k d, kt d -> k kt")
    cpu = lambda x: None if x is None else x.detach().float().cpu()  # noqa: E731
    return AlignmentMaps(
        image=shown, caption=caption, words=words, truncated_words=len(all_words) - len(words),
        word_patch=cpu(word_patch), image_slots=cpu(image_slots), text_slots=cpu(text_slots),
        word_slot=cpu(word_slot), clim=cpu(clim),
    )


def _unnormalise(pixels: torch.Tensor, vision_config) -> np.ndarray:
    mean = torch.tensor(vision_config.mean).view(3, 1, 1)
    std = torch.tensor(vision_config.std).view(3, 1, 1)
    image = (pixels.detach().cpu().float() * std + mean).clamp(0, 1)
    return (rearrange(image, "c h w -> h w c").numpy() * 255).round().astype(np.uint8)


def upsample(heatmap: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """``(gh, gw)`` → ``size`` (h, w), bilinear, as a numpy array."""
    grid = rearrange(heatmap.float(), "gh gw -> 1 1 gh gw")
    return F.interpolate(grid, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


# ----------------------------------------------------------------------------- figures
def plot_word_heatmap(maps: AlignmentMaps, words, view: str = "raw", cmap: str = "inferno", alpha: float = 0.55,
                      ax=None, path: str | Path | None = None):
    """The image with the heatmap of a word or phrase overlaid (upsampled to the image size)."""
    import matplotlib.pyplot as plt

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha (opacity) must be in [0, 1], got {alpha}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    heat = upsample(maps.word_map(words, view), maps.image.shape[:2])
    ax.imshow(maps.image)
    overlay = ax.imshow(heat, cmap=cmap, alpha=alpha, interpolation="nearest")
    label = words if isinstance(words, str) else " ".join(maps.words[i] for i in maps.word_indices(words))
    ax.set_title(f"{label!r} ({view})", fontsize=9)
    ax.axis("off")
    ax.figure.colorbar(overlay, ax=ax, fraction=0.046, pad=0.04)
    return _finish(ax.figure, path)


def plot_word_slot_matrix(maps: AlignmentMaps, max_words: int = 60, cmap: str = "viridis", path: str | Path | None = None):
    """Words × refined image tokens (cosines): which ATRM slot each word resembles."""
    import matplotlib.pyplot as plt

    if maps.word_slot is None:
        raise ValueError("this model has no ATRM (use_atrm=False): there are no refined image tokens")
    n = min(max_words, len(maps.words))
    fig, ax = plt.subplots(figsize=(max(4, 0.3 * maps.word_slot.shape[1] + 2), max(3, 0.18 * n + 1)))
    image = ax.imshow(maps.word_slot[:n].numpy(), aspect="auto", cmap=cmap)
    ax.set_yticks(range(n), maps.words[:n], fontsize=6)
    ax.set_xlabel("refined image token (ATRM slot)")
    ax.set_title(f"words x refined image tokens (first {n} words)", fontsize=9)
    fig.colorbar(image, ax=ax)
    return _finish(fig, path)


def plot_slot_maps(maps: AlignmentMaps, slots: Sequence[int] | None = None, columns: int = 8, cmap: str = "magma",
                   path: str | Path | None = None):
    """What each ATRM image slot gathers: its weights over the patches, one small map per slot."""
    import matplotlib.pyplot as plt

    if maps.image_slots is None:
        raise ValueError("this model has no ATRM (use_atrm=False): there are no slots")
    slots = list(range(maps.image_slots.shape[0])) if slots is None else list(slots)
    rows = -(-len(slots) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.7 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, slot in zip(axes.flat, slots):
        ax.imshow(maps.image)
        ax.imshow(upsample(maps.image_slots[slot], maps.image.shape[:2]), cmap=cmap, alpha=0.6)
        ax.set_title(f"slot {slot}", fontsize=8)
    fig.suptitle("ATRM image slots: weights over patches", fontsize=9)
    return _finish(fig, path)


def plot_caption_shading(maps: AlignmentMaps, values: torch.Tensor | None = None, cmap: str = "Reds",
                         words_per_line: int = 14, path: str | Path | None = None):
    """The caption with each word shaded by ``values`` (default: its best patch similarity)."""
    import matplotlib.pyplot as plt
    from matplotlib import colormaps

    values = maps.word_peaks() if values is None else values
    if values.shape != (len(maps.words),):
        raise ValueError(f"values must have one entry per word ({len(maps.words)}), got shape {tuple(values.shape)}")
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low + 1e-8)
    colours = colormaps[cmap]
    lines = -(-len(maps.words) // words_per_line)
    fig, ax = plt.subplots(figsize=(11, 0.32 * lines + 0.4))
    ax.axis("off")
    ax.set_xlim(0, words_per_line)
    ax.set_ylim(lines, 0)
    for i, (word, value) in enumerate(zip(maps.words, scaled.tolist())):
        row, col = divmod(i, words_per_line)
        ax.text(col + 0.05, row + 0.5, word, fontsize=8, va="center",
                bbox=dict(boxstyle="round,pad=0.15", facecolor=colours(0.1 + 0.8 * value), edgecolor="none"))
    if maps.truncated_words:
        ax.set_title(f"({maps.truncated_words} words past the context are not shown)", fontsize=8)
    return _finish(fig, path)


def _finish(fig, path):
    if path is not None:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return fig


# ----------------------------------------------------------------------------- pointing game
@torch.no_grad()
def pointing_game(model, scenes, indices: Sequence[int] | None = None, view: str = "raw") -> dict[str, float]:
    """How often the heatmap of an object's ``"<colour> <shape>"`` phrase peaks inside that
    object's cell, over the synthetic ``scenes`` (objects whose colour + shape is unique in their
    scene and whose phrase is within the model's context). Chance: one cell of the grid."""
    indices = range(len(scenes)) if indices is None else indices
    hits = trials = skipped = 0
    grid = scenes.config.grid_size
    for index in indices:
        record, objects = scenes[index], scenes.objects(index)
        maps = alignment_maps(model, record["image"], record["caption"])
        counts: dict[tuple[str, str], int] = {}
        for obj in objects:
            counts[(obj.colour, obj.shape)] = counts.get((obj.colour, obj.shape), 0) + 1
        gh, gw = maps.grid
        for obj in objects:
            if counts[(obj.colour, obj.shape)] > 1:
                continue
            try:
                heat = maps.word_map(f"{obj.colour} {obj.shape}", view)
            except ValueError:
                skipped += 1  # the phrase lies past the context
                continue
            peak = int(heat.flatten().argmax())
            row, col = divmod(peak, gw)
            hits += (row * grid // gh, col * grid // gw) == (obj.row, obj.col)
            trials += 1
    if trials == 0:
        raise ValueError("no object could be scored: no scene had a unique colour + shape within the context")
    return {"accuracy": 100.0 * hits / trials, "chance": 100.0 / grid**2, "objects": trials, "skipped": skipped}


# ----------------------------------------------------------------------------- interactive
class AlignmentExplorer:
    """Pick a sample, click a word to see its heatmap (raw or ATRM-refined), click a grid cell
    to shade the caption by that patch, adjust the opacity. ``data``: a dataset of records with
    ``image`` and ``caption`` (``SyntheticScenes``, ``load_pairs``). In a static render the
    initial figure shows (its PNG is part of the output)."""

    def __init__(self, model, data, index: int = 0, view: str = "raw", alpha: float = 0.55, cmap: str = "inferno"):
        import ipywidgets as widgets

        if len(data) == 0:
            raise ValueError("data is empty: nothing to explore")
        self.model, self.data = model, data
        self.cmap = cmap
        self.sample = widgets.IntSlider(value=index, min=0, max=len(data) - 1, description="sample",
                                        continuous_update=False)
        views = list(VIEWS) if model.image_atrm is not None else ["raw"]
        self.view = widgets.ToggleButtons(options=views, value=view if view in views else "raw", description="view")
        self.opacity = widgets.FloatSlider(value=alpha, min=0.0, max=1.0, step=0.05, description="opacity",
                                           continuous_update=False)
        self.heatmap = widgets.Image(format="png", layout=widgets.Layout(width="360px"))
        self.heatmap.add_class("finelip-heatmap")
        self.word_box = widgets.Box(layout=widgets.Layout(flex_flow="row wrap", width="640px"))
        self.cells = widgets.GridBox(layout=widgets.Layout(width="200px"))
        self.caption_view = widgets.HTML()
        self.title = widgets.HTML()
        self.sample.observe(lambda _: self._load(), names="value")
        for control in (self.view, self.opacity):
            control.observe(lambda _: self._draw(), names="value")
        self.widget = widgets.VBox([
            widgets.HBox([self.sample, self.view, self.opacity]),
            self.title,
            widgets.HBox([self.heatmap, widgets.VBox([widgets.HTML("<b>patch → words</b>: click a cell"), self.cells])]),
            widgets.HTML("<b>words</b> (click one):"), self.word_box, self.caption_view,
        ])
        self.word = 0
        self._load()

    def _load(self) -> None:
        import ipywidgets as widgets

        record = self.data[self.sample.value]
        self.maps = alignment_maps(self.model, record["image"], record["caption"])
        self.word = min(self.word, len(self.maps.words) - 1)
        buttons = []
        for i, word in enumerate(self.maps.words):
            button = widgets.Button(description=word, layout=widgets.Layout(width="auto", height="24px", margin="1px"))
            button.add_class(f"finelip-word-{i}")
            button.on_click(lambda _, i=i: self.select_word(i))
            buttons.append(button)
        self.word_box.children = buttons
        gh, gw = self.maps.grid
        cells = []
        for r in range(gh):
            for c in range(gw):
                cell = widgets.Button(layout=widgets.Layout(width="22px", height="22px", padding="0"))
                cell.on_click(lambda _, r=r, c=c: self.select_patch(r, c))
                cells.append(cell)
        self.cells.layout.grid_template_columns = f"repeat({gw}, 22px)"
        self.cells.layout.grid_gap = "2px"
        self.cells.children = cells
        self.caption_view.value = ""
        self._draw()

    def select_word(self, index: int) -> None:
        self.word = self.maps._check_index(index)
        self._draw()

    def select_patch(self, row: int, col: int) -> None:
        """Shade the caption's words by their similarity to patch ``(row, col)``."""
        values = self.maps.patch_words(row, col)
        low, high = float(values.min()), float(values.max())
        spans = []
        for word, value in zip(self.maps.words, values.tolist()):
            strength = (value - low) / (high - low + 1e-8)
            spans.append(f'<span style="background: rgba(220, 50, 47, {0.85 * strength:.2f}); padding: 0 2px">{word}</span>')
        self.caption_view.value = f"<p><b>patch ({row}, {col}) → words</b></p><p style='line-height: 1.6'>{' '.join(spans)}</p>"

    def figure(self):
        return plot_word_heatmap(self.maps, self.word, self.view.value, cmap=self.cmap, alpha=self.opacity.value)

    def png(self) -> bytes:
        import io

        import matplotlib.pyplot as plt

        fig = self.figure()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=100)  # a fixed size: the view does not jump between words
        plt.close(fig)
        return buffer.getvalue()

    def _draw(self) -> None:
        self.heatmap.value = self.png()
        word = self.maps.words[self.word]
        for i, button in enumerate(self.word_box.children):
            button.button_style = "info" if i == self.word else ""
        self.title.value = (f"sample {self.sample.value}: word {self.word} <b>{word!s}</b> ({self.view.value}); "
                            f"{len(self.maps.words)} words" + (f", {self.maps.truncated_words} past the context"
                                                             if self.maps.truncated_words else ""))

    def _repr_mimebundle_(self, **kwargs):
        import base64

        bundle = self.widget._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        data["image/png"] = base64.b64encode(self.heatmap.value).decode()
        return bundle
