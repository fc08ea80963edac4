"""Data throughput on this machine, and the synthetic benchmark's caption facts.

    python benchmarks/bench_data.py [--pairs 3000]

Prints: synthetic generation (pairs/s, records and model-ready tensors), writing to disk,
load_pairs validation (images/s), and DataLoader throughput (images/s) with 0 and 2
workers; then the caption-length distribution measured with CLIP's real tokenizer.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from finelip_kit import get_tokenizer, preset
from finelip_kit.data import Collate, PairDataset, SyntheticScenes, clip_transform, load_pairs, write_jsonl


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3000)
    args = parser.parse_args()
    n = args.pairs
    config = preset("tiny")
    transform = clip_transform(config.vision)
    tokenizer = get_tokenizer(context_length=config.text.context_length)
    rows = []

    scenes = SyntheticScenes(split="train", size=n)
    start = time.perf_counter()
    records = list(scenes.records())
    rows.append(("synthetic records (PIL + captions)", n, time.perf_counter() - start, "pairs/s"))
    dataset = PairDataset(SyntheticScenes(split="train", size=n), transform)
    start = time.perf_counter()
    for i in range(n):
        dataset[i]
    rows.append(("synthetic, transformed to tensors", n, time.perf_counter() - start, "pairs/s"))

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        manifest = write_jsonl(scenes, folder)
        rows.append(("write JSONL + PNG to disk", n, time.perf_counter() - start, "pairs/s"))
        for verify in ("full", "header"):
            start = time.perf_counter()
            pairs = load_pairs(manifest, verify=verify)
            rows.append((f"load_pairs (verify={verify!r})", len(pairs), time.perf_counter() - start, "images/s"))
        collate = Collate(tokenizer)
        for workers in (0, 2):
            loader = DataLoader(PairDataset(pairs, transform), batch_size=64, num_workers=workers, collate_fn=collate)
            start = time.perf_counter()
            seen = sum(batch["images"].shape[0] for batch in loader)
            rows.append((f"DataLoader + collate, {workers} workers", seen, time.perf_counter() - start, "images/s"))

    print(f"Data throughput ({torch.get_num_threads()} threads, {n} pairs, 64 px synthetic images)\n")
    print(f"| {'stage':<38} | {'items':>6} | {'seconds':>8} | {'rate':>10} | unit     |")
    print(f"|{'-' * 40}|{'-' * 8}|{'-' * 10}|{'-' * 12}|----------|")
    for name, count, seconds, unit in rows:
        print(f"| {name:<38} | {count:>6} | {seconds:>8.2f} | {rate(count, seconds):>10} | {unit:<8} |")

    lengths = np.array(tokenizer.count_tokens([r["caption"] for r in records]))
    short = np.array(tokenizer.count_tokens([r["short_caption"] for r in records]))
    alt = np.array(tokenizer.count_tokens([r["alt_caption"] for r in records]))
    late = np.array([r["late_token"] for r in records[:: scenes.config.group_size]])
    groups = 0
    identical = 0
    for g in range(min(200, n // scenes.config.group_size)):
        members = [records[g * scenes.config.group_size + m]["caption"] for m in range(scenes.config.group_size)]
        ids = tokenizer(members, context_length=77).input_ids
        groups += 1
        identical += int((ids == ids[0]).all())
    print("\nCaption lengths with CLIP's tokenizer (BOS and EOT included):")
    for name, values in (("long caption", lengths), ("short (first sentence)", short), ("alt-text", alt)):
        p = np.percentile(values, [0, 5, 50, 95, 100]).astype(int).tolist()
        print(f"  {name:<22} min/p5/median/p95/max = {p}")
    print(f"  long captions over 77 tokens: {100 * (lengths > 77).mean():.1f}%; over 248: {100 * (lengths > 248).mean():.1f}%")
    print(f"  differing details start at caption token {int(late.min())}-{int(late.max())} (median {int(np.median(late))})")
    print(f"  groups whose 77-token truncations are identical: {identical}/{groups}")


if __name__ == "__main__":
    main()
