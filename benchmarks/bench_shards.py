"""Training-data throughput: webdataset shards against the image folder they were written from.

    python benchmarks/bench_shards.py [--pairs 20000] [--shard-size 2000] [--batch-size 64]

Writes ``--pairs`` synthetic pairs as the kit's own-data folder (PNG files + JSONL), loads them
with ``load_pairs`` and writes them as shards with ``write_shards``; then reads one epoch the way
the trainer does (the map-style folder: ``SeededPairs`` + ``EpochSampler``; the shards:
``ShardEpoch``), decoded, transformed and collated, with 0 and 2 DataLoader workers, side by
side in one run. Prints a table of pairs/s and the shard/folder ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from finelip_kit import get_tokenizer, preset
from finelip_kit.data import Collate, SyntheticScenes, clip_transform, load_pairs, write_jsonl
from finelip_kit.data.shards import ShardEpoch, write_shards
from finelip_kit.train.sampling import EpochSampler, SeededPairs


def epoch_rate(loader) -> tuple[int, float]:
    start = time.perf_counter()
    seen = sum(batch["images"].shape[0] for batch in loader)
    return seen, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20_000)
    parser.add_argument("--shard-size", type=int, default=2_000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = parser.parse_args()
    config = preset("tiny")
    transform = clip_transform(config.vision, train=True)
    collate = Collate(get_tokenizer(context_length=config.text.context_length))
    setup, rows = [], []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        start = time.perf_counter()
        manifest = write_jsonl(SyntheticScenes(split="train", size=args.pairs), folder / "own")
        setup.append(("write the image folder (PNG + JSONL)", time.perf_counter() - start))
        start = time.perf_counter()
        pairs = load_pairs(manifest, verify="header")
        setup.append(("load_pairs of the folder (verify='header')", time.perf_counter() - start))
        report = write_shards(pairs, folder / "shards", shard_size=args.shard_size)
        setup.append((f"write_shards ({report.shards} shards, {report.bytes / 2**20:.0f} MiB)", report.seconds))
        start = time.perf_counter()
        shards = load_pairs(f"wds:{folder}/shards/")
        setup.append(("load_pairs('wds:...') with the manifest", time.perf_counter() - start))
        (folder / "shards" / "shards.json").unlink()
        start = time.perf_counter()
        load_pairs(f"wds:{folder}/shards/", verify="none")
        setup.append(("load_pairs('wds:...') scanning the headers", time.perf_counter() - start))
        for workers in args.workers:
            dataset = SeededPairs(pairs, transform, seed=0)
            sampler = EpochSampler(len(pairs), args.batch_size, seed=0)
            folder_loader = DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, collate_fn=collate,
                                       num_workers=workers, drop_last=True)
            shard_loader = DataLoader(ShardEpoch(shards, args.batch_size, transform=transform), batch_size=None,
                                      collate_fn=collate, num_workers=workers)
            folder_seen, folder_seconds = epoch_rate(folder_loader)
            shard_seen, shard_seconds = epoch_rate(shard_loader)
            rows.append((workers, folder_seen / folder_seconds, shard_seen / shard_seconds, folder_seen, shard_seen))

    print(f"Training-data throughput ({torch.get_num_threads()} threads, {args.pairs} synthetic pairs, 64 px PNG, "
          f"batch {args.batch_size}, shards of {args.shard_size})\n")
    print(f"| {'set-up step':<48} | seconds |")
    print(f"|{'-' * 50}|---------|")
    for name, seconds in setup:
        print(f"| {name:<48} | {seconds:>7.2f} |")
    print("\n| workers | folder pairs/s | shards pairs/s | shards / folder | pairs per epoch |")
    print("|---------|----------------|----------------|-----------------|-----------------|")
    for workers, folder_rate, shard_rate, folder_seen, shard_seen in rows:
        print(f"| {workers:>7} | {folder_rate:>14,.0f} | {shard_rate:>14,.0f} | {shard_rate / folder_rate:>15.2f} | "
              f"{folder_seen:>7} / {shard_seen:<7} |")


if __name__ == "__main__":
    main()
