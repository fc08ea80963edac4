"""CLIM in one fused kernel (Triton): the candidate against the chunked scorer on a GPU.

``clim_scores`` (the default and the reference) scores a gallery block by block: one GEMM writes
a block of images × tokens × texts × tokens similarities to memory, and the late interaction
reads it back twice (the maximum over image tokens, the maximum over text tokens). Here each
Triton program scores one image against a few texts with the token similarities held in
registers: the block is never written. The values are ``clim_scores``' own (tested under
Triton's CPU interpreter against it); whether it is faster is measured on the device by
``benchmarks/bench_gpu.py``, beside the chunked scorer and its GEMM floor.

    scores = clim_scores_fused(image_tokens, text_tokens, text_mask, image_mask)   # CUDA tensors

CUDA only (or ``TRITON_INTERPRET=1`` set before the kit is imported, which runs the kernel on
CPU, slowly: for tests); float32, bfloat16 or float16 tokens, float32 scores.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from .clim import _check_tokens

TEXTS_PER_PROGRAM = 8
_FLOATS = (torch.float32, torch.bfloat16, torch.float16)


def clim_scores_fused(
    image_tokens: torch.Tensor,
    text_tokens: torch.Tensor,
    text_mask: torch.Tensor | None = None,
    image_mask: torch.Tensor | None = None,
    slope: float = 0.1,
) -> torch.Tensor:
    """``clim_scores``' scores, ``(i, a, d)``, ``(t, b, d)`` → ``(i, t)`` float32, from one kernel launch."""
    _check_tokens(image_tokens, text_tokens, text_mask, image_mask)
    interpreted = os.environ.get("TRITON_INTERPRET") == "1"
    if image_tokens.device.type != "cuda" and not interpreted:
        raise ValueError(f"clim_scores_fused runs on CUDA (a Triton kernel); the tokens are on "
                         f"{image_tokens.device.type}: use finelip_kit.clim.clim_scores there")
    if image_tokens.dtype not in _FLOATS or text_tokens.dtype != image_tokens.dtype:
        raise ValueError(f"clim_scores_fused takes float32, bfloat16 or float16 tokens of one dtype, got "
                         f"{image_tokens.dtype} and {text_tokens.dtype}: use finelip_kit.clim.clim_scores")
    import triton

    n_images, a, d = image_tokens.shape
    n_texts, b, _ = text_tokens.shape
    images = F.normalize(image_tokens, dim=-1).contiguous()
    texts = F.normalize(text_tokens, dim=-1).contiguous()
    full = torch.ones((), dtype=torch.int8, device=images.device)
    image_valid = (full.expand(n_images, a) if image_mask is None else image_mask.to(torch.int8)).contiguous()
    text_valid = (full.expand(n_texts, b) if text_mask is None else text_mask.to(torch.int8)).contiguous()
    scores = torch.empty(n_images, n_texts, dtype=torch.float32, device=images.device)
    text_blocks = triton.cdiv(n_texts, TEXTS_PER_PROGRAM)
    _kernel()[(n_images * text_blocks,)](
        images, texts, image_valid, text_valid, scores, n_texts, a, b, d, text_blocks, float(slope),
        BLOCK_A=max(16, triton.next_power_of_2(a)), BLOCK_B=max(16, triton.next_power_of_2(b)),
        BLOCK_D=min(64, max(16, triton.next_power_of_2(d))), TEXTS=TEXTS_PER_PROGRAM,
        IEEE=image_tokens.dtype == torch.float32,
        # Triton's CPU interpreter computes a bfloat16 tl.dot wrongly (Triton 3.8): there the tiles
        # are widened to float32 first; on a GPU bfloat16 goes to the tensor cores as it is
        UPCAST=interpreted and image_tokens.dtype == torch.bfloat16,
    )
    return scores


_KERNEL = None


def _kernel():
    """The Triton kernel, defined on first use (importing the kit does not import Triton)."""
    global _KERNEL
    if _KERNEL is not None:
        return _KERNEL
    import triton
    import triton.language as tl

    @triton.jit
    def clim_kernel(images, texts, image_valid, text_valid, scores, n_texts, a, b, d, text_blocks, slope,
                    BLOCK_A: tl.constexpr, BLOCK_B: tl.constexpr, BLOCK_D: tl.constexpr, TEXTS: tl.constexpr,
                    IEEE: tl.constexpr, UPCAST: tl.constexpr):
        program = tl.program_id(0)
        image = program // text_blocks
        first_text = (program % text_blocks) * TEXTS
        rows_a = tl.arange(0, BLOCK_A)
        rows_b = tl.arange(0, BLOCK_B)
        dims = tl.arange(0, BLOCK_D)
        valid_a = (rows_a < a) & (tl.load(image_valid + image * a + rows_a, mask=rows_a < a, other=0) != 0)
        count_a = tl.sum(valid_a.to(tl.float32), axis=0)
        for offset in range(TEXTS):
            text = first_text + offset
            if text < n_texts:
                valid_b = (rows_b < b) & (tl.load(text_valid + text * b + rows_b, mask=rows_b < b, other=0) != 0)
                similarity = tl.zeros((BLOCK_A, BLOCK_B), dtype=tl.float32)
                for d0 in range(0, d, BLOCK_D):
                    in_d = (d0 + dims) < d
                    image_part = tl.load(images + image * a * d + rows_a[:, None] * d + d0 + dims[None, :],
                                         mask=(rows_a[:, None] < a) & in_d[None, :], other=0.0)
                    text_part = tl.load(texts + text * b * d + rows_b[:, None] * d + d0 + dims[None, :],
                                        mask=(rows_b[:, None] < b) & in_d[None, :], other=0.0)
                    if UPCAST:
                        image_part, text_part = image_part.to(tl.float32), text_part.to(tl.float32)
                    if IEEE or UPCAST:
                        similarity += tl.dot(image_part, tl.trans(text_part), input_precision="ieee")
                    else:
                        similarity += tl.dot(image_part, tl.trans(text_part))
                similarity = tl.where(valid_a[:, None] & valid_b[None, :], similarity, float("-inf"))
                # leaky_relu is monotone: applied after each maximum, as clim_scores does
                text_to_image = tl.max(similarity, axis=0)
                text_to_image = tl.where(text_to_image > 0, text_to_image, text_to_image * slope)
                text_to_image = tl.sum(tl.where(valid_b, text_to_image, 0.0), axis=0) / tl.sum(valid_b.to(tl.float32), axis=0)
                image_to_text = tl.max(similarity, axis=1)
                image_to_text = tl.where(image_to_text > 0, image_to_text, image_to_text * slope)
                image_to_text = tl.sum(tl.where(valid_a, image_to_text, 0.0), axis=0) / count_a
                tl.store(scores + image * n_texts + text, text_to_image + image_to_text)

    _KERNEL = clim_kernel
    return _KERNEL
