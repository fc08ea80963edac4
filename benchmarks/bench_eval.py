"""Evaluation at gallery scale on this machine.

    python benchmarks/bench_eval.py [--gallery 5000] [--dim 128] [--rerank-k 50] [--skip-clim]

(a) CLIM for 1000 x 1000 pairs (40 x 40 tokens, d = 512): runs benchmarks/bench_clim.py's table.
(b) A gallery of structured synthetic embeddings (clusters of images that share most concepts:
    the global view confuses them, the token view does not): full CLIM scoring vs two-stage
    (global top-k, then CLIM), time and R@1 both ways.
(c) Peak extra memory of the chunked CLIM at several gallery sizes against the budget.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import bench_clim  # noqa: E402

from finelip_kit.clim import DEFAULT_CHUNK_BYTES, clim_scores  # noqa: E402
from finelip_kit.config import preset  # noqa: E402
from finelip_kit.evaluate import Gallery, rerank_scores, retrieval_metrics  # noqa: E402
from finelip_kit.model import FineLIP, global_similarity  # noqa: E402
from finelip_kit.towers import Features  # noqa: E402


def structured_gallery(n: int, tokens: int = 40, dim: int = 128, cluster: int = 10, unique: int = 4,
                       noise: float = 1.0, global_noise: float = 0.1, seed: int = 0) -> Gallery:
    """Images of ``tokens`` concept vectors, in clusters of ``cluster`` that share all but ``unique``
    concepts; each caption holds its image's concepts (shuffled, with noise); globals are noisy
    means, so the global view confuses images inside a cluster and the token view does not."""
    g = torch.Generator().manual_seed(seed)
    concepts = torch.randn(4 * n, dim, generator=g)
    base = torch.randint(0, 4 * n, ((n + cluster - 1) // cluster, tokens - unique), generator=g)
    ids = torch.cat([base.repeat_interleave(cluster, 0)[:n], torch.randint(0, 4 * n, (n, unique), generator=g)], 1)
    image_tokens = concepts[ids]
    order = torch.argsort(torch.rand(n, tokens, generator=g), 1)
    text_tokens = torch.gather(image_tokens, 1, order.unsqueeze(-1).expand(-1, -1, dim))
    text_tokens = text_tokens + noise * torch.randn(n, tokens, dim, generator=g)
    image_global = image_tokens.mean(1) + global_noise * torch.randn(n, dim, generator=g)
    text_global = text_tokens.mean(1) + global_noise * torch.randn(n, dim, generator=g)
    mask = torch.ones(n, tokens, dtype=torch.bool)
    return Gallery(Features(image_global, image_tokens, mask), Features(text_global, text_tokens, mask), torch.arange(n))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=int, default=5000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--rerank-k", type=int, default=50)
    parser.add_argument("--skip-clim", action="store_true", help="skip part (a)")
    args = parser.parse_args()

    if not args.skip_clim:
        print("(a) CLIM 1000 x 1000 — benchmarks/bench_clim.py\n")
        sys.argv = [sys.argv[0]]
        bench_clim.main()
        print()

    model = FineLIP.__new__(FineLIP)  # scoring needs only the config: no towers are built
    torch.nn.Module.__init__(model)
    model.config = preset("tiny")
    gallery = structured_gallery(args.gallery, dim=args.dim)
    n, k = args.gallery, args.rerank_k
    with torch.no_grad():
        start = time.perf_counter()
        full = clim_scores(gallery.images.tokens, gallery.texts.tokens)
        full_s = time.perf_counter() - start
        start = time.perf_counter()
        for_i2t, for_t2i = rerank_scores(model, gallery, k, "fine")
        rerank_s = time.perf_counter() - start
        coarse = global_similarity(gallery.images.global_, gallery.texts.global_)
    full_m = retrieval_metrics(full, gallery.text_image)
    i2t, t2i = retrieval_metrics(for_i2t, gallery.text_image), retrieval_metrics(for_t2i, gallery.text_image)
    coarse_m = retrieval_metrics(coarse, gallery.text_image)
    print(f"(b) {n} images x {n} captions, 40 x 40 tokens, d = {args.dim}, structured synthetic embeddings\n")
    print(f"| {'scoring':<26} | {'seconds':>8} | {'I2T R@1':>8} | {'T2I R@1':>8} |")
    print(f"|{'-' * 28}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
    print(f"| {'global only':<26} | {'-':>8} | {coarse_m['i2t/R@1']:>8.2f} | {coarse_m['t2i/R@1']:>8.2f} |")
    print(f"| {'full CLIM':<26} | {full_s:>8.2f} | {full_m['i2t/R@1']:>8.2f} | {full_m['t2i/R@1']:>8.2f} |")
    print(f"| {f'two-stage (k = {k})':<26} | {rerank_s:>8.2f} | {i2t['i2t/R@1']:>8.2f} | {t2i['t2i/R@1']:>8.2f} |")
    gap = max(abs(full_m["i2t/R@1"] - i2t["i2t/R@1"]), abs(full_m["t2i/R@1"] - t2i["t2i/R@1"]))
    print(f"\ntwo-stage is {full_s / rerank_s:.1f}x faster (target >= 20x); R@1 differs by at most {gap:.2f} points (target <= 0.5)")

    print(f"\n(c) peak extra memory of clim_scores, budget {DEFAULT_CHUNK_BYTES >> 20} MiB\n")
    print(f"| {'gallery':>8} | {'seconds':>8} | {'peak extra MiB':>14} | {'under budget':>12} |")
    print(f"|{'-' * 10}|{'-' * 10}|{'-' * 16}|{'-' * 14}|")
    for size in (500, 1000, 2000, n):
        images, texts = gallery.images.tokens[:size], gallery.texts.tokens[:size]
        with torch.no_grad():
            _, seconds, peak = bench_clim.timed_with_peak_memory(lambda: clim_scores(images, texts))
        print(f"| {size:>8} | {seconds:>8.2f} | {peak / 2**20:>14.0f} | {str(peak <= DEFAULT_CHUNK_BYTES):>12} |")


if __name__ == "__main__":
    main()
