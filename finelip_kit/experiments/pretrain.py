"""Stage 1 of the embedded experiment: a tiny CLIP pretrained the way CLIP was.

The ``tiny`` architecture at a 77-token context, trained from scratch with InfoNCE on the
synthetic scenes paired with their short alt-text-like captions (1-3 objects, under 20
tokens) — so its early text positions are well trained and the later ones are not.
``finelip pretrain-tiny --out <dir>`` runs it (through the one recipe, ``recipe.run``); the
result ships as ``tiny-synthetic-clip``.

Other bases for other regimes (issue 18's capacity map) come from the same stage with more
settings of the vocabulary: ``finelip pretrain-tiny --out bases/d4 --set model.embed_dim=4``
pretrains a 4-wide base, ``--set data.grid_size=8 data.min_objects=14 data.max_objects=20`` one on
denser scenes (its metrics are measured on the same scenes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .presets import RUN_PRESETS, preset_settings

STAGE_1 = "synthetic-tiny-base"  # the run preset (presets.py) this stage is
BASE_MODEL = RUN_PRESETS[STAGE_1]["model_overrides"]
_TRAIN = RUN_PRESETS[STAGE_1]["train"]
PRETRAIN = dict(seed=_TRAIN["seed"], steps=_TRAIN["steps"], batch_size=_TRAIN["batch_size"], lr=_TRAIN["lr_backbone"],
                warmup_steps=_TRAIN["warmup_steps"], eval_pairs=1000)  # the preset's numbers by their old names


def pretrain_settings(steps: int = PRETRAIN["steps"], seed: int = PRETRAIN["seed"],
                      extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Stage 1 as settings of the vocabulary: the ``synthetic-tiny-base`` run preset with ``steps`` and
    ``seed``; ``extra`` settings (``model.embed_dim``, ``data.grid_size``, ...) go on top."""
    from .settings import normalise

    extra = normalise(extra or {}, where="pretraining settings")
    fixed = {"model.source", "data.caption_field", "train.steps", "train.seed"} | {f"model.{k}" for k in BASE_MODEL}
    clash = sorted(fixed & set(extra))
    if clash:
        raise ValueError(f"pretraining settings {clash} are stage 1's own (steps and seed are arguments); "
                         f"set the others, e.g. model.embed_dim or data.grid_size")
    return {**preset_settings(STAGE_1), "train.steps": steps, "train.seed": seed, **extra}


def pretrain_tiny(out_dir: str | Path, steps: int = PRETRAIN["steps"], seed: int = PRETRAIN["seed"],
                  progress: bool = True, settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train the tiny base, evaluate it, write it as a packaged-model folder; returns its metrics.
    ``settings``: more settings of the vocabulary (a width, denser scenes), recorded in the metrics."""
    import torch

    from ..weights.assets import TOKEN_ROWS, save_asset
    from ..data.synthetic import vocabulary_token_ids
    from ..model.finelip import create_model
    from .recipe import RunSpec, resolve, run
    from .settings import normalise

    out_dir = Path(out_dir)
    extra = normalise(settings or {}, where="pretraining settings")
    settings = pretrain_settings(steps, seed, extra)
    result = run(RunSpec(settings=settings, preset=STAGE_1, name="run", results_dir=str(out_dir),
                         keep_model=False, progress=progress))
    torch.manual_seed(seed)  # the run's initial weights, rebuilt: which token rows did training touch?
    initial_rows = create_model(result.model.config).state_dict()[TOKEN_ROWS]
    model = result.model
    metrics = {"seed": seed, "steps": steps, "train_seconds": round(result.record["timings"]["train_s"], 1),
               **base_metrics(model, synthetic=resolve(RunSpec(settings=settings, preset=STAGE_1)).data.synthetic), "loss": {r["step"]: r["loss"] for r in result.history if "loss" in r}}
    changed = (model.state_dict()[TOKEN_ROWS] != initial_rows).any(dim=1).nonzero().flatten().tolist()
    used = torch.tensor(sorted(set(changed) | set(vocabulary_token_ids())))
    if extra:
        metrics["settings"] = extra
    save_asset(model, out_dir, used, metrics)
    return metrics


def base_metrics(model, pairs: int = PRETRAIN["eval_pairs"], synthetic: dict[str, Any] | None = None) -> dict[str, float]:
    """R@1 on the synthetic validation split (default scenes, or ``synthetic`` SyntheticConfig
    fields) with alt-text captions and with long captions (cut to the model's context), and
    within-group accuracy on the long ones."""
    from ..data import CaptionView, SyntheticConfig, SyntheticScenes
    from ..evaluation import evaluate_retrieval

    val = SyntheticScenes(SyntheticConfig(**(synthetic or {})), split="val", size=pairs)
    short = evaluate_retrieval(model, CaptionView(val, "alt_caption"), modes=("global",))
    long = evaluate_retrieval(model, val, modes=("global",))
    return {
        "alt/i2t/R@1": round(short["global/i2t/R@1"], 2),
        "alt/t2i/R@1": round(short["global/t2i/R@1"], 2),
        "long/i2t/R@1": round(long["global/i2t/R@1"], 2),
        "long/t2i/R@1": round(long["global/t2i/R@1"], 2),
        "long/group/t2i": round(long["global/group/t2i"], 2),
    }
