"""Training settings: ``TrainConfig`` (every option, validated) and the learning-rate schedule."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..model.config import ATTENTION

# Settings that say where output goes or how often to report: they may differ on resume.
RESUME_IGNORED = ("out_dir", "resume", "resume_changes", "requeue", "progress", "log_every", "eval_every", "eval_modes",
                  "save_every", "keep_last", "num_workers", "device", "tracker", "attention", "grad_checkpointing",
                  "compile", "tf32", "adamw_kernel")
# Settings a resume may change when named in ``resume_changes`` (the budget, the guard rails).
RESUME_CHANGEABLE = ("steps", "epochs", "train_minutes", "max_nonfinite", "precision")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
ADAMW_KERNELS = ("auto", "fused", "foreach", "for-loop")  # train/execution.py
SCHEDULES = ("cosine", "official")
BATCH_SCOPES = ("process", "global")
DECAY_SCOPES = ("weights", "all")


@dataclass
class TrainConfig:
    """Every training option, validated. Defaults are the CPU-friendly ``synthetic-tiny`` ones."""

    out_dir: str = "runs/finelip"
    steps: int | None = 300  # optimiser steps; None: run `epochs`
    epochs: float = 1.0
    train_minutes: float | None = None  # stop (and schedule the lr) on wall time instead
    batch_size: int = 64  # one micro-batch: per process (batch_scope="process") or split across processes ("global")
    batch_scope: str = "process"  # "global": batch_size is the micro-batch of all processes together (the official code's)
    accumulation: int = 1  # micro-batches per optimiser step
    grad_cache: bool = False  # exact large-batch contrastive losses across micro-batches
    lr_backbone: float = 1e-4  # pretrained towers (FineLIP: 1e-6)
    lr_new: float = 1e-3  # ATRM, trainable position rows, temperature (FineLIP: 2e-4 for ATRM)
    lr_positions: float | None = None  # the trainable position rows; None: lr_new (the official code: lr_backbone)
    lr_logit_scale: float | None = None  # the temperature; None: lr_new (the official code: lr_backbone)
    weight_decay: float = 0.01
    weight_decay_on: str = "weights"  # "weights": linear / conv weights only; "all": every parameter (the official code)
    adam_betas: tuple[float, float] = (0.9, 0.98)  # the official code: PyTorch's defaults (0.9, 0.999)
    adam_eps: float = 1e-6  # the official code: 1e-8
    schedule: str = "cosine"  # "official": the official code's per-micro-batch stepping (see official_lr_factor)
    warmup_steps: int = 20  # optimiser steps (schedule="official": micro-batches, as the official code counts them)
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0
    fine_ramp_epochs: float = 0.0  # FineLIP ramps the fine loss in over the first epoch (1.0)
    freeze_towers_steps: int = 0  # a kit lever: the towers' lr is 0 for this many steps (the new modules warm up alone)
    fine_only_steps: int = 0  # a kit lever: the global InfoNCE term is off for this many steps (the fine loss alone first)
    hardest_after_epochs: float | None = None  # switch negatives from sum to hardest after this many epochs ...
    hardest_after_steps: int | None = None  # ... or after this many optimiser steps (set one of the two)
    group_batches: bool = False  # batches of whole hard-negative groups (data with .groups(), e.g. SyntheticScenes)
    precision: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    device: str = "auto"
    attention: str = "sdpa"  # the towers' attention: "sdpa" (fused kernels) or "eager" (the reference)
    grad_checkpointing: bool = False  # recompute block activations in backward: less memory (L/14, large batches)
    compile: bool | str = False  # torch.compile the two towers in place (true: inductor; or a backend's name, e.g. aot_eager)
    tf32: bool = True  # float32 matmuls in TF32 on CUDA devices of compute capability >= 8 (Ampere, Hopper); false: IEEE
    adamw_kernel: str = "auto"  # auto: fused on CUDA, PyTorch's default elsewhere (CPU: the for-loop); or fused / foreach / for-loop
    num_workers: int = 0
    shuffle_buffer: int = 1000  # webdataset shards: samples shuffled within a window this long (1: shard order only)
    augment: bool = False
    seed: int = 0
    log_every: int = 10
    eval_every: int | None = None  # steps; evaluation also runs at the end when eval data is given
    eval_modes: tuple[str, ...] | None = None  # None: every mode the model has (fine, fused need CLIM)
    save_every: int | None = None  # steps; a final checkpoint is always written
    keep_last: int = 2
    resume: str | None = None  # "latest" or a checkpoint directory
    resume_changes: tuple[str, ...] = ()  # settings allowed to differ from the checkpoint's (RESUME_CHANGEABLE)
    requeue: bool = False  # under SLURM: on a pre-emption signal, save, requeue the job, resume when it restarts
    max_nonfinite: int = 5  # stop after this many non-finite losses in a row
    progress: bool = True
    tracker: tuple[str, ...] = ()  # experiment trackers: "none", or any of tensorboard / wandb / mlflow ("wandb,mlflow")

    def __post_init__(self) -> None:
        from .trackers import tracker_names

        self.tracker = tracker_names(self.tracker)
        self.eval_modes = None if self.eval_modes is None else tuple(self.eval_modes)
        self.resume_changes = tuple(self.resume_changes)
        if isinstance(self.adam_betas, list):
            self.adam_betas = tuple(self.adam_betas)  # from YAML / JSON / a checkpoint
        _check_numbers(self)
        not_changeable = sorted(set(self.resume_changes) - set(RESUME_CHANGEABLE))
        if not_changeable:
            raise ValueError(f"resume_changes may name only {sorted(RESUME_CHANGEABLE)} (settings that do not change "
                             f"what the data position or the optimiser state mean); got {not_changeable}")
        checks = [
            (self.steps is None or (isinstance(self.steps, int) and self.steps >= 1), f"steps must be an integer >= 1 or None, got {self.steps!r}"),
            (self.epochs > 0, f"epochs must be > 0, got {self.epochs}"),
            (self.train_minutes is None or self.train_minutes > 0, f"train_minutes must be > 0, got {self.train_minutes}"),
            (isinstance(self.batch_size, int) and self.batch_size >= 2, f"batch_size must be an integer >= 2 (contrastive losses need negatives), got {self.batch_size!r}"),
            (isinstance(self.accumulation, int) and self.accumulation >= 1, f"accumulation must be an integer >= 1, got {self.accumulation!r}"),
            (self.lr_backbone >= 0 and self.lr_new >= 0, f"learning rates must be >= 0, got {self.lr_backbone}, {self.lr_new}"),
            (all(lr is None or lr >= 0 for lr in (self.lr_positions, self.lr_logit_scale)),
             f"lr_positions and lr_logit_scale must be >= 0 or None, got {self.lr_positions}, {self.lr_logit_scale}"),
            (self.batch_scope in BATCH_SCOPES, f"batch_scope must be one of {BATCH_SCOPES}, got {self.batch_scope!r}"),
            (self.weight_decay_on in DECAY_SCOPES, f"weight_decay_on must be one of {DECAY_SCOPES}, got {self.weight_decay_on!r}"),
            (isinstance(self.adam_betas, tuple) and len(self.adam_betas) == 2
             and all(isinstance(b, (int, float)) and not isinstance(b, bool) and 0 <= b < 1 for b in self.adam_betas),
             f"adam_betas must be two numbers in [0, 1), got {self.adam_betas!r}"),
            (self.adam_eps > 0, f"adam_eps must be > 0, got {self.adam_eps}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}"),
            (self.schedule != "official" or (self.train_minutes is None and self.min_lr_ratio == 0),
             f"schedule='official' is the official code's step-counted cosine to 0: it takes neither train_minutes "
             f"(got {self.train_minutes}) nor min_lr_ratio (got {self.min_lr_ratio}); use schedule='cosine' for those"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}"),
            (0 <= self.min_lr_ratio <= 1, f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}"),
            (self.grad_clip is None or self.grad_clip > 0, f"grad_clip must be > 0 or None, got {self.grad_clip}"),
            (self.fine_ramp_epochs >= 0, f"fine_ramp_epochs must be >= 0, got {self.fine_ramp_epochs}"),
            (isinstance(self.freeze_towers_steps, int) and self.freeze_towers_steps >= 0,
             f"freeze_towers_steps must be an integer >= 0, got {self.freeze_towers_steps!r}"),
            (isinstance(self.fine_only_steps, int) and self.fine_only_steps >= 0,
             f"fine_only_steps must be an integer >= 0, got {self.fine_only_steps!r}"),
            (self.hardest_after_epochs is None or self.hardest_after_epochs >= 0,
             f"hardest_after_epochs must be >= 0 or None, got {self.hardest_after_epochs}"),
            (self.hardest_after_steps is None or (isinstance(self.hardest_after_steps, int) and self.hardest_after_steps >= 0),
             f"hardest_after_steps must be an integer >= 0 or None, got {self.hardest_after_steps!r}"),
            (self.hardest_after_steps is None or self.hardest_after_epochs is None,
             f"set hardest_after_steps or hardest_after_epochs, not both (got {self.hardest_after_steps} steps and "
             f"{self.hardest_after_epochs} epochs)"),
            (self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}, got {self.precision!r}"),
            (self.keep_last >= 1, f"keep_last must be >= 1, got {self.keep_last}"),
            (self.max_nonfinite >= 1, f"max_nonfinite must be >= 1, got {self.max_nonfinite}"),
            (self.log_every >= 1, f"log_every must be >= 1, got {self.log_every}"),
            (self.shuffle_buffer >= 1, f"shuffle_buffer must be >= 1 (1: no shuffling within shards), got {self.shuffle_buffer}"),
            (self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}"),
            (self.attention in ATTENTION, f"attention must be one of {ATTENTION}, got {self.attention!r}"),
            (isinstance(self.tf32, bool), f"tf32 must be true or false, got {self.tf32!r}"),
            (self.adamw_kernel in ADAMW_KERNELS, f"adamw_kernel must be one of {ADAMW_KERNELS}, got {self.adamw_kernel!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if not isinstance(self.compile, bool) and not (isinstance(self.compile, str) and self.compile in _compile_backends()):
            raise ValueError(f"compile must be true, false or one of torch.compile's backends {_compile_backends()}, "
                             f"got {self.compile!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _compile_backends() -> list[str]:
    import torch._dynamo

    return torch._dynamo.list_backends(exclude_tags=())  # the debugging ones (aot_eager, eager) too


def _check_numbers(config: TrainConfig) -> None:
    """Numeric settings must be numbers (not strings from a command line) and finite."""
    for spec in dataclasses.fields(config):
        value = getattr(config, spec.name)
        kinds = str(spec.type)
        if (value is None or isinstance(value, bool) or not ("float" in kinds or "int" in kinds) or "str" in kinds
                or "tuple" in kinds):
            continue
        integer = "float" not in kinds
        if not isinstance(value, int if integer else (int, float)):
            raise ValueError(f"training setting {spec.name} must be {'an integer' if integer else 'a number'} "
                             f"({spec.type}), got {value!r} ({type(value).__name__})")
        if not math.isfinite(value):
            raise ValueError(f"training setting {spec.name} must be finite, got {value!r}")


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


