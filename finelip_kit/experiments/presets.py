"""The run presets, the one home of every named run: what model to start from, the data, the training
options and the evaluation. ``finelip train --preset NAME``, ``RunSpec(preset=NAME)``, the grid's
``preset`` parameter (whose defaults are read from here) and ``finelip pretrain-tiny`` all name one.

A *run preset* (``synthetic-tiny``, ``paper-b16``) is a whole recipe; an *architecture preset*
(``tiny``, ``clip-b16``: ``finelip_kit.model.config.PRESETS``) is a model's shape, which a run preset
names as ``preset:<name>`` when it starts from fresh weights.
"""

from __future__ import annotations

from typing import Any

# A preset names the model to start from, the data, the training options and the evaluation;
# ``preset_settings`` turns it into settings of the vocabulary, a run's settings go on top.
# "model": anything ``load_model`` resolves (a preset name: fresh weights; "clip:<hub id or dir>";
#          a finelip-kit checkpoint directory or a packaged model name); "model_overrides": config
#          changes applied on loading that model; "data": the data source; "data_settings": other
#          data.* settings; "train": TrainConfig fields; "eval": EvalSpec fields.
# The kit's paper recipe: FineLIP's published hyper-parameters with the kit's improvements, each
# named in docs/fidelity.md's table (AdamW betas 0.9/0.98, eps 1e-6, no decay on norms and
# embeddings, clipping 1.0, bf16 autocast on GPU, one cosine over the run, hardest negatives after
# epoch 1, the trainable position rows and the temperature at the new modules' rate, batch 128 per GPU).
_PAPER_RECIPE = dict(steps=None, epochs=6, batch_size=128, accumulation=4, lr_backbone=1e-6, lr_new=2e-4,
                     weight_decay=0.01, warmup_steps=200, fine_ramp_epochs=1.0, hardest_after_epochs=1.0,
                     num_workers=8, eval_every=2000, save_every=1000)
# The official FineLIP code, choice by choice, quirks included (docs/fidelity.md).
_OFFICIAL_RECIPE = dict(
    steps=None, epochs=6,
    batch_size=128, batch_scope="global", accumulation=4,  # 128 split across the GPUs, x 4 accumulation
    lr_backbone=1e-6, lr_new=2e-4, lr_positions=1e-6, lr_logit_scale=1e-6,  # only the aggregation modules at 2e-4
    weight_decay=0.01, weight_decay_on="all", adam_betas=(0.9, 0.999), adam_eps=1e-8,  # AdamW as PyTorch ships it
    grad_clip=None, precision="fp32",
    schedule="official", warmup_steps=200,  # stepped per micro-batch: 50 optimiser steps of warm-up, 2 cosine cycles
    fine_ramp_epochs=1.0, hardest_after_epochs=None,  # the fine loss ramped in; negatives summed throughout
    num_workers=8, eval_every=2000, save_every=1000)
_OFFICIAL_MODEL = {"label_smoothing": 0.1, "pcm_variant": "official"}
_PAPER_EVAL = dict(size=0, reference=False)
# DeBias-CLIP's augmentations (data/captions.py) on Long-CLIP's recipe (paper-b16-debias).
DEBIAS_CAPTIONS = dict(caption_drop_summary=1.0, caption_keep_sentences=0.5, caption_shuffle_sentences=True,
                       caption_pad_sentences=3, caption_inputs="full+augmented")
_DEBIAS_MODEL = {"text.context_length": 248, "text.stretch": "kps", "text.freeze_kept_positions": True,
                 "use_atrm": False, "use_clim": False, "loss": "global", "label_smoothing": 0.1}
_DEBIAS_RECIPE = dict(steps=None, epochs=2, batch_size=128, lr_backbone=1e-6, lr_new=1e-6, weight_decay=0.01,
                      warmup_steps=200, num_workers=8, eval_every=2000, save_every=1000, **DEBIAS_CAPTIONS)
RUN_PRESETS: dict[str, dict[str, Any]] = {
    # The CPU default behind the notebooks and the ablation grid: a few minutes on 2 cores.
    # FineLIP's choices on top of the packaged 77-token base: stretch to 248 (kps, first 20
    # rows frozen), ATRM, CLIM, InfoNCE + triplet.
    "synthetic-tiny": {
        "model": "tiny-synthetic-clip",
        "model_overrides": {"text.context_length": 248, "text.stretch": "kps", "text.freeze_kept_positions": True,
                            "use_atrm": True, "use_clim": True, "atrm_k": 16, "loss": "global+fine",
                            "fine_weight": 1.0, "triplet_reduction": "mean"},
        "data": "synthetic",
        "train": dict(steps=300, batch_size=64, lr_backbone=2e-4, lr_new=1e-3, warmup_steps=20, eval_every=None),
        "eval": dict(size=1000, reference=True),
    },
    # FineLIP's recipe on ShareGPT4V: 6 epochs, lr 1e-6 / 2e-4, wd 0.01, 200 warm-up steps, batch 128 x 4.
    # ShareGPT4V's splits are train / eval (ShareGPT4V-1k): no test split; name one with data.test_split.
    "paper-b16": {"model": "clip:openai/clip-vit-base-patch16", "data": "sharegpt4v", "train": _PAPER_RECIPE,
                  "eval": _PAPER_EVAL},
    "paper-l14": {"model": "clip:openai/clip-vit-large-patch14", "data": "sharegpt4v", "train": _PAPER_RECIPE,
                  "eval": _PAPER_EVAL},
    # The official code's recipe exactly (to set a kit number beside a published one).
    "paper-b16-official": {"model": "clip:openai/clip-vit-base-patch16", "model_overrides": _OFFICIAL_MODEL,
                           "data": "sharegpt4v", "train": _OFFICIAL_RECIPE, "eval": _PAPER_EVAL},
    "paper-l14-official": {"model": "clip:openai/clip-vit-large-patch14", "model_overrides": _OFFICIAL_MODEL,
                           "data": "sharegpt4v", "train": _OFFICIAL_RECIPE, "eval": _PAPER_EVAL},
    # DeBias-CLIP (CVPR 2026) on Long-CLIP's training (its official train.py: AdamW lr 1e-6, wd 0.01, 200
    # warm-up steps, cosine, batch 128 per GPU, 2 epochs, label smoothing 0.1, KPS to 248): the global InfoNCE
    # only (no ATRM / CLIM), Long-CLIP's short-caption input replaced by the augmented caption — two text inputs,
    # the full caption and the augmented one, each with the loss. The augmentation sizes are the kit's choice
    # (DeBias-CLIP's code was not readable here; docs/debias.md): the summary always removed, half the remaining
    # sentences kept and shuffled, 0-3 filler sentences first.
    "paper-b16-debias": {"model": "clip:openai/clip-vit-base-patch16", "model_overrides": _DEBIAS_MODEL,
                         "data": "sharegpt4v", "train": _DEBIAS_RECIPE, "eval": _PAPER_EVAL},
    # Stage 1 of the embedded experiment, the packaged base (tiny-synthetic-clip, pretrain.py): the
    # tiny architecture at CLIP's 77 tokens from scratch, InfoNCE on the scenes' short alt-text captions.
    "synthetic-tiny-base": {
        "model": "preset:tiny",
        "model_overrides": {"text.context_length": 77, "text.stretch": "none", "use_atrm": False, "use_clim": False,
                            "loss": "global"},
        "data": "synthetic", "data_settings": {"caption_field": "alt_caption"},
        "train": dict(seed=0, steps=600, batch_size=128, lr_backbone=2e-3, lr_new=2e-3, warmup_steps=50, log_every=50,
                      eval_every=None, keep_last=1),
        "eval": dict(size=0, val_size=0, reference=False, modes=["global"]),
    },
}
TRAIN_PRESETS = RUN_PRESETS  # the name before run presets and architecture presets were told apart


def preset_settings(name: str) -> dict[str, Any]:
    """A run preset as settings of the vocabulary (dotted keys)."""
    if name not in RUN_PRESETS:
        raise ValueError(f"unknown training preset {name!r} (a run preset; an architecture such as 'tiny' is "
                         f"model.source=preset:tiny); choose one of {sorted(RUN_PRESETS)}")
    spec = RUN_PRESETS[name]
    return {"model.source": spec["model"], **{f"model.{k}": v for k, v in spec.get("model_overrides", {}).items()},
            "data.source": spec["data"], **{f"data.{k}": v for k, v in spec.get("data_settings", {}).items()},
            **{f"train.{k}": v for k, v in spec["train"].items()},
            **{f"eval.{k}": v for k, v in spec.get("eval", {}).items()}}
