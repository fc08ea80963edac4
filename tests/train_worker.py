"""Run under torchrun by tests/test_train.py: optimiser steps of the Trainer on fixed global
batches (mode "plain": 3, the others: 1), per-rank batch size from argv (mode "global": the global
one); rank 0 writes the checkpoint."""

import sys

import torch
import torch.distributed as dist

from finelip_kit import create_model
from finelip_kit.data import SyntheticConfig, SyntheticScenes
from finelip_kit.train import TrainConfig, Trainer


def main(out: str, batch_size: int, mode: str) -> None:
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    # mode "plain": FineLIP's triplet alone (the temperature sits out: DDP must find it unused) for 3
    # steps, across an epoch; the other modes: InfoNCE + triplet, one step
    loss = "fine" if mode == "plain" else "global+fine"
    model = create_model("tiny", **{"vision.image_size": 32, "text.context_length": 200, "atrm_k": 4}, loss=loss)
    model = model.double()  # float64: the comparison then sees the math, not float32 summation order
    data = SyntheticScenes(SyntheticConfig(image_size=32), split="train", size=16)
    accumulation = 2 if mode == "grad_cache" else 1
    # mode "global": batch_size is the global micro-batch (batch_scope="global"), split across the ranks here
    config = TrainConfig(out_dir=out, steps=3 if mode == "plain" else 1, batch_size=batch_size // accumulation, accumulation=accumulation,
                         grad_cache=mode == "grad_cache", warmup_steps=0, progress=False, grad_clip=None,
                         lr_backbone=1e-3, lr_new=1e-3, batch_scope="global" if mode == "global" else "process")
    Trainer(model, data, config).fit()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
