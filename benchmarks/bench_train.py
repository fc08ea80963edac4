"""Training throughput of the ``synthetic-tiny`` preset on this machine.

    python benchmarks/bench_train.py [--steps 10] [--batch-size 64] [--loss fine] [--compare-execution]

Prints samples/s, the time per step split into data / forward / backward / optimiser,
peak RSS, and the achieved FLOP/s (FLOPs counted by torch's FlopCounterMode on one
step) as a fraction of this machine's measured fp32 matmul throughput. With
``--compare-execution``, also the same steps under each execution choice side by side
(fused SDPA attention, the eager reference, gradient checkpointing, the fused AdamW kernel
against PyTorch's default, the for-loop on CPU): ms per step and ratios.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from finelip_kit import create_model, get_tokenizer
from finelip_kit.data import Collate, PairDataset, SyntheticScenes, clip_transform
from finelip_kit.recipe import TRAIN_PRESETS
from finelip_kit.train import parameter_groups
from finelip_kit.train.execution import adamw


def matmul_throughput(size: int = 2048, repeats: int = 5) -> float:
    a, b, out = torch.randn(size, size), torch.randn(size, size), torch.empty(size, size)
    torch.mm(a, b, out=out)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = max(best, 2 * size**3 / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=TRAIN_PRESETS["synthetic-tiny"]["train"]["batch_size"])
    parser.add_argument("--loss", default=None, help="override the model's loss recipe (fine, global, global+fine)")
    parser.add_argument("--compare-execution", action="store_true",
                        help="also time sdpa / eager attention and gradient checkpointing side by side")
    args = parser.parse_args()
    torch.manual_seed(0)
    overrides = {"loss": args.loss} if args.loss else {}
    model = create_model("tiny", **overrides)
    model.train()
    dataset = PairDataset(SyntheticScenes(split="train", size=args.batch_size * (args.steps + 3)), clip_transform(model.config.vision))
    collate = Collate(get_tokenizer(context_length=model.context_length))
    optimizer = adamw(parameter_groups(model, 1e-4, 1e-3, 0.01), (0.9, 0.98), 1e-6, "auto", torch.device("cpu"))

    def batch(i: int):
        return collate([dataset[j] for j in range(i * args.batch_size, (i + 1) * args.batch_size)])

    with FlopCounterMode(display=False) as counter:
        model(batch(0))["loss"].backward()
    flops = counter.get_total_flops()
    optimizer.zero_grad()
    for i in range(2):  # warm-up
        model(batch(i))["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
    times = {"data": 0.0, "forward": 0.0, "backward": 0.0, "optimiser": 0.0}
    lengths = []
    for i in range(args.steps):
        t0 = time.perf_counter()
        b = batch(i + 3)
        t1 = time.perf_counter()
        loss = model(b)["loss"]
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        for key, seconds in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            times[key] += seconds / args.steps
        lengths.append(b["input_ids"].shape[1])
    step = sum(times.values())
    compute = times["forward"] + times["backward"] + times["optimiser"]
    peak = matmul_throughput()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    params = sum(p.numel() for p in model.parameters())
    print(f"synthetic-tiny training step: batch {args.batch_size}, loss {model.config.loss!r}, {params / 1e6:.2f} M parameters, "
          f"text length {min(lengths)}-{max(lengths)} tokens, {torch.get_num_threads()} threads\n")
    print(f"| {'part':<10} | {'ms / step':>9} | {'share':>6} |")
    print(f"|{'-' * 12}|{'-' * 11}|{'-' * 8}|")
    for key, seconds in times.items():
        print(f"| {key:<10} | {1000 * seconds:>9.1f} | {100 * seconds / step:>5.1f}% |")
    print(f"| {'total':<10} | {1000 * step:>9.1f} | {'':>6} |")
    print(f"\nsamples/s: {args.batch_size / step:.1f} (compute only: {args.batch_size / compute:.1f})")
    print(f"peak RSS: {rss:.0f} MiB")
    print(f"FLOPs per step (forward + backward): {flops / 1e9:.2f} GFLOP; achieved {flops / compute / 1e9:.1f} GFLOP/s "
          f"= {100 * flops / compute / peak:.1f}% of the measured fp32 matmul throughput ({peak / 1e9:.1f} GFLOP/s)")
    if args.compare_execution:
        fused = adamw(parameter_groups(model, 1e-4, 1e-3, 0.01), (0.9, 0.98), 1e-6, "fused", torch.device("cpu"))
        compare_execution(model, {"default": optimizer, "fused": fused}, [batch(i + 3) for i in range(args.steps)])


def compare_execution(model, optimizers, batches, rounds: int = 3) -> None:
    """Forward + backward + step of the same batches under each execution choice, interleaved
    over ``rounds`` so drift on a noisy machine hits every variant alike; the best round counts.
    ``optimizers``: AdamW over the model's parameters with PyTorch's default kernel (the for-loop
    on CPU, what the trainer uses there) and with the fused one."""
    variants = {"sdpa (default)": ("sdpa", False, "default"), "eager attention": ("eager", False, "default"),
                "sdpa + grad checkpointing": ("sdpa", True, "default"), "sdpa + fused AdamW": ("sdpa", False, "fused")}
    best = {name: float("inf") for name in variants}
    for _ in range(rounds):
        for name, (attention, checkpointing, kernel) in variants.items():
            model.set_attention(attention).set_grad_checkpointing(checkpointing)
            optimizer = optimizers[kernel]
            start = time.perf_counter()
            for b in batches:
                model(b)["loss"].backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            best[name] = min(best[name], (time.perf_counter() - start) / len(batches))
    model.set_attention("sdpa").set_grad_checkpointing(False)
    base = best["sdpa (default)"]
    print(f"\n| execution | ms / step (best of {rounds}) | ÷ sdpa |")
    print("|---|---|---|")
    for name, seconds in best.items():
        print(f"| {name} | {1000 * seconds:.1f} | {seconds / base:.2f} |")


if __name__ == "__main__":
    main()
