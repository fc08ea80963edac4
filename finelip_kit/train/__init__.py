"""Training: one readable loop for CPU and GPU, torchrun DDP, mixed precision, accumulation
(plain or gradient caching), exact resume.

    trainer = Trainer(model, SyntheticScenes(split="train"), TrainConfig(steps=500, out_dir="runs/x"),
                      eval_data=SyntheticScenes(split="val", size=400))
    trainer.fit()

    config.py      TrainConfig (every option, validated), lr_factor
    sampling.py    EpochSampler, SeededPairs (deterministic, resumable, rank-split batches)
    checkpoint.py  latest_checkpoint, check_resume_config, trim_log, remove_stale_temporaries
    loop.py        Trainer (batch → forward → loss → backward → step → log → checkpoint), parameter_groups

A whole run (a preset, model + data + training + evaluation → a record) is ``finelip_kit.recipe.run``.
"""

from .checkpoint import CHECKPOINTS, STATE_FILE, check_resume_config, latest_checkpoint, remove_stale_temporaries, trim_log
from .config import PRECISIONS, RESUME_CHANGEABLE, RESUME_IGNORED, TrainConfig, lr_factor
from .loop import Trainer, parameter_groups
from .sampling import EpochSampler, SeededPairs

__all__ = [
    "CHECKPOINTS", "PRECISIONS", "RESUME_CHANGEABLE", "RESUME_IGNORED", "STATE_FILE", "EpochSampler", "SeededPairs",
    "TrainConfig", "Trainer", "check_resume_config", "latest_checkpoint", "lr_factor", "parameter_groups",
    "remove_stale_temporaries", "trim_log",
]
