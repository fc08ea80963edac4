"""Training settings: ``TrainConfig`` (every option, validated) and the learning-rate schedule."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..data.captions import CAPTION_INPUTS, CaptionAugment, split_sentences
from ..model.config import ATTENTION
from ..schema import BOOKKEEPING, RESUMABLE, Check, above, at_least, choice, integer, names, number, setting, validate

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ADAMW_KERNELS = ("auto", "fused", "foreach", "for-loop")  # train/execution.py
SCHEDULES = ("cosine", "official")
BATCH_SCOPES = ("process", "global")
DECAY_SCOPES = ("weights", "all")


@dataclass
class TrainConfig:
    """Every training option, validated. Defaults are the CPU-friendly ``synthetic-tiny`` ones."""

    out_dir: str = setting("runs/finelip", kind=BOOKKEEPING)
    steps: int | None = setting(300, kind=RESUMABLE, check=integer(1))  # optimiser steps; None: run `epochs`
    epochs: float = setting(1.0, kind=RESUMABLE, check=above(0))
    train_minutes: float | None = setting(None, kind=RESUMABLE, check=above(0))  # stop (and schedule the lr) on wall time instead
    # one micro-batch: per process (batch_scope="process") or split across processes ("global")
    batch_size: int = setting(64, check=integer(2, "contrastive losses need negatives"))
    # "global": batch_size is the micro-batch of all processes together (the official code's)
    batch_scope: str = setting("process", check=choice(BATCH_SCOPES))
    accumulation: int = setting(1, check=integer(1))  # micro-batches per optimiser step
    grad_cache: bool = False  # exact large-batch contrastive losses across micro-batches
    lr_backbone: float = setting(1e-4, check=at_least(0))  # pretrained towers (FineLIP: 1e-6)
    lr_new: float = setting(1e-3, check=at_least(0))  # ATRM, trainable position rows, temperature (FineLIP: 2e-4 for ATRM)
    # the trainable position rows; None: lr_new (the official code: lr_backbone)
    lr_positions: float | None = setting(None, check=at_least(0))
    lr_logit_scale: float | None = setting(None, check=at_least(0))  # the temperature; None: lr_new (the official code: lr_backbone)
    weight_decay: float = setting(0.01, check=at_least(0))
    # "weights": linear / conv weights only; "all": every parameter (the official code)
    weight_decay_on: str = setting("weights", check=choice(DECAY_SCOPES))
    adam_betas: tuple[float, float] = setting((0.9, 0.98), check=Check(
        lambda v: isinstance(v, tuple) and len(v) == 2 and all(isinstance(b, (int, float)) and not isinstance(b, bool)
                                                               and 0 <= b < 1 for b in v),
        "two numbers in [0, 1)"))  # the official code: PyTorch's defaults (0.9, 0.999)
    adam_eps: float = setting(1e-6, check=above(0))  # the official code: 1e-8
    # "official": the official code's per-micro-batch stepping (see official_lr_factor)
    schedule: str = setting("cosine", check=choice(SCHEDULES))
    # optimiser steps (schedule="official": micro-batches, as the official code counts them)
    warmup_steps: int = setting(20, check=at_least(0))
    min_lr_ratio: float = setting(0.0, check=Check(lambda v: 0 <= v <= 1, "in [0, 1]"))
    grad_clip: float | None = setting(1.0, check=above(0))
    fine_ramp_epochs: float = setting(0.0, check=at_least(0))  # FineLIP ramps the fine loss in over the first epoch (1.0)
    # a kit lever: the towers' lr is 0 for this many steps (the new modules warm up alone)
    freeze_towers_steps: int = setting(0, check=integer(0))
    fine_only_steps: int = setting(0, check=integer(0))  # a kit lever: the global InfoNCE term is off for this many steps (the fine loss alone first)
    # switch negatives from sum to hardest after this many epochs ...
    hardest_after_epochs: float | None = setting(None, check=at_least(0))
    hardest_after_steps: int | None = setting(None, check=integer(0))  # ... or after this many optimiser steps (set one of the two)
    group_batches: bool = False  # batches of whole hard-negative groups (data with .groups(), e.g. SyntheticScenes)
    precision: str = setting("auto", kind=RESUMABLE, check=choice(PRECISIONS))  # auto: bf16 autocast on CUDA, fp32 on CPU
    device: str = setting("auto", kind=BOOKKEEPING)
    # the towers' attention: "sdpa" (fused kernels) or "eager" (the reference)
    attention: str = setting("sdpa", kind=BOOKKEEPING, check=choice(ATTENTION))
    grad_checkpointing: bool = setting(False, kind=BOOKKEEPING)  # recompute block activations in backward: less memory (L/14, large batches)
    # torch.compile the two towers in place (true: inductor; or a backend's name, e.g. aot_eager)
    compile: bool | str = setting(False, kind=BOOKKEEPING)
    # float32 matmuls in TF32 on CUDA devices of compute capability >= 8 (Ampere, Hopper); false: IEEE
    tf32: bool = setting(True, kind=BOOKKEEPING)
    # auto: fused on CUDA, PyTorch's default elsewhere (CPU: the for-loop); or fused / foreach / for-loop
    adamw_kernel: str = setting("auto", kind=BOOKKEEPING, check=choice(ADAMW_KERNELS))
    num_workers: int = setting(0, kind=BOOKKEEPING, check=at_least(0))
    # webdataset shards: samples shuffled within a window this long (1: shard order only)
    shuffle_buffer: int = setting(1000, check=at_least(1, "1: no shuffling within shards"))
    augment: bool = False
    # DeBias-CLIP's caption augmentations (data/captions.py), drawn per pair and epoch from the seed:
    # the first (summary) sentence removed with this probability
    caption_drop_summary: float = setting(0.0, check=number(0.0, 1.0))
    # a random subset of the sentences, order kept: None (all), an integer >= 1 (at most that many) or a fraction in (0, 1]
    caption_keep_sentences: int | float | None = setting(None, check=Check(
        lambda v: (isinstance(v, int) and not isinstance(v, bool) and v >= 1) or (isinstance(v, float) and 0 < v <= 1),
        "None, an integer >= 1 or a fraction in (0, 1]"))
    caption_shuffle_sentences: bool = False  # the kept sentences in a random order
    caption_pad_sentences: int = setting(0, check=integer(0))  # 0 … n filler sentences put first (n drawn per pair)
    caption_filler: str = setting("This is a photo.", check=Check(  # the filler sentence
        lambda v: isinstance(v, str) and bool(split_sentences(v)), "a non-empty sentence, e.g. 'This is a photo.'"))
    # "augmented": the augmented caption replaces the caption; "full+augmented": DeBias-CLIP's two text inputs,
    # the full caption and the augmented one, each with the model's losses: loss(full) + weight x loss(augmented)
    caption_inputs: str = setting("augmented", check=choice(CAPTION_INPUTS))
    caption_augmented_weight: float = setting(1.0, check=at_least(0))
    seed: int = 0
    log_every: int = setting(10, kind=BOOKKEEPING, check=at_least(1))
    eval_every: int | None = setting(None, kind=BOOKKEEPING)  # steps; evaluation also runs at the end when eval data is given
    save_every: int | None = setting(None, kind=BOOKKEEPING)  # steps; a final checkpoint is always written
    keep_last: int = setting(2, kind=BOOKKEEPING, check=at_least(1))
    resume: str | None = setting(None, kind=BOOKKEEPING)  # "latest" or a checkpoint directory
    # settings allowed to differ from the checkpoint's (the RESUMABLE ones, RESUME_CHANGEABLE)
    resume_changes: tuple[str, ...] = setting((), kind=BOOKKEEPING)
    # under SLURM: on a pre-emption signal, save, requeue the job, resume when it restarts
    requeue: bool = setting(False, kind=BOOKKEEPING)
    max_nonfinite: int = setting(5, kind=RESUMABLE, check=at_least(1))  # stop after this many non-finite losses in a row
    progress: bool = setting(True, kind=BOOKKEEPING)
    # experiment trackers: "none", or any of tensorboard / wandb / mlflow ("wandb,mlflow")
    tracker: tuple[str, ...] = setting((), kind=BOOKKEEPING)

    def __post_init__(self) -> None:
        from .trackers import tracker_names

        self.tracker = tracker_names(self.tracker)
        self.resume_changes = tuple(self.resume_changes)
        if isinstance(self.adam_betas, list):
            self.adam_betas = tuple(self.adam_betas)  # from YAML / JSON / a checkpoint
        validate(self, "training setting ")

    def relations(self):
        not_changeable = sorted(set(self.resume_changes) - set(RESUME_CHANGEABLE))
        checks = [
            (not not_changeable, f"resume_changes may name only {sorted(RESUME_CHANGEABLE)} (settings that do not "
             f"change what the data position or the optimiser state mean); got {not_changeable}"),
            (self.schedule != "official" or (self.train_minutes is None and self.min_lr_ratio == 0),
             f"schedule='official' is the official code's step-counted cosine to 0: it takes neither train_minutes "
             f"(got {self.train_minutes}) nor min_lr_ratio (got {self.min_lr_ratio}); use schedule='cosine' for those"),
            (self.hardest_after_steps is None or self.hardest_after_epochs is None,
             f"set hardest_after_steps or hardest_after_epochs, not both (got {self.hardest_after_steps} steps and "
             f"{self.hardest_after_epochs} epochs)"),
            (self.caption_inputs == "augmented" or caption_augment(self).active,
             f"caption_inputs={self.caption_inputs!r} trains on the full caption beside an augmented one, but no caption "
             f"augmentation is on: set caption_drop_summary, caption_keep_sentences, caption_shuffle_sentences or "
             f"caption_pad_sentences, or caption_inputs='augmented'"),
        ]
        if not isinstance(self.compile, bool):
            backends = _compile_backends()
            checks.append((isinstance(self.compile, str) and self.compile in backends,
                           f"compile must be true, false or one of torch.compile's backends {backends}, got {self.compile!r}"))
        return checks

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Read from the declarations above: what may differ on resume (where output goes, how often to
# report, how fast), and what a resume may change when named in ``resume_changes``.
RESUME_IGNORED = names(TrainConfig, BOOKKEEPING)
RESUME_CHANGEABLE = names(TrainConfig, RESUMABLE)


def _compile_backends() -> list[str]:
    import torch._dynamo

    return torch._dynamo.list_backends(exclude_tags=())  # the debugging ones (aot_eager, eager) too


def lr_factor(step: int, progress: float, warmup_steps: int, min_ratio: float) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine from 1 to ``min_ratio`` as ``progress`` goes 0 → 1."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(max(progress, 0.0), 1.0)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def official_lr_factor(step: int, accumulation: int, warmup: int, total_steps: int) -> float:
    """The official FineLIP code's schedule, quirk included: its cosine is sized in optimiser
    steps (``total_steps``) but stepped once per micro-batch, so with accumulation k the
    optimiser step ``step`` takes the value at micro-batch ``k·step + k - 1``: the warm-up
    (``warmup`` micro-batches) ends after ``warmup / k`` optimiser steps and the cosine runs
    k/2 full cycles over the run (2 cycles over 6 epochs at k = 4). At k = 1 it is the
    kit's cosine (``lr_factor`` with ``min_ratio`` 0)."""
    micro = accumulation * step + accumulation - 1
    if micro < warmup:
        return (micro + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (micro - warmup) / max(1, total_steps - warmup)))


def caption_augment(config: TrainConfig) -> CaptionAugment:
    """The run's caption augmentations (``train.caption_*``) as one ``data.captions.CaptionAugment``."""
    return CaptionAugment(drop_summary=float(config.caption_drop_summary), keep_sentences=config.caption_keep_sentences,
                          pad_sentences=config.caption_pad_sentences, filler=config.caption_filler,
                          shuffle=config.caption_shuffle_sentences)
