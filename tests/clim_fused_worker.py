"""Run by tests/test_clim_fused.py with TRITON_INTERPRET=1 (Triton reads it when it is imported,
so in a fresh process): the fused kernel's scores against clim_scores', as JSON on stdout."""

import json

import torch

from finelip_kit.clim import clim_scores
from finelip_kit.clim_fused import TEXTS_PER_PROGRAM, clim_scores_fused


def tokens(generator, n, k, d, dropped=0.3):
    values = torch.randn(n, k, d, generator=generator)
    mask = torch.rand(n, k, generator=generator) > dropped
    mask[:, 0] = True
    return values, mask


def main() -> None:
    generator = torch.Generator().manual_seed(0)
    # 11 texts: one program's block of 8 and a partial one; d 80: a whole and a partial slice of 64;
    # 7 and 20 tokens: padded to 16 and 32
    images, image_mask = tokens(generator, 5, 7, 80)
    texts, text_mask = tokens(generator, 2 * TEXTS_PER_PROGRAM - 5, 20, 80)
    reference = clim_scores(images, texts, text_mask, image_mask)
    fused = clim_scores_fused(images, texts, text_mask, image_mask)
    half = clim_scores_fused(images.bfloat16(), texts.bfloat16(), text_mask, image_mask)

    def gap(a, b):
        return float((a - b).abs().max())

    print(json.dumps({
        "shape": list(fused.shape), "dtype": str(fused.dtype), "bf16_dtype": str(half.dtype),
        "masked": gap(fused, reference),
        "unmasked": gap(clim_scores_fused(images, texts), clim_scores(images, texts)),
        "slope": gap(clim_scores_fused(images, texts, text_mask, image_mask, slope=0.3),
                     clim_scores(images, texts, text_mask, image_mask, slope=0.3)),
        "bf16": gap(half, reference),
        "score_range": [float(reference.min()), float(reference.max())],
    }))


if __name__ == "__main__":
    main()
