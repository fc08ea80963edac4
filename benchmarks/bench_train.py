"""Training throughput of the ``synthetic-tiny`` preset on this machine.

    python benchmarks/bench_train.py [--steps 10] [--batch-size 64] [--loss fine] [--compare-execution] [--epoch-restart]

Prints samples/s, the time per step split into data / forward / backward / optimiser,
peak RSS, and the achieved FLOP/s (FLOPs counted by torch's FlopCounterMode on one
step) as a fraction of this machine's measured fp32 matmul throughput. With
``--compare-execution``, also the same steps under each execution choice side by side
(fused SDPA attention, the eager reference, gradient checkpointing, the fused AdamW kernel
against PyTorch's default, the for-loop on CPU): ms per step and ratios, and the optimiser step
alone under each AdamW kernel. With ``--epoch-restart``, what a new epoch costs the Trainer's
DataLoader: the wait for each epoch's first batch against the others, with 0 and 2 workers
(the case for persistent workers).
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
                        help="also time sdpa / eager attention, gradient checkpointing and the AdamW kernels side by side")
    parser.add_argument("--epoch-restart", action="store_true",
                        help="only time each epoch's first batch against the others (DataLoader workers restarting)")
    args = parser.parse_args()
    if args.epoch_restart:
        epoch_restart()
        return
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
    optimiser_alone(model)


def optimiser_alone(model, rounds: int = 5, steps: int = 20) -> None:
    """One AdamW step over the model's parameters (random gradients) under each kernel, interleaved
    over ``rounds``; the best round counts. A whole step's ratio on a shared 2-core machine cannot
    resolve a few percent; this can."""
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    kernels = {"PyTorch's default (auto on CPU)": "auto", "foreach": "foreach", "fused": "fused"}
    optimisers = {name: adamw(parameter_groups(model, 1e-4, 1e-3, 0.01), (0.9, 0.98), 1e-6, kernel, torch.device("cpu"))
                  for name, kernel in kernels.items()}
    best = dict.fromkeys(kernels, float("inf"))
    with torch.no_grad():
        for _ in range(rounds):
            for name, optimiser in optimisers.items():
                optimiser.step()  # its state exists before the timing
                start = time.perf_counter()
                for _ in range(steps):
                    optimiser.step()
                best[name] = min(best[name], (time.perf_counter() - start) / steps)
    model.zero_grad(set_to_none=True)
    base = best["PyTorch's default (auto on CPU)"]
    parameters = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"\n| AdamW step alone ({parameters:.1f} M parameters) | ms (best of {rounds} x {steps}) | ÷ default |")
    print("|---|---|---|")
    for name, seconds in best.items():
        print(f"| {name} | {1000 * seconds:.1f} | {seconds / base:.2f} |")


def epoch_restart(pairs: int = 512, batch_size: int = 64, epochs: int = 5) -> None:
    """The Trainer over ``epochs`` short epochs: the data wait of each epoch's first batch (the
    DataLoader's workers start again) against every other batch's, with 0 and 2 workers."""
    import tempfile

    from finelip_kit.train import TrainConfig, Trainer

    steps_per_epoch = pairs // batch_size
    print(f"| workers | first batch of an epoch, ms (mean of {epochs}) | other batches, ms | wall s |")
    print("|---|---|---|---|")
    for workers in (0, 2):
        torch.manual_seed(0)
        model = create_model("tiny", **{"text.context_length": 77, "text.stretch": "none", "use_atrm": False,
                                        "use_clim": False, "loss": "global"})
        with tempfile.TemporaryDirectory() as folder:
            config = TrainConfig(out_dir=folder, steps=epochs * steps_per_epoch, batch_size=batch_size,
                                 num_workers=workers, log_every=1, progress=False)
            start = time.perf_counter()
            history = Trainer(model, SyntheticScenes(split="train", size=pairs), config).fit()
            wall = time.perf_counter() - start
        waits = [record["data_s"] for record in history if "data_s" in record]
        first = [w for i, w in enumerate(waits) if i % steps_per_epoch == 0]
        rest = [w for i, w in enumerate(waits) if i % steps_per_epoch]
        print(f"| {workers} | {1000 * sum(first) / len(first):.0f} | {1000 * sum(rest) / len(rest):.1f} | {wall:.1f} |")


if __name__ == "__main__":
    main()
