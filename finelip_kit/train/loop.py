"""The training loop: one readable loop for CPU and GPU, torchrun DDP, mixed precision, accumulation
(plain or gradient caching), exact resume.

    trainer = Trainer(model, SyntheticScenes(split="train"), TrainConfig(steps=500, out_dir="runs/x"),
                      eval_data=SyntheticScenes(split="val", size=400))
    trainer.fit()

Launch on N processes with ``torchrun --nproc_per_node=N -m finelip_kit.cli train ...``: the
same loop runs on every rank; logs and checkpoints come from rank 0.
"""

from __future__ import annotations

import json
import os
import random
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

from ..data.collate import Collate
from ..data.shards import ShardEpoch, ShardPairs
from ..data.transforms import clip_transform
from ..math.losses import world
from ..model.finelip import FineLIP
from ..model.tokenizer import get_tokenizer
from ..model.towers import Features
from .checkpoint import (
    CHECKPOINTS,
    find_checkpoint,
    read_checkpoint,
    remove_stale_temporaries,
    restore_rng,
    rng_state,
    trim_log,
    write_checkpoint,
)
from .config import TrainConfig, caption_augment, lr_factor, official_lr_factor
from .execution import adamw, matmul_precision, pin_memory, tf32_setting, with_kernel
from .preemption import Preempted, PreemptionFlag
from .sampling import EpochSampler, SeededPairs, _groups
from .trackers import Trackers, check_installed


def parameter_groups(model: nn.Module, lr_backbone: float, lr_new: float, weight_decay: float,
                     **options: Any) -> list[dict[str, Any]]:
    """The model's own AdamW groups (``FineLIP.parameter_groups``; ``options``: ``lr_positions``,
    ``lr_logit_scale``, ``weight_decay_on``), also through a DDP or ``torch.compile`` wrapper."""
    while not isinstance(model, FineLIP):
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            raise TypeError(f"parameter_groups needs a FineLIP model (or a DDP / compiled wrapper of one), got {type(model).__name__}")
        model = inner
    return model.parameter_groups(lr_backbone, lr_new, weight_decay, **options)


def process_batch_size(config: TrainConfig, world_size: int) -> int:
    """This process's micro-batch: ``batch_size`` itself, or with ``batch_scope="global"`` its
    share of the micro-batch of all processes (the official code's 128 split across GPUs)."""
    if config.batch_scope == "process":
        return config.batch_size
    share, left = divmod(config.batch_size, world_size)
    if left or share < 2:
        raise ValueError(f"batch_scope='global': batch_size {config.batch_size} must split evenly into micro-batches "
                         f"of at least 2 over the {world_size} processes; use a multiple of {world_size} "
                         f"(>= {2 * world_size})")
    return share


# ----------------------------------------------------------------------------- the trainer
class Trainer:
    def __init__(self, model: FineLIP, train_data, config: TrainConfig, eval_data=None, tokenizer=None,
                 on_log: Callable[[dict[str, Any]], None] | None = None, final_eval: bool = True,
                 trackers: Trackers | None = None, eval_modes: tuple[str, ...] | None = None):
        """``eval_data``: evaluated every ``config.eval_every`` steps and, with ``final_eval``, at the end,
        in ``eval_modes`` (None: every mode the model has; a run's ``eval.modes``).
        ``trackers``: open experiment trackers to log to (the recipe's, which it closes); None: ``fit``
        opens ``config.tracker``'s itself on rank 0 and closes them when it ends."""
        self.config = config
        self.final_eval = final_eval
        self.on_log = on_log  # called with every logged record on the main process (live plots)
        self.rank, self.world_size = world()
        self.is_main = self.rank == 0
        self.device = _device(config.device)
        self.model = model.to(self.device)
        model.set_attention(config.attention).set_grad_checkpointing(config.grad_checkpointing)
        if config.compile:  # the towers hold the FLOPs
            model.compile_towers("inductor" if config.compile is True else config.compile)
        self.dtype = next(model.parameters()).dtype  # float32 normally; float64 in exactness tests
        self.eval_data = eval_data
        self.eval_modes = None if eval_modes is None else tuple(eval_modes)
        self.tokenizer = tokenizer or get_tokenizer(context_length=model.context_length)
        self.out_dir = Path(config.out_dir)
        transform = clip_transform(model.config.vision, train=config.augment)
        self.batch_size = process_batch_size(config, self.world_size)
        self.streamed = isinstance(train_data, ShardPairs)  # webdataset shards: whole batches come from the dataset
        if self.streamed:
            if caption_augment(config).active:
                raise ValueError("the caption augmentations (train.caption_*) are built for map-style data; webdataset "
                                 "shards are streamed and do not apply them yet: turn them off or train from a pairs file")
            if config.group_batches:
                raise ValueError("group_batches=True needs map-style data with hard-negative groups; webdataset shards "
                                 "are streamed: set group_batches=False")
            self.dataset = self.sampler = ShardEpoch(train_data, self.batch_size, seed=config.seed, rank=self.rank,
                                                     world_size=self.world_size, shuffle_buffer=config.shuffle_buffer,
                                                     transform=transform)
        else:
            self.dataset = SeededPairs(train_data, transform, config.seed, captions=caption_augment(config),
                                       beside=config.caption_inputs == "full+augmented")
            self.sampler = EpochSampler(len(self.dataset), self.batch_size, config.seed, self.rank, self.world_size,
                                        groups=_groups(train_data) if config.group_batches else None)
        self.collate = Collate(self.tokenizer, model.context_length, short_captions=model.config.pcm_weight > 0)
        groups = parameter_groups(model, config.lr_backbone, config.lr_new, config.weight_decay,
                                  lr_positions=config.lr_positions, lr_logit_scale=config.lr_logit_scale,
                                  weight_decay_on=config.weight_decay_on)
        self.optimizer = adamw(groups, config.adam_betas, config.adam_eps, config.adamw_kernel, self.device)
        for group in self.optimizer.param_groups:
            group["base_lr"] = group["lr"]
        self.autocast_dtype, self.scaler = _precision(config.precision, self.device)
        self.ddp = None
        if self.world_size > 1:
            from torch.nn.parallel import DistributedDataParallel

            # Some trainable parameters sit out some losses: the temperature under loss="fine", ATRM
            # under loss="global", the global term during fine_only_steps. DDP must look for them
            # each step, or its second step fails waiting for their gradients.
            self.ddp = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                                               find_unused_parameters=True)
        self.steps_per_epoch = max(1, self.sampler.batches_per_epoch // config.accumulation)
        self.total_steps = config.steps or max(1, int(round(config.epochs * self.steps_per_epoch)))
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.nonfinite_total, self.nonfinite_run = 0, 0
        self.started = time.monotonic()
        self.elapsed_before = 0.0
        self.history: list[dict[str, Any]] = []
        if trackers is None:
            check_installed(config.tracker)  # a missing package fails now, not after the first steps
        self.given_trackers = trackers
        self.trackers = Trackers((), self.out_dir)  # none open until fit

    # ------------------------------------------------------------------ the loop
    def fit(self) -> list[dict[str, Any]]:
        """Train to the configured budget; returns the logged records (also in ``metrics.jsonl``)."""
        with (self._open_trackers() as self.trackers, matmul_precision(tf32_setting(self.config.tf32, self.device)),
              PreemptionFlag() as self.preemption):
            return self._fit()

    def _open_trackers(self):
        """The trackers ``fit`` logs to: the caller's (the recipe opens and closes them), or
        ``config.tracker``'s on rank 0, which ``fit`` closes (``Trackers.__exit__``)."""
        if self.given_trackers is not None:
            return nullcontext(self.given_trackers)
        trackers = Trackers(self.config.tracker if self.is_main else (), self.out_dir, resume=self.config.resume is not None)
        trackers.config({"train": self.config.to_dict(), "model": self.model.config.to_dict()})
        return trackers

    def _fit(self) -> list[dict[str, Any]]:
        cfg = self.config
        if cfg.resume:
            self.load_checkpoint(cfg.resume)
        self.steps_run, self.nonfinite_before = 0, self.nonfinite_total
        if self.step == 0:
            random.seed(cfg.seed)
            np.random.seed(cfg.seed)
            torch.manual_seed(cfg.seed)
        self._set_lr()
        from tqdm.auto import tqdm

        left_out = self.sampler.dropped_per_epoch
        if left_out and self.is_main and self.step == 0:
            used = self.sampler.batches_per_epoch * self.batch_size * self.world_size
            print(f"each epoch uses {used} of {used + left_out} training pairs: {left_out} past the last whole global "
                  f"batch are left out (different ones each epoch)")
        bar = tqdm(total=self.total_steps, initial=self.step, desc="training", disable=not (cfg.progress and self.is_main))
        self.model.train()
        batches = self._batches()
        while not self._done():
            tick = time.perf_counter()
            micro = next(batches)  # `accumulation` micro-batches
            data_seconds = time.perf_counter() - tick
            lrs = {kind: self._lr(kind) for kind in ("backbone", "new")}
            try:
                terms, finite = self._train_step(micro)  # forward, backward, clip, step
            except torch.OutOfMemoryError as error:
                raise torch.OutOfMemoryError(
                    f"out of memory at step {self.step + 1} with micro-batch {self.batch_size} on {self.device}: use a "
                    f"smaller batch_size with accumulation (grad_cache=True keeps the contrastive batch exact), "
                    f"e.g. batch_size={max(2, cfg.batch_size // 2)} accumulation={cfg.accumulation * 2} grad_cache=True"
                ) from error
            self.step += 1
            self.steps_run += 1
            self.batch_in_epoch += cfg.accumulation
            self._set_lr()  # the schedule, for the next step
            self._log(terms, finite, micro, lrs, data_seconds, time.perf_counter() - tick, bar)
            if cfg.eval_every and self.eval_data is not None and self.step % cfg.eval_every == 0 and not self._done():
                self.write_log({"step": self.step, **self.evaluate()})
            if cfg.save_every and self.step % cfg.save_every == 0 and not self._done():
                self.save_checkpoint()
            signal_name = self._preempted()
            if signal_name and not self._done():  # finished this step: save it and stop (train/preemption.py)
                bar.close()
                saved = self.save_checkpoint()
                raise Preempted(signal_name, self.step, saved)
        bar.close()
        if self.steps_run and self.nonfinite_total - self.nonfinite_before >= self.steps_run:
            raise FloatingPointError(
                f"every one of the {self.steps_run} training step(s) had a non-finite loss and was skipped: the model "
                f"did not train. Check fine_weight / learning rates for inf or very large values, or use fp32"
            )
        if self.eval_data is not None and self.final_eval:
            self.write_log({"step": self.step, "final": True, **self.evaluate()})
        self.save_checkpoint()
        return self.history

    def _batches(self):
        """Groups of ``accumulation`` micro-batches, epoch after epoch, from the current position
        (a partial group at the end of an epoch is dropped)."""
        cfg = self.config
        while True:
            self.sampler.set_epoch(self.epoch, self.batch_in_epoch)
            self.dataset.epoch = self.epoch  # the augmentation's seed (SeededPairs; ShardEpoch is its own sampler)
            # The loader draws its workers' base seed from its own generator, not the global one:
            # a resume then leaves the global RNG exactly where the uninterrupted run has it.
            generator = self.sampler.generator()  # data/epochs.epoch_seed
            if self.streamed:  # the dataset yields this rank's batches, round-robin over the workers
                if cfg.num_workers:
                    self.dataset.index_shards()  # once here, not in every worker every epoch
                loader = DataLoader(self.dataset, batch_size=None, generator=generator, collate_fn=self.collate,
                                    num_workers=cfg.num_workers, pin_memory=pin_memory(self.device))
            else:
                loader = DataLoader(self.dataset, batch_size=self.batch_size, sampler=self.sampler, generator=generator,
                                    collate_fn=self.collate, num_workers=cfg.num_workers, drop_last=True,
                                    pin_memory=pin_memory(self.device))
            group: list[dict[str, Any]] = []
            for batch in loader:
                group.append(batch)
                if len(group) == cfg.accumulation:
                    yield group
                    group = []
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    def _train_step(self, micro: list[dict[str, Any]]) -> tuple[dict[str, float], bool]:
        """One optimiser step over ``micro`` batches; a non-finite loss skips the update."""
        cfg = self.config
        self.optimizer.zero_grad(set_to_none=True)
        extra = {"fine_weight": self._fine_weight(), "negatives": self._negatives(), "global_weight": self._global_weight(),
                 "augmented_weight": cfg.caption_augmented_weight}
        if cfg.grad_cache:
            terms = self._grad_cache_backward(micro, extra)
        else:
            terms = self._accumulate_backward(micro, extra)
        finite = self._all_finite(terms["loss"])
        if finite:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)  # fp16: the scaler itself skips steps with non-finite gradients
            parameters = [p for p in self.model.parameters() if p.grad is not None]
            if cfg.grad_clip is not None:
                terms["grad_norm"] = torch.nn.utils.clip_grad_norm_(parameters, cfg.grad_clip)
            else:
                terms["grad_norm"] = torch.nn.utils.get_total_norm([p.grad for p in parameters])
            # A finite loss can still give non-finite gradients (the official PCM's SVD when singular
            # values nearly tie): the update is skipped and counted like a non-finite loss.
            finite = self.scaler is not None or bool(torch.isfinite(terms["grad_norm"]))
        if finite:
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            with torch.no_grad():
                self.model.logit_scale.clamp_(0, self.model.config.logit_scale_max)
            self.nonfinite_run = 0
        else:
            self.optimizer.zero_grad(set_to_none=True)
            self.nonfinite_total += 1
            self.nonfinite_run += 1
            if self.nonfinite_run >= cfg.max_nonfinite:
                values = {k: float(v) for k, v in terms.items()}
                raise FloatingPointError(
                    f"stopping: {self.nonfinite_run} non-finite losses in a row, the last at step {self.step + 1} "
                    f"(loss terms {values}; a non-finite gradient norm counts too); lower the learning rate, "
                    f"enable grad_clip, or use fp32"
                )
        return {k: float(v) for k, v in terms.items()}, finite

    def _accumulate_backward(self, micro: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Plain accumulation: each micro-batch's loss (with only its own negatives) / k, summed gradients."""
        totals: dict[str, torch.Tensor] = {}
        for i, batch in enumerate(micro):
            batch = _to(batch, self.device, self.dtype)
            sync = self.ddp.no_sync() if self.ddp is not None and i < len(micro) - 1 else nullcontext()
            with sync, self._autocast():
                terms = (self.ddp or self.model)(batch, **extra)
            self._backward(terms["loss"] / len(micro))
            for k, v in terms.items():
                totals[k] = totals.get(k, 0) + v.detach() / len(micro)
        return totals

    def _grad_cache_backward(self, micro: list[dict[str, Any]], extra: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Gradient caching: the loss sees the whole effective batch, memory stays one micro-batch.

        1. encode every micro-batch without a graph; 2. compute the losses on all of it and
        backpropagate into the (leaf) features; 3. re-encode each micro-batch with a graph and
        backpropagate the cached feature gradients through the towers.
        """
        batches = [_to(b, self.device, self.dtype) for b in micro]
        with torch.no_grad(), self._autocast():
            encoded = [self.model.encode_batch(b) for b in batches]
        leaves = {key: _leaf(Features.cat([e[key] for e in encoded])) for key, value in encoded[0].items() if value is not None}
        image_ids = torch.cat([b["image_ids"] for b in batches]) if "image_ids" in batches[0] else None
        with self._autocast():
            terms = self.model.loss_terms(leaves["image"], leaves["text"], image_ids, leaves.get("short"),
                                          augmented=leaves.get("augmented"), **extra)
        self._backward(terms["loss"])
        offset = 0
        for batch in batches:
            n = batch["images"].shape[0]
            # Re-encoding goes through the bare module: DDP's hooks stay idle and the gradients
            # are averaged across ranks once, below.
            with self._autocast():
                fresh = self.model.encode_batch(batch)
            outputs, grads = [], []
            for key, leaf in leaves.items():
                for name in ("global_", "tokens", "slot_weights"):
                    cached = None if getattr(leaf, name) is None else getattr(leaf, name).grad
                    if cached is not None:  # slot weights carry a gradient only under the slot-diversity term
                        out = getattr(fresh[key], name)
                        outputs.append(out)
                        part = cached[offset : offset + n]
                        grads.append(part[:, : out.shape[1]] if name == "tokens" else
                                     part[..., : out.shape[-1]] if name == "slot_weights" else part)
            torch.autograd.backward(outputs, grads)
            offset += n
        if self.ddp is not None:
            _all_reduce_gradients(self.model)
        return {k: v.detach() for k, v in terms.items()}

    # ------------------------------------------------------------------ pieces of the loop
    def _backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _all_finite(self, loss: torch.Tensor) -> bool:
        flag = torch.tensor(float(torch.isfinite(loss).all()), device=self.device)
        if self.world_size > 1:
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
        return bool(flag.item())

    def _preempted(self) -> str | None:
        """The pre-emption signal any rank received (every rank agrees), or None."""
        received = self.preemption.received
        if self.world_size > 1:
            flag = torch.tensor(float(received is not None), device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            return (received or "a pre-emption signal (on another rank)") if flag.item() else None
        return received

    def _epoch_progress(self) -> float:
        return self.step / self.steps_per_epoch

    def _fine_weight(self) -> float:
        base = self.model.config.fine_weight
        ramp = self.config.fine_ramp_epochs
        return base if ramp == 0 else base * min(1.0, self._epoch_progress() / ramp)

    def _global_weight(self) -> float | None:
        """0 during ``fine_only_steps`` (the fine loss alone first), else the model's own weight."""
        return 0.0 if self.step < self.config.fine_only_steps else None

    def _negatives(self) -> str | None:
        """The one place the hardest-negatives switch is decided: from ``hardest_after_steps``
        (counted in optimiser steps) or ``hardest_after_epochs`` (in epochs of this run's data);
        before it, and without either, the model's own ``negatives`` setting applies."""
        steps, epochs = self.config.hardest_after_steps, self.config.hardest_after_epochs
        if steps is not None:
            return "hardest" if self.step >= steps else None
        return "hardest" if epochs is not None and self._epoch_progress() >= epochs else None

    def _progress(self) -> float:
        """Fraction of the cosine phase done: by wall time with ``train_minutes``, else by steps."""
        if self.config.train_minutes:
            return self._elapsed() / (60 * self.config.train_minutes)
        warmup = self.config.warmup_steps
        return (self.step - warmup) / max(1, self.total_steps - warmup)

    def _elapsed(self) -> float:
        return self.elapsed_before + time.monotonic() - self.started

    def _done(self) -> bool:
        if self.config.train_minutes:
            return self._elapsed() >= 60 * self.config.train_minutes
        return self.step >= self.total_steps

    def _set_lr(self) -> None:
        cfg = self.config
        if cfg.schedule == "official":
            factor = official_lr_factor(self.step, cfg.accumulation, cfg.warmup_steps, self.total_steps)
        else:
            factor = lr_factor(self.step, self._progress(), cfg.warmup_steps, cfg.min_lr_ratio)
        frozen = self.step < self.config.freeze_towers_steps  # the new modules warm up with the towers still
        for group in self.optimizer.param_groups:
            group["lr"] = 0.0 if frozen and group["kind"] == "backbone" else group["base_lr"] * factor

    # ------------------------------------------------------------------ logging and evaluation
    def _log(self, terms, finite, micro, lrs, data_seconds, step_seconds, bar) -> dict[str, Any]:
        samples = sum(b["images"].shape[0] for b in micro) * self.world_size
        record = {
            "step": self.step,
            "epoch": round(self._epoch_progress(), 4),
            **{k: round(v, 6) for k, v in terms.items()},
            "skipped": not finite,
            "nonfinite_total": self.nonfinite_total,
            "lr_backbone": lrs["backbone"],
            "lr_new": lrs["new"],
            "logit_scale": round(float(self.model.logit_scale.detach().exp()), 3),
            "truncated": sum(b["stats"]["truncated"] for b in micro),
            "samples_per_s": round(samples / step_seconds, 1),
            "data_s": round(data_seconds, 4),
            "step_s": round(step_seconds, 4),
        }
        if self.config.compile and self.steps_run == 1:  # this process's first step compiled the towers
            record["compile_s"] = record.pop("step_s")
            record.pop("samples_per_s")
        if not finite and self.is_main:
            print(f"step {self.step}: non-finite loss {terms}; update skipped ({self.nonfinite_total} so far)")
        if self.step % self.config.log_every == 0 or self.step == 1 or self._done():
            self.write_log(record)
        if self.is_main:
            bar.update(1)
            bar.set_postfix(loss=f"{terms['loss']:.4f}", lr=f"{record['lr_new']:.2e}", sps=record.get("samples_per_s", "compiling"))
        return record

    def _lr(self, kind: str) -> float | None:
        lrs = [g["lr"] for g in self.optimizer.param_groups if g["kind"] == kind]
        return lrs[0] if lrs else None

    def write_log(self, record: dict[str, Any]) -> None:
        """Append ``record`` to the history and, on the main process, to ``metrics.jsonl`` and the trackers."""
        self.history.append(record)
        if not self.is_main:
            return
        if self.on_log is not None:
            self.on_log(record)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with (self.out_dir / "metrics.jsonl").open("a") as log:
            log.write(json.dumps(record) + "\n")
        self.trackers.log(record)

    def evaluate(self) -> dict[str, float]:
        """Retrieval metrics on ``eval_data`` (rank 0 computes; the others wait)."""
        from ..evaluation import evaluate_retrieval

        metrics: dict[str, float] = {}
        if self.is_main:
            result = evaluate_retrieval(self.model, self.eval_data, modes=self.eval_modes, device=self.device)
            metrics = {f"eval/{k}": round(v, 3) for k, v in result.metrics.items()}
        if self.world_size > 1:
            dist.barrier()
        self.model.train()
        return metrics

    # ------------------------------------------------------------------ checkpoints (train/checkpoint.py)
    def save_checkpoint(self) -> Path | None:
        """Write ``checkpoints/step_XXXXXXX`` (rank 0; every rank waits for it): the weights and the
        trainer's state, atomically (``write_checkpoint``)."""
        final = None
        if self.is_main:
            final = write_checkpoint(self.out_dir, self.step, self.model, self._state(), self.config.keep_last)
        if self.world_size > 1:
            dist.barrier()
        return final

    def _state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "elapsed": self._elapsed(),
            "nonfinite_total": self.nonfinite_total,
            "nonfinite_run": self.nonfinite_run,
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            **rng_state(),
            "train_config": json.dumps(self.config.to_dict()),
        }

    def load_checkpoint(self, where: str | Path) -> Path | None:
        """Restore weights, optimiser, schedule, position in the data and RNG states from checkpoint
        ``where`` (``"latest"``: the newest under ``out_dir``; none there: start from scratch)."""
        path = find_checkpoint(self.out_dir, where)
        if path is None:
            if self.is_main:
                print(f"resume='latest': no checkpoint under {self.out_dir / CHECKPOINTS}; starting from scratch")
            return None
        state = read_checkpoint(path, self.config, self.model)
        self.optimizer.load_state_dict(with_kernel(state["optimizer"], self.optimizer))
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        self.elapsed_before, self.started = state["elapsed"], time.monotonic()
        self.nonfinite_total, self.nonfinite_run = state["nonfinite_total"], state["nonfinite_run"]
        restore_rng(state)
        if self.is_main:
            trim_log(self.out_dir / "metrics.jsonl", self.step)
            remove_stale_temporaries(self.out_dir / CHECKPOINTS)
            print(f"resumed from {path} at step {self.step} (epoch {self.epoch}, batch {self.batch_in_epoch})")
        return path


def _device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            rank = int(os.environ.get("LOCAL_RANK", 0))
            torch.cuda.set_device(rank)
            return torch.device("cuda", rank)
        return torch.device("cpu")
    return torch.device(name)


def _precision(precision: str, device: torch.device):
    """(autocast dtype or None, GradScaler or None)."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "fp32":
        return None, None
    if precision == "bf16":
        return torch.bfloat16, None
    return torch.float16, torch.amp.GradScaler(device.type)


def _to(batch: dict[str, Any], device: torch.device, dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Tensors to ``device``; floating ones (images) to the model's ``dtype``."""
    return {
        k: (v.to(device, dtype=dtype if v.is_floating_point() else v.dtype, non_blocking=True) if isinstance(v, torch.Tensor) else v)
        for k, v in batch.items()
    }


def _leaf(features: Features) -> Features:
    weights = None if features.slot_weights is None else features.slot_weights.detach().requires_grad_()
    return Features(features.global_.detach().requires_grad_(), features.tokens.detach().requires_grad_(), features.mask,
                    weights)


def _all_reduce_gradients(model: nn.Module) -> None:
    world_size = dist.get_world_size()
    for param in model.parameters():
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad /= world_size


