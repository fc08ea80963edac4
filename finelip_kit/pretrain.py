"""Stage 1 of the embedded experiment: a tiny CLIP pretrained the way CLIP was.

The ``tiny`` architecture at a 77-token context, trained from scratch with InfoNCE on the
synthetic scenes paired with their short alt-text-like captions (1-3 objects, under 20
tokens) — so its early text positions are well trained and the later ones are not.
``finelip pretrain-tiny --out <dir>`` runs it (through the one recipe, ``recipe.run``); the
result ships as ``tiny-synthetic-clip``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .data import CaptionView, SyntheticScenes
from .evaluate import evaluate_retrieval

BASE_MODEL = {"text.context_length": 77, "text.stretch": "none", "use_atrm": False, "use_clim": False, "loss": "global"}
PRETRAIN = dict(seed=0, steps=600, batch_size=128, lr=2e-3, warmup_steps=50, eval_pairs=1000)


def pretrain_settings(steps: int = PRETRAIN["steps"], seed: int = PRETRAIN["seed"]) -> dict[str, Any]:
    """Stage 1 as settings of the vocabulary: a fresh ``tiny`` model, alt-text captions."""
    return {"model.source": "preset:tiny", **{f"model.{k}": v for k, v in BASE_MODEL.items()},
            "data.caption_field": "alt_caption", "train.steps": steps, "train.seed": seed,
            "train.batch_size": PRETRAIN["batch_size"], "train.lr_backbone": PRETRAIN["lr"], "train.lr_new": PRETRAIN["lr"],
            "train.warmup_steps": PRETRAIN["warmup_steps"], "train.log_every": 50, "train.eval_modes": ["global"],
            "train.keep_last": 1, "eval.size": 0, "eval.val_size": 0, "eval.reference": False}


def pretrain_tiny(out_dir: str | Path, steps: int = PRETRAIN["steps"], seed: int = PRETRAIN["seed"],
                  progress: bool = True) -> dict[str, Any]:
    """Train the tiny base, evaluate it, write it as a packaged-model folder; returns its metrics."""
    from .weights.assets import TOKEN_ROWS, save_asset
    from .data.synthetic import vocabulary_token_ids
    from .model import create_model
    from .recipe import RunSpec, run

    out_dir = Path(out_dir)
    result = run(RunSpec(settings=pretrain_settings(steps, seed), name="run", results_dir=str(out_dir),
                         keep_model=False, progress=progress))
    torch.manual_seed(seed)  # the run's initial weights, rebuilt: which token rows did training touch?
    initial_rows = create_model("tiny", **BASE_MODEL).state_dict()[TOKEN_ROWS]
    model = result.model
    metrics = {"seed": seed, "steps": steps, "train_seconds": round(result.record["timings"]["train_s"], 1),
               **base_metrics(model), "loss": {r["step"]: r["loss"] for r in result.history if "loss" in r}}
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
