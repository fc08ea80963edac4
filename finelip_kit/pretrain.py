"""Stage 1 of the embedded experiment: a tiny CLIP pretrained the way CLIP was.

The ``tiny`` architecture at a 77-token context, trained from scratch with InfoNCE on the
synthetic scenes paired with their short alt-text-like captions (1-3 objects, under 20
tokens) — so its early text positions are well trained and the later ones are not.
``finelip pretrain-tiny --out <dir>`` runs it; the result ships as ``tiny-synthetic-clip``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from .data import SyntheticScenes
from .evaluate import evaluate_retrieval
from .model import create_model
from .train import TrainConfig, Trainer

BASE_MODEL = {"text.context_length": 77, "text.stretch": "none", "use_atrm": False, "use_clim": False, "loss": "global"}
PRETRAIN = dict(seed=0, steps=600, batch_size=128, lr=2e-3, warmup_steps=50, eval_pairs=1000)


class CaptionView:
    """Records whose ``caption`` is taken from another field (``alt_caption``, ``short_caption``)."""

    def __init__(self, records, field: str):
        self.records, self.field = records, field

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = dict(self.records[index])
        record["caption"] = record[self.field]
        return record


def pretrain_tiny(out_dir: str | Path, steps: int = PRETRAIN["steps"], seed: int = PRETRAIN["seed"],
                  progress: bool = True) -> dict[str, Any]:
    """Train the tiny base, evaluate it, write it as a packaged-model folder; returns its metrics."""
    from .assets import TOKEN_ROWS, save_asset

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    model = create_model("tiny", **BASE_MODEL)
    initial_rows = model.state_dict()[TOKEN_ROWS].clone()
    config = TrainConfig(out_dir=str(out_dir / "run"), steps=steps, batch_size=PRETRAIN["batch_size"],
                         lr_backbone=PRETRAIN["lr"], lr_new=PRETRAIN["lr"], warmup_steps=PRETRAIN["warmup_steps"],
                         seed=seed, progress=progress, log_every=50, eval_modes=("global",), keep_last=1)
    started = time.perf_counter()
    history = Trainer(model, CaptionView(SyntheticScenes(split="train"), "alt_caption"), config).fit()
    seconds = time.perf_counter() - started
    metrics = {"seed": seed, "steps": steps, "train_seconds": round(seconds, 1), **base_metrics(model),
               "loss": {r["step"]: r["loss"] for r in history if "loss" in r}}
    from .data.synthetic import vocabulary_token_ids

    changed = (model.state_dict()[TOKEN_ROWS] != initial_rows).any(dim=1).nonzero().flatten().tolist()
    used = torch.tensor(sorted(set(changed) | set(vocabulary_token_ids())))
    save_asset(model, out_dir, used, metrics)
    return metrics


def base_metrics(model, pairs: int = PRETRAIN["eval_pairs"]) -> dict[str, float]:
    """R@1 on the synthetic validation split with alt-text captions and with long captions
    (cut to the model's context), and within-group accuracy on the long ones."""
    val = SyntheticScenes(split="val", size=pairs)
    short = evaluate_retrieval(model, CaptionView(val, "alt_caption"), modes=("global",))
    long = evaluate_retrieval(model, val, modes=("global",))
    return {
        "alt/i2t/R@1": round(short["global/i2t/R@1"], 2),
        "alt/t2i/R@1": round(short["global/t2i/R@1"], 2),
        "long/i2t/R@1": round(long["global/i2t/R@1"], 2),
        "long/t2i/R@1": round(long["global/t2i/R@1"], 2),
        "long/group/t2i": round(long["global/group/t2i"], 2),
    }
