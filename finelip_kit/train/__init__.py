"""Training: one readable loop for CPU and GPU, torchrun DDP, mixed precision, accumulation
(plain or gradient caching), exact resume.

    trainer = Trainer(model, SyntheticScenes(split="train"), TrainConfig(steps=500, out_dir="runs/x"),
                      eval_data=SyntheticScenes(split="val", size=400))
    trainer.fit()

    config.py      TrainConfig (every option, validated), lr_factor
    sampling.py    EpochSampler (the map-style data/epochs.EpochPlan), SeededPairs (deterministic, resumable, rank-split)
    checkpoint.py  write_checkpoint, read_checkpoint, find_checkpoint, rng_state / restore_rng, check_resume_config, ...
    trackers.py    Trackers (with Trackers(...) as t: the one place a tracker run ends)
    loop.py        Trainer (batch → forward → loss → backward → step → log → checkpoint), parameter_groups

A whole run (a preset, model + data + training + evaluation → a record) is ``finelip_kit.recipe.run``.
"""

from .._lazy import lazy_exports

_EXPORTS = {
    "CHECKPOINTS": ".checkpoint", "STATE_FILE": ".checkpoint", "check_resume_config": ".checkpoint",
    "latest_checkpoint": ".checkpoint", "remove_stale_temporaries": ".checkpoint", "trim_log": ".checkpoint",
    "PRECISIONS": ".config", "RESUME_CHANGEABLE": ".config", "RESUME_IGNORED": ".config", "TrainConfig": ".config",
    "lr_factor": ".config", "Trainer": ".loop", "parameter_groups": ".loop", "EpochSampler": ".sampling",
    "SeededPairs": ".sampling",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)  # TrainConfig alone does not need torch
