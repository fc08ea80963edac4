"""The check to make before renting 8 GPUs for a day: the paper recipe's shape end to end on the
devices present, with synthetic 224 px data.

    python benchmarks/smoke_paper.py [--steps 200] [--out /tmp/finelip-smoke]
    python benchmarks/smoke_paper.py --tiny            # the same at toy size on CPU (2 gloo processes)

Runs ``finelip train --preset paper-b16`` (fresh clip-b16 weights: nothing is downloaded; 248
tokens, ATRM at the paper's K, CLIM, batch 128 per process x 4 accumulation, bf16 on CUDA) under
torchrun with one process per GPU, checkpointing halfway; then a second run resumed from that
halfway checkpoint to the same end; then compares the two final models (bitwise on CPU; on a GPU
the difference left by non-deterministic kernels is printed) and prints the run's evaluation on
synthetic test pairs, its throughput and its wall time.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch


def train(out: Path, processes: int, settings: list[str], preset: str, model: str) -> float:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "finelip_kit.cli", "train", "--preset", preset, "--model", model, "--data", "synthetic",
               "--out", str(out), "--set", *settings]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)}\nfailed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--out", default="/tmp/finelip-smoke")
    parser.add_argument("--tiny", action="store_true", help="toy size on CPU: the tiny model, 64 px, 2 processes")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    gpus = torch.cuda.device_count()
    processes = max(1, gpus) if not args.tiny else 2
    steps = args.steps if not args.tiny else 6
    half = steps // 2
    if args.tiny:
        preset, model = "synthetic-tiny", "tiny"
        settings = ["model.vision.image_size=32", "model.atrm_k=4", "data.image_size=32", "batch_size=8",
                    "accumulation=2", "eval.size=32", "eval.reference=false", "device=cpu"]
    else:
        preset, model = "paper-b16", "clip-b16"
        settings = ["data.image_size=224", "data.test_split=test", "eval.size=2000", "warmup_steps=20",
                    "eval_every=null"]
    settings += [f"steps={steps}", f"save_every={half}", "keep_last=4", "log_every=10", "progress=false"]
    straight = train(out / "straight", processes, settings, preset, model)
    middle = out / "straight" / "checkpoints" / f"step_{half:07d}"
    resumed = train(out / "resumed", processes, [*settings, f"resume={middle}"], preset, model)

    from finelip_kit.pretrained import read_state_dict

    a = read_state_dict(out / "straight" / "model" / "model.safetensors")
    b = read_state_dict(out / "resumed" / "model" / "model.safetensors")
    difference = max(float((a[k].float() - b[k].float()).abs().max()) for k in a if a[k].numel())
    record = json.loads((out / "straight.json").read_text())
    history = [json.loads(line) for line in (out / "straight" / "metrics.jsonl").read_text().splitlines()]
    rates = [h["samples_per_s"] for h in history if "samples_per_s" in h][1:]
    device = torch.cuda.get_device_name(0) if gpus and not args.tiny else "CPU"
    print(f"smoke run: {preset} shape ({model}), {processes} process(es) on {device}, {steps} steps\n")
    print("| check | result |\n|---|---|")
    print(f"| straight run, wall time | {straight:.0f} s (start-up, {steps} steps, evaluation) |")
    print(f"| resumed from step {half}, wall time | {resumed:.0f} s |")
    print(f"| final weights, resumed vs straight | max abs difference {difference:.3g}"
          f"{' (bitwise equal)' if difference == 0 else ''} |")
    print(f"| throughput (logged steps after the first) | {sum(rates) / max(1, len(rates)):,.0f} samples/s |")
    print(f"| loss first -> last | {history[0]['loss']:.3f} -> {[h for h in history if 'loss' in h][-1]['loss']:.3f} |")
    metrics = record["metrics"]
    scores = ", ".join(f"{k} {metrics[k]:.1f}" for k in ("global/i2t/R@1", "global/t2i/R@1", "fine/t2i/R@1") if k in metrics)
    print(f"| evaluation ({record['test_pairs']} synthetic test pairs) | {scores} |")


if __name__ == "__main__":
    main()
