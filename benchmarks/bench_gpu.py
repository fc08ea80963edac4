"""The GPU path, side by side with open_clip: one training step of FineLIP (248 tokens, ATRM at
the paper's K, CLIM) against open_clip's own CLIP step at the same batch, plus CLIM gallery scoring.

    python benchmarks/bench_gpu.py                               # clip-b16 and clip-l14, batch 128 and 256
    python benchmarks/bench_gpu.py --models clip-b16 --batches 256 --steps 20
    python benchmarks/bench_gpu.py --tiny                        # the whole script at toy size (CPU-tested)

Prints, for each model, batch and grad-cache setting: samples/s, the step split into data
(host→device copy) / forward / backward / optimiser (grad cache on: the forward column holds
the whole encode / loss / re-encode / backward, in two micro-batches), peak memory, and MFU (the step's model
FLOPs, counted by torch's FlopCounterMode, per second ÷ the device's bf16 matmul throughput
measured in the same run); then open_clip's ViT-B-16 step (random weights, its 77-token text,
its ClipLoss) at the same batch and the ratio of the two step times (the headline; goal ≤ 1.3);
then, for the first model and batch, the trainer's execution defaults and each choice flipped
alone (eager attention, TF32 off, each AdamW kernel, pageable batches, checkpointing,
compiled towers); then CLIM scoring of a gallery (5k × 5k at the paper's K) against its GEMM
floor, beside the same scorer with its late interaction compiled and the fused Triton kernel
(``finelip_kit.clim_fused``, CUDA), and the two-stage rerank (global top-50, then CLIM) against
full CLIM. Nothing here is a test of speed: it prints what it measured, with the device's name.
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import torch
from torch.utils.flop_counter import FlopCounterMode

from finelip_kit import clim, create_model, preset
from finelip_kit.clim import clim_candidate_scores, clim_scores
from finelip_kit.clim_fused import clim_scores_fused
from finelip_kit.train import TrainConfig, parameter_groups
from finelip_kit.train.execution import adamw, matmul_precision, pin_memory, tf32_setting

# The trainer's execution defaults (TrainConfig's own, and pinned host batches on CUDA); the
# options table flips one at a time.
PHASES = ("data", "forward", "backward", "optimiser")
DEFAULTS = {**{key: getattr(TrainConfig(), key) for key in ("attention", "tf32", "adamw_kernel", "grad_checkpointing",
                                                             "compile")}, "pinned": True}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int, repeats: int = 10) -> float:
    """The best FLOP/s of a square GEMM in ``dtype`` on ``device`` (the denominator of MFU)."""
    a, b = torch.randn(size, size, device=device, dtype=dtype), torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    sync(device)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync(device)
        best = max(best, 2 * size**3 / (time.perf_counter() - start))
    return best


def synthetic_batch(batch: int, image_size: int, context: int, vocab: int, generator: torch.Generator) -> dict:
    """A model-ready batch on the host: random pixels, captions of 100..context-1 tokens ending in EOT."""
    lengths = torch.randint(100, context, (batch,), generator=generator) if context > 101 else torch.full((batch,), context - 1)
    ids = torch.randint(1, vocab - 2, (batch, context), generator=generator)
    positions = torch.arange(context)[None]
    ids = torch.where(positions < lengths[:, None], ids, vocab - 1)  # pad with EOT's id (CLIP's)
    ids[:, 0] = vocab - 2  # BOS
    mask = (positions <= lengths[:, None]).long()
    return {"images": torch.randn(batch, 3, image_size, image_size, generator=generator),
            "input_ids": ids, "attention_mask": mask, "image_ids": torch.arange(batch)}


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def time_finelip(model, batches, device, dtype, grad_cache: bool, options: dict | None = None) -> dict:
    """Mean seconds per phase over ``batches`` (after one warm-up step, whose own time is returned as
    ``first``); grad cache: the whole step as the trainer runs it (encode without a graph, loss,
    re-encode with the cached gradients). ``options``: the execution choices (``DEFAULTS``' keys)."""
    from finelip_kit.data import SyntheticConfig, SyntheticScenes
    from finelip_kit.train import Trainer

    options = {**DEFAULTS, **(options or {})}
    model.set_attention(options["attention"]).set_grad_checkpointing(options["grad_checkpointing"])
    optimizer = adamw(parameter_groups(model, 1e-6, 2e-4, 0.01), (0.9, 0.98), 1e-6, options["adamw_kernel"], device)
    if options["pinned"] and pin_memory(device):
        batches = [{k: v.pin_memory() for k, v in b.items()} for b in batches]
    trainer = None
    if grad_cache:
        tiny_data = SyntheticScenes(SyntheticConfig(image_size=model.config.vision.image_size), split="train", size=4)
        config = TrainConfig(out_dir="/tmp/finelip-bench-unused", batch_size=2, grad_cache=True, progress=False,
                             device=str(device), precision="bf16" if dtype is torch.bfloat16 else "fp32",
                             attention=options["attention"], grad_checkpointing=options["grad_checkpointing"])
        trainer = Trainer(model, tiny_data, config)
        trainer.optimizer = optimizer
    totals = dict.fromkeys(PHASES, 0.0)
    with matmul_precision(tf32_setting(options["tf32"], device)):
        for index, host in enumerate([batches[0], *batches]):
            sync(device)
            t0 = time.perf_counter()
            batch = to_device(host, device)
            sync(device)
            t1 = time.perf_counter()
            if trainer is not None:  # two micro-batches, the contrastive batch whole
                half = host["images"].shape[0] // 2
                micro = [{k: v[:half] for k, v in batch.items()}, {k: v[half:] for k, v in batch.items()}]
                trainer._grad_cache_backward([{**m, "stats": {}} for m in micro], {})
                sync(device)
                t2 = t3 = time.perf_counter()
            else:
                with autocast(device, dtype):
                    loss = model(batch)["loss"]
                sync(device)
                t2 = time.perf_counter()
                loss.backward()
                sync(device)
                t3 = time.perf_counter()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            sync(device)
            t4 = time.perf_counter()
            if index:  # the first is the warm-up (with compile: the compilation)
                for key, seconds in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                    totals[key] += seconds / len(batches)
            else:
                first = t4 - t0
    model.set_attention("sdpa").set_grad_checkpointing(False)
    return {**totals, "first": first}


def execution_options(name: str, overrides: dict, batch_size: int, steps: int, device, dtype, generator,
                      compile_backend: str) -> None:
    """One FineLIP step (grad cache off) under the trainer's defaults, then with each execution
    choice flipped alone, side by side in this run: what each one buys."""
    rows = [("the trainer's defaults (SDPA, TF32, AdamW auto, pinned)", {}),
            ("attention eager", {"attention": "eager"}),
            ("TF32 off (IEEE float32 matmuls)", {"tf32": False}),
            ("AdamW foreach", {"adamw_kernel": "foreach"}),
            ("AdamW for-loop", {"adamw_kernel": "for-loop"}),
            ("AdamW fused", {"adamw_kernel": "fused"}),
            ("pageable host batches", {"pinned": False}),
            ("gradient checkpointing", {"grad_checkpointing": True}),
            (f"towers compiled ({compile_backend})", {"compile": compile_backend})]
    torch.manual_seed(0)
    model = create_model(name, **overrides).to(device).train()
    hosts = [synthetic_batch(batch_size, model.config.vision.image_size, model.context_length,
                             model.config.text.vocab_size, generator) for _ in range(steps)]
    print(f"\n| execution ({name}, batch {batch_size}, grad cache off) | step ms | ÷ defaults | first step s | "
          f"data ms | peak memory |\n|---|---|---|---|---|---|")
    baseline = None
    for label, options in rows:
        if options.get("compile"):  # in place, as the trainer does; last, since it stays compiled
            model.compile_towers(options["compile"])
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        try:
            parts = time_finelip(model, hosts, device, dtype, grad_cache=False, options=options)
        except torch.OutOfMemoryError:
            print(f"| {label} | out of memory | | | | |")
            torch.cuda.empty_cache()
            continue
        step = sum(parts[k] for k in PHASES)
        baseline = baseline or step
        memory = f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB" if device.type == "cuda" else "–"
        print(f"| {label} | {1000 * step:.0f} | {step / baseline:.2f} | {parts['first']:.1f} | "
              f"{1000 * parts['data']:.1f} | {memory} |")
    del model


def step_flops(model, batch, device, dtype) -> float:
    with FlopCounterMode(display=False) as counter, autocast(device, dtype):
        model(to_device(batch, device))["loss"].backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def time_open_clip(batch_size: int, image_size: int, steps: int, device, dtype, tiny: bool) -> float | None:
    """Seconds per training step of open_clip's own ViT-B-16 (random weights, 77 tokens, ClipLoss)."""
    try:
        import open_clip
    except ImportError:
        return None
    if tiny:
        config = {"embed_dim": 64, "vision_cfg": {"image_size": image_size, "layers": 3, "width": 96, "patch_size": 8},
                  "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 96, "heads": 3, "layers": 3}}
        model = open_clip.model.CLIP(**config)
    else:
        model = open_clip.create_model("ViT-B-16", pretrained=None)
    model = model.to(device).train()
    loss_fn = open_clip.ClipLoss()
    optimizer = adamw([{"params": list(model.parameters()), "lr": 1e-4}], (0.9, 0.999), 1e-8, "auto", device)  # the same kernel
    generator = torch.Generator().manual_seed(1)
    hosts = [(torch.randn(batch_size, 3, image_size, image_size, generator=generator),
              torch.randint(0, 49407, (batch_size, 77), generator=generator)) for _ in range(steps + 1)]
    total = 0.0
    for index, (images, texts) in enumerate(hosts):
        sync(device)
        start = time.perf_counter()
        images, texts = images.to(device, non_blocking=True), texts.to(device, non_blocking=True)
        with autocast(device, dtype):
            image_features, text_features, logit_scale = model(images, texts)[:3]
            loss = loss_fn(image_features, text_features, logit_scale)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        if index:
            total += (time.perf_counter() - start) / steps
    return total


def gallery(n: int, k: int, d: int, device, peak_fp32: float, generator, compile_backend: str) -> list[tuple[str, float, str]]:
    """CLIM over an ``n × n`` gallery of ``k`` tokens each (d dims): full, its GEMM floor, the same
    chunked scorer with its late interaction (mask, max, mean) compiled, the fused Triton kernel
    (CUDA), and the two-stage rerank."""
    images = torch.nn.functional.normalize(torch.randn(n, k, d, generator=generator), dim=-1).to(device)
    texts = torch.nn.functional.normalize(torch.randn(n, k, d, generator=generator), dim=-1).to(device)
    globals_i, globals_t = images.mean(1), texts.mean(1)

    def timed(score):
        score()  # warm-up (and, compiled, the compilation for these block shapes)
        sync(device)
        start = time.perf_counter()
        out = score()
        sync(device)
        return time.perf_counter() - start, out

    with torch.no_grad():
        full, reference = timed(lambda: clim_scores(images, texts))
        eager = clim._late_interaction
        clim._late_interaction = torch.compile(eager, backend=compile_backend)  # the candidate fused reduction
        try:
            fused, scores = timed(lambda: clim_scores(images, texts))
        finally:
            clim._late_interaction = eager
        difference = float((scores - reference).abs().max())
        if device.type == "cuda":  # the Triton kernel: similarities in registers, never written to memory
            kernel, kernel_scores = timed(lambda: clim_scores_fused(images, texts))
            kernel_row = (f"{full / kernel:.2f} x the chunked scorer's speed; scores within "
                          f"{float((kernel_scores - reference).abs().max()):.1e}")
        else:
            kernel, kernel_row = float("nan"), "CUDA only (Triton)"
        two_stage, _ = timed(lambda: clim_candidate_scores(images, texts, (globals_t @ globals_i.T).topk(min(50, n), dim=-1).indices, by="text"))
    floor = 2 * (n * k) ** 2 * d / peak_fp32
    return [(f"CLIM {n} x {n}, {k} tokens, d {d} (fp32)", full, f"{full / floor:.2f} x its GEMM floor ({floor:.3f} s)"),
            (f"CLIM, late interaction compiled ({compile_backend})", fused,
             f"{full / fused:.2f} x the chunked scorer's speed; scores within {difference:.1e}"),
            ("CLIM, fused Triton kernel (finelip_kit.clim_fused)", kernel, kernel_row),
            ("two-stage: global top-50, then CLIM (t2i)", two_stage, f"{full / two_stage:.1f} x faster than full CLIM")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["clip-b16", "clip-l14"])
    parser.add_argument("--batches", nargs="+", type=int, default=[128, 256])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--gallery", type=int, default=5000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile-backend", default="inductor", help="torch.compile backend of the compiled rows")
    parser.add_argument("--tiny", action="store_true", help="toy sizes (the tiny preset, 64 px, batch 8; compile with "
                                                            "aot_eager, not inductor's minutes of C++ builds): runs on CPU")
    args = parser.parse_args()
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else None  # the trainer's precision: bf16 on CUDA, fp32 on CPU
    if args.tiny:
        args.models, args.batches, args.steps, args.gallery = ["tiny"], [8], 2, 200
        args.compile_backend = "aot_eager"
    generator = torch.Generator().manual_seed(0)
    size = 512 if args.tiny else 8192
    peak = matmul_peak(device, dtype or torch.float32, size)
    peak_fp32 = peak if dtype is None else matmul_peak(device, torch.float32, size)
    print(f"device: {device_name(device)}; torch {torch.__version__}; precision {dtype or torch.float32}; "
          f"measured matmul peak {peak / 1e12:.1f} TFLOP/s ({dtype or torch.float32}), {peak_fp32 / 1e12:.1f} (fp32)\n")
    print("| model | batch | grad cache | samples/s | step ms | data | forward | backward | optimiser | peak memory | MFU |"
          " open_clip B-16 step ms | ÷ open_clip |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    overrides = {"text.context_length": 248, "use_atrm": True, "use_clim": True, "loss": "fine"}
    if args.tiny:
        overrides.update({"vision.image_size": 64, "text.context_length": 200})
    for name in args.models:
        torch.manual_seed(0)
        model = create_model(name, **overrides).to(device).train()
        image_size, context = model.config.vision.image_size, model.context_length
        for batch_size in args.batches:
            hosts = [synthetic_batch(batch_size, image_size, context, model.config.text.vocab_size, generator)
                     for _ in range(args.steps)]
            flops = step_flops(model, hosts[0], device, dtype)
            reference = time_open_clip(batch_size, image_size, args.steps, device, dtype, args.tiny) if name != "clip-l14" else None
            for grad_cache in (False, True):
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                try:
                    parts = time_finelip(model, hosts, device, dtype, grad_cache)
                except torch.OutOfMemoryError:
                    print(f"| {name} | {batch_size} | {'on' if grad_cache else 'off'} | out of memory |" + " |" * 9)
                    torch.cuda.empty_cache()
                    continue
                step = sum(parts[k] for k in PHASES)
                memory = (f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB" if device.type == "cuda" else "–")
                mfu = flops / (step - parts["data"]) / peak
                against = f"{1000 * reference:.0f} | {step / reference:.2f}" if reference else "– | –"
                split = " | ".join(f"{1000 * parts[k]:.0f}" for k in PHASES)
                print(f"| {name} | {batch_size} | {'on' if grad_cache else 'off'} | {batch_size / step:,.0f} | "
                      f"{1000 * step:.0f} | {split} | {memory} | {100 * mfu:.1f}% | {against} |")
        del model
    execution_options(args.models[0], overrides, args.batches[0], args.steps, device, dtype, generator, args.compile_backend)
    k = 8 if args.tiny else preset("clip-b16").atrm_k
    print("\n| gallery scoring | seconds | |\n|---|---|---|")
    for label, seconds, note in gallery(args.gallery, k, 64 if args.tiny else 512, device, peak_fp32, generator,
                                        args.compile_backend):
        print(f"| {label} | {seconds:.3f} | {note} |")


if __name__ == "__main__":
    main()
