"""CLIM scoring at gallery scale on this machine: vectorised vs per-caption loop vs the GEMM floor.

    python benchmarks/bench_clim.py [--images 1000] [--texts 1000] [--tokens 40] [--dim 512]

Prints one table. The GEMM floor is the problem's FLOPs (2·I·a·T·b·d) divided by the best
fp32 matmul throughput measured here with the same inner dimension. Peak extra memory
is the resident set above the baseline, sampled every 0.5 ms while the call runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from finelip_kit.math.clim import DEFAULT_CHUNK_BYTES, clim_scores

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from reference import clim_scores_loop  # noqa: E402  (tests/reference.py: the obvious loop)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed_with_peak_memory(fn):
    """(result, seconds, peak extra resident bytes)."""
    baseline, peak, done = rss_bytes(), [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], rss_bytes() - baseline)
            time.sleep(0.0005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return result, seconds, max(peak[0], rss_bytes() - baseline)


def clim_scores_official_style(image_tokens: torch.Tensor, text_tokens: torch.Tensor, slope: float = 0.1) -> torch.Tensor:
    """The official FineLIP evaluation's shape of loop: per caption, repeat it over the images,
    one bmm, leaky ReLU on the full map, then the two max-mean reductions."""
    images, texts = F.normalize(image_tokens, dim=-1), F.normalize(text_tokens, dim=-1)
    columns = []
    for t in range(texts.shape[0]):
        caption = texts[t].unsqueeze(0).repeat(images.shape[0], 1, 1)  # (i, b, d)
        sim = F.leaky_relu(torch.bmm(caption, images.transpose(1, 2)), slope)  # (i, b, a)
        columns.append(sim.max(dim=2).values.mean(1) + sim.max(dim=1).values.mean(1))
    return torch.stack(columns, dim=1)


def matmul_throughput(inner: int, repeats: int = 3) -> float:
    """Best fp32 FLOP/s over a few large GEMMs with inner dimension ``inner``."""
    best = 0.0
    for m, n in ((4096, 4096), (8192, 4096), (4096, 8192)):
        a, b, out = torch.randn(m, inner), torch.randn(inner, n), torch.empty(m, n)
        torch.mm(a, b, out=out)
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            best = max(best, 2 * m * n * inner / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=40)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--chunk-mib", type=int, default=DEFAULT_CHUNK_BYTES >> 20)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    images = torch.randn(args.images, args.tokens, args.dim)
    texts = torch.randn(args.texts, args.tokens, args.dim)
    budget = args.chunk_mib << 20
    flops = 2 * args.images * args.tokens * args.texts * args.tokens * args.dim
    throughput = matmul_throughput(args.dim)
    floor = flops / throughput

    with torch.no_grad():
        clim_scores(images[:50], texts[:50], chunk_bytes=budget)  # warm-up
        runs = [timed_with_peak_memory(lambda: clim_scores(images, texts, chunk_bytes=budget)) for _ in range(args.repeats)]
        fast, fast_s, fast_mem = min(runs, key=lambda r: r[1])
        peak_mem = max(r[2] for r in runs)
        loop, loop_s, loop_mem = timed_with_peak_memory(lambda: clim_scores_loop(images, texts))
        official, official_s, official_mem = timed_with_peak_memory(lambda: clim_scores_official_style(images, texts))
    diff = max((fast - loop).abs().max().item(), (fast - official).abs().max().item())

    print(f"CLIM scores, {args.images} images x {args.texts} texts, {args.tokens}x{args.tokens} tokens, d={args.dim}, fp32, "
          f"{torch.get_num_threads()} threads")
    print(f"fp32 matmul throughput (inner dim {args.dim}): {throughput / 1e9:.1f} GFLOP/s; problem: {flops / 1e12:.3f} TFLOP")
    print()
    rows = [
        ("GEMM floor", floor, None, "-"),
        ("vectorised clim_scores", fast_s, peak_mem, f"{fast_s / floor:.2f}x floor"),
        ("per-caption loop", loop_s, loop_mem, f"{loop_s / fast_s:.1f}x vectorised"),
        ("official-style loop", official_s, official_mem, f"{official_s / fast_s:.1f}x vectorised"),
    ]
    print(f"| {'method':<24} | {'seconds':>8} | {'peak extra MiB':>14} | {'ratio':<18} |")
    print(f"|{'-' * 26}|{'-' * 10}|{'-' * 16}|{'-' * 20}|")
    for name, seconds, memory, ratio in rows:
        mem = "-" if memory is None else f"{memory / 2**20:.0f}"
        print(f"| {name:<24} | {seconds:>8.2f} | {mem:>14} | {ratio:<18} |")
    print()
    print(f"memory budget (chunk_bytes): {args.chunk_mib} MiB; peak extra {peak_mem / 2**20:.0f} MiB "
          f"({'under' if peak_mem <= budget else 'OVER'} budget)")
    print(f"max |vectorised - loops| = {diff:.2e} ({'ok' if diff <= 1e-5 else 'ABOVE'} 1e-5)")
    print("per-caption loop: tests/reference.py clim_scores_loop (einsum over all images per caption); "
          "official-style: repeat + bmm per caption")
    targets = {
        "<=1.5x floor": fast_s <= 1.5 * floor,
        ">=5x per-caption loop": loop_s >= 5 * fast_s,
        ">=5x official-style loop": official_s >= 5 * fast_s,
        "equal to 1e-5": diff <= 1e-5,
        "under budget": peak_mem <= budget,
    }
    print("targets: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in targets.items()))


if __name__ == "__main__":
    main()
