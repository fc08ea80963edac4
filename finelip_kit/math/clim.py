"""CLIM — Cross-modal Late Interaction Module (pure functions).

For an image with tokens ``a`` and a text with tokens ``b`` (both L2-normalised):

    s[a, b]  = cos(image_a, text_b)
    t2i      = mean over valid b of  leaky_relu(max over valid a of s[a, b])
    i2t      = mean over valid a of  leaky_relu(max over valid b of s[a, b])
    score    = t2i + i2t

``leaky_relu`` (slope 0.1) is monotone, so it is applied after the max: the same value
at a fraction of the cost. ``clim_scores`` scores every image against every text in
blocks whose extra memory stays under ``chunk_bytes`` (the budget holds without autograd;
with gradients, autograd keeps each block's similarities for the backward pass).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import einsum, rearrange, reduce

from .defaults import DEFAULT_CHUNK_BYTES  # noqa: E402 (torch-free, for the settings)
_FLOAT32_BYTES = 4


def clim_scores(
    image_tokens: torch.Tensor,
    text_tokens: torch.Tensor,
    text_mask: torch.Tensor | None = None,
    image_mask: torch.Tensor | None = None,
    slope: float = 0.1,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> torch.Tensor:
    """Scores of every image against every text: ``(i, a, d)``, ``(t, b, d)`` → ``(i, t)``.

    ``text_mask`` ``(t, b)`` / ``image_mask`` ``(i, a)``: True for valid tokens (None: all valid).
    """
    _check_tokens(image_tokens, text_tokens, text_mask, image_mask)
    text_mask, image_mask = _drop_full(text_mask), _drop_full(image_mask)  # all-valid: skip masking
    n_images, a, d = image_tokens.shape
    n_texts, b, _ = text_tokens.shape
    texts_per_block, images_per_block = _block_sizes(a, b, d, n_images, n_texts, chunk_bytes, image_tokens.element_size())
    # Without autograd, each block writes into buffers reused across blocks: no fresh pages per
    # block, and never two blocks' temporaries alive at once.
    tracking = torch.is_grad_enabled() and (image_tokens.requires_grad or text_tokens.requires_grad)
    if tracking:
        sim_buffer = image_buffer = text_buffer = None
    else:
        sim_buffer = image_tokens.new_empty(images_per_block * a * texts_per_block * b)
        image_buffer = image_tokens.new_empty(images_per_block * a * d)
        text_buffer = text_tokens.new_empty(texts_per_block * b * d)
    scores = image_tokens.new_empty(n_images, n_texts, dtype=torch.promote_types(image_tokens.dtype, torch.float32))
    for t0 in range(0, n_texts, texts_per_block):
        texts = _normalize(text_tokens[t0 : t0 + texts_per_block], text_buffer)
        t_mask = None if text_mask is None else rearrange(text_mask[t0 : t0 + texts_per_block], "t b -> 1 1 t b")
        for i0 in range(0, n_images, images_per_block):
            images = _normalize(image_tokens[i0 : i0 + images_per_block], image_buffer)
            i_mask = None if image_mask is None else rearrange(image_mask[i0 : i0 + images_per_block], "i a -> i a 1 1")
            # One GEMM per block: (i·a, d) x (d, t·b), viewed as (i, a, t, b).
            left, right = rearrange(images, "i a d -> (i a) d"), rearrange(texts, "t b d -> d (t b)")
            out = None if sim_buffer is None else sim_buffer[: left.shape[0] * right.shape[1]].view(left.shape[0], -1)
            sim = torch.mm(left, right, out=out)
            sim = rearrange(sim, "(i a) (t b) -> i a t b", a=a, b=b)
            scores[i0 : i0 + images_per_block, t0 : t0 + texts_per_block] = _late_interaction(sim, t_mask, i_mask, slope)
    return scores


def _normalize(tokens: torch.Tensor, buffer: torch.Tensor | None) -> torch.Tensor:
    """L2-normalise the last axis, into ``buffer`` when one is given."""
    if buffer is None:
        return F.normalize(tokens, dim=-1)
    return F.normalize(tokens, dim=-1, out=buffer[: tokens.numel()].view(tokens.shape))


def clim_pair_scores(
    image_tokens: torch.Tensor,
    text_tokens: torch.Tensor,
    text_mask: torch.Tensor | None = None,
    image_mask: torch.Tensor | None = None,
    slope: float = 0.1,
) -> torch.Tensor:
    """Scores of aligned pairs: ``(n, a, d)``, ``(n, b, d)`` → ``(n,)`` (the diagonal of ``clim_scores``)."""
    if image_tokens.shape[0] != text_tokens.shape[0]:
        raise ValueError(
            f"clim_pair_scores needs as many images as texts, got {image_tokens.shape[0]} and {text_tokens.shape[0]}"
        )
    _check_tokens(image_tokens, text_tokens, text_mask, image_mask)
    sim = token_alignment(image_tokens, text_tokens)
    sim = rearrange(sim, "n a b -> n a 1 b")
    t_mask = None if text_mask is None else rearrange(text_mask, "n b -> n 1 1 b")
    i_mask = None if image_mask is None else rearrange(image_mask, "n a -> n a 1 1")
    return rearrange(_late_interaction(sim, t_mask, i_mask, slope), "n 1 -> n")


def clim_candidate_scores(
    image_tokens: torch.Tensor,
    text_tokens: torch.Tensor,
    candidates: torch.Tensor,
    by: str = "image",
    text_mask: torch.Tensor | None = None,
    image_mask: torch.Tensor | None = None,
    slope: float = 0.1,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
) -> torch.Tensor:
    """Scores of each query against its own ``k`` candidates (two-stage retrieval): ``(n, k)``.

    ``by="image"``: queries are the images and ``candidates`` ``(n_images, k)`` index texts;
    ``by="text"``: queries are the texts and ``candidates`` ``(n_texts, k)`` index images.
    One batched GEMM per chunk of queries: the query's tokens are not copied per candidate.
    Scoring only (no autograd).
    """
    if by not in ("image", "text"):
        raise ValueError(f"by must be 'image' or 'text', got {by!r}")
    _check_tokens(image_tokens, text_tokens, text_mask, image_mask)
    image_tokens, text_tokens = image_tokens.detach(), text_tokens.detach()
    images, texts = F.normalize(image_tokens, dim=-1), F.normalize(text_tokens, dim=-1)
    n, k = candidates.shape
    a, b, d = images.shape[1], texts.shape[1], images.shape[2]
    per_query = images.element_size() * k * (a * b + 2 * (a + b) + (b if by == "image" else a) * d)
    step = max(1, min(n, chunk_bytes // per_query))
    out = images.new_empty(n, k)
    # Reused buffers for the gathered candidates and the similarities: fresh pages per chunk
    # cost more than the copy itself.
    pool = images if by == "text" else texts
    gathered = pool.new_empty(step * k, *pool.shape[1:])
    sims = images.new_empty(step * k * a * b)
    for q0 in range(0, n, step):
        chosen = candidates[q0 : q0 + step]  # (c, k)
        c = len(chosen)
        q = torch.arange(q0, q0 + c, device=candidates.device)
        candidate = torch.index_select(pool, 0, chosen.flatten(), out=gathered[: c * k])
        sim_buffer = sims[: c * k * a * b]
        if by == "image":
            # (c, a, d) x (c, d, k·b) -> (c, a, k, b): the (i, a, t, b) layout, one GEMM per query.
            candidate = rearrange(candidate, "(c k) b d -> c (k b) d", c=c)
            sim = torch.bmm(images[q], candidate.transpose(1, 2), out=sim_buffer.view(c, a, k * b))
            sim = rearrange(sim, "c a (k b) -> c a k b", k=k)
            t_mask = None if text_mask is None else rearrange(text_mask[chosen], "c k b -> c 1 k b")
            i_mask = None if image_mask is None else rearrange(image_mask[q], "c a -> c a 1 1")
            out[q0 : q0 + c] = _late_interaction(sim, t_mask, i_mask, slope)
        else:
            # (c, k·a, d) x (c, d, b) -> (c·k, a, 1, b): every (text, image) pair as its own item.
            candidate = rearrange(candidate, "(c k) a d -> c (k a) d", c=c)
            sim = torch.bmm(candidate, texts[q].transpose(1, 2), out=sim_buffer.view(c, k * a, b))
            sim = rearrange(sim, "c (k a) b -> (c k) a 1 b", k=k)
            t_mask = None if text_mask is None else rearrange(text_mask[q], "c b -> c 1 b").expand(-1, k, -1)
            t_mask = None if t_mask is None else rearrange(t_mask, "c k b -> (c k) 1 1 b")
            i_mask = None if image_mask is None else rearrange(image_mask[chosen], "c k a -> (c k) a 1 1")
            out[q0 : q0 + c] = rearrange(_late_interaction(sim, t_mask, i_mask, slope), "(c k) 1 -> c k", k=k)
    return out


def token_alignment(image_tokens: torch.Tensor, text_tokens: torch.Tensor) -> torch.Tensor:
    """Raw token-to-token cosines for visualisation: ``(..., a, d)``, ``(..., b, d)`` → ``(..., a, b)``."""
    image_tokens = F.normalize(image_tokens, dim=-1)
    text_tokens = F.normalize(text_tokens, dim=-1)
    return einsum(image_tokens, text_tokens, "... a d, ... b d -> ... a b")


def _late_interaction(
    sim: torch.Tensor, text_mask: torch.Tensor | None, image_mask: torch.Tensor | None, slope: float
) -> torch.Tensor:
    """``sim`` ``(i, a, t, b)`` cosines → ``(i, t)`` scores. Masks broadcast to ``sim`` (True = valid)."""
    # Invalid tokens never win a max. In place: the GEMM's backward does not need its output.
    if text_mask is not None:
        sim = sim.masked_fill_(~text_mask, float("-inf"))
    if image_mask is not None:
        sim = sim.masked_fill_(~image_mask, float("-inf"))
    # The maxima are exact in any precision; what follows (the means over up to 248 tokens)
    # accumulates in float32 at least, so bf16 similarities under autocast give float32 scores.
    accumulate = torch.promote_types(sim.dtype, torch.float32)
    text_to_image = F.leaky_relu(reduce(sim, "i a t b -> i t b", "max").to(accumulate), slope)
    image_to_text = F.leaky_relu(reduce(sim, "i a t b -> i a t", "max").to(accumulate), slope)
    text_valid = None if text_mask is None else rearrange(text_mask, "i 1 t b -> i t b")
    image_valid = None if image_mask is None else rearrange(image_mask, "i a 1 1 -> i a 1")
    return _masked_mean(text_to_image, text_valid, "i t b -> i t") + _masked_mean(image_to_text, image_valid, "i a t -> i t")


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None, pattern: str) -> torch.Tensor:
    if mask is None:
        return reduce(values, pattern, "mean")
    total = reduce(torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device)), pattern, "sum")
    count = reduce(mask.to(values.dtype), pattern, "sum")
    return total / count


def _block_sizes(
    a: int, b: int, d: int, n_images: int, n_texts: int, chunk_bytes: int, element_size: int = _FLOAT32_BYTES
) -> tuple[int, int]:
    """(texts, images) per block so that a block's temporaries fit in ``chunk_bytes``.

    A block of ``ni`` images and ``nt`` texts holds the similarities ``ni·a·nt·b``, the two
    reductions and their activations ``2·ni·nt·(a + b)``, and the normalised tokens. Blocks
    are as square as the budget allows: a GEMM with both sides large runs fastest. The
    ``(n_images, n_texts)`` result counts against the budget, and 15% of it is left for
    what the libraries allocate themselves (GEMM packing buffers).
    """
    if chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be > 0, got {chunk_bytes}")
    chunk_bytes = max(0, int(chunk_bytes * 0.85) - element_size * n_images * n_texts)
    per_pair = element_size * (a * b + 2 * (a + b))

    def images_for(texts: int) -> int:
        left = chunk_bytes - element_size * texts * b * d
        return max(1, min(n_images, left // (per_pair * texts + element_size * a * d)))

    def texts_for(images: int) -> int:
        left = chunk_bytes - element_size * images * a * d
        return max(1, min(n_texts, left // (per_pair * images + element_size * b * d)))

    texts = max(1, min(n_texts, math.isqrt(chunk_bytes // per_pair)))
    images = images_for(texts)
    return texts_for(images), images


def _drop_full(mask: torch.Tensor | None) -> torch.Tensor | None:
    return None if mask is None or bool(mask.all()) else mask


def _check_tokens(image_tokens, text_tokens, text_mask, image_mask) -> None:
    if image_tokens.ndim != 3 or text_tokens.ndim != 3:
        raise ValueError(
            f"token tensors must be (items, tokens, dim); got image {tuple(image_tokens.shape)} "
            f"and text {tuple(text_tokens.shape)}"
        )
    if image_tokens.shape[-1] != text_tokens.shape[-1]:
        raise ValueError(f"image and text token dims differ: {image_tokens.shape[-1]} vs {text_tokens.shape[-1]}")
    for name, mask, tokens in (("text_mask", text_mask, text_tokens), ("image_mask", image_mask, image_tokens)):
        if mask is None:
            continue
        if mask.shape != tokens.shape[:2] or mask.dtype != torch.bool:
            raise ValueError(f"{name} must be a bool tensor of shape {tuple(tokens.shape[:2])}, got {mask.dtype} {tuple(mask.shape)}")
        empty = (~mask.any(-1)).nonzero().flatten()
        if len(empty):
            raise ValueError(f"{name} rows {empty.tolist()[:10]} have no valid token; every item needs at least one")
