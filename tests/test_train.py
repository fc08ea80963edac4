"""The trainer: schedule, parameter groups, sampling, accumulation, gradient caching, NaN
skipping, atomic checkpoints, exact resume after SIGKILL, DDP equivalence."""

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from finelip_kit import create_model
from finelip_kit.data import SyntheticConfig, SyntheticScenes
from finelip_kit.pretrained import read_state_dict
from finelip_kit.recipe import train_config
from finelip_kit.train import EpochSampler, TrainConfig, Trainer, latest_checkpoint, lr_factor, parameter_groups

TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
SMALL = {"vision.image_size": 32, "text.context_length": 200, "atrm_k": 4}


def tiny(**overrides):
    torch.manual_seed(0)
    return create_model("tiny", **{**SMALL, **overrides})


def scenes(size=64):
    return SyntheticScenes(SyntheticConfig(image_size=32), split="train", size=size)


def config(tmp_path, **overrides):
    base = dict(out_dir=str(tmp_path / "run"), steps=2, batch_size=8, warmup_steps=0, progress=False, log_every=1,
                lr_backbone=1e-3, lr_new=1e-3)
    return TrainConfig(**{**base, **overrides})


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_weights_close(a, b, atol=1e-6):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=atol, rtol=0, msg=key)


def test_schedule_warmup_then_cosine():
    assert lr_factor(0, 0.0, warmup_steps=4, min_ratio=0.0) == 0.25
    assert lr_factor(3, 0.1, warmup_steps=4, min_ratio=0.0) == 1.0
    assert lr_factor(10, 0.5, warmup_steps=4, min_ratio=0.0) == pytest.approx(0.5)
    assert lr_factor(10, 1.0, warmup_steps=4, min_ratio=0.1) == pytest.approx(0.1)
    assert lr_factor(10, 0.25, warmup_steps=0, min_ratio=0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_parameter_groups_split_new_modules_and_undecayed_parameters():
    model = tiny(**{"text.freeze_kept_positions": True})
    groups = parameter_groups(model, lr_backbone=1e-6, lr_new=2e-4, weight_decay=0.01)
    by_name = {name: g for g in groups for name in g["names"]}
    assert len(by_name) == sum(1 for p in model.parameters() if p.requires_grad)
    assert by_name["image_atrm.score.1.weight"]["lr"] == 2e-4 and by_name["image_atrm.score.1.weight"]["weight_decay"] == 0.01
    assert by_name["logit_scale"]["lr"] == 2e-4 and by_name["logit_scale"]["weight_decay"] == 0.0
    assert by_name["text.transformer.embeddings.position_embedding.trainable"]["lr"] == 2e-4
    assert by_name["vision.vit.blocks.0.attn.qkv.weight"] == next(g for g in groups if g["kind"] == "backbone" and g["weight_decay"])
    for undecayed in ("vision.vit.blocks.0.norm1.weight", "vision.vit.blocks.0.attn.qkv.bias", "vision.vit.pos_embed",
                      "vision.vit.cls_token", "text.transformer.embeddings.token_embedding.weight"):
        assert by_name[undecayed]["weight_decay"] == 0.0, undecayed
        assert by_name[undecayed]["lr"] == 1e-6


def test_sampler_ranks_split_each_global_batch_and_resume_mid_epoch():
    single = list(EpochSampler(40, batch_size=8, seed=3))
    ranks = [list(EpochSampler(40, batch_size=4, seed=3, rank=r, world_size=2)) for r in range(2)]
    for b in range(5):
        assert ranks[0][4 * b : 4 * b + 4] + ranks[1][4 * b : 4 * b + 4] == single[8 * b : 8 * b + 8]
    sampler = EpochSampler(40, batch_size=8, seed=3)
    sampler.set_epoch(0, start_batch=2)
    assert list(sampler) == single[16:]
    sampler.set_epoch(1)
    assert sorted(sampler) == list(range(40)) and list(sampler) != single
    with pytest.raises(ValueError, match="fewer than one global batch"):
        EpochSampler(5, batch_size=8)


def test_group_batches_hold_whole_groups():
    groups = [i // 4 for i in range(40)]  # SyntheticScenes' layout: 10 groups of 4
    sampler = EpochSampler(40, batch_size=8, seed=3, groups=groups)
    order = list(sampler)
    assert sorted(order) == list(range(40))
    for b in range(5):
        batch = order[8 * b : 8 * b + 8]
        whole = sorted(m for g in {groups[i] for i in batch} for m in range(4 * g, 4 * g + 4))
        assert sorted(batch) == whole and len(whole) == 8  # two complete groups, nothing else
    sampler.set_epoch(1)
    assert list(sampler) != order and sorted(sampler) == list(range(40))
    assert SyntheticScenes(split="train", size=12).groups() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]
    with pytest.raises(ValueError, match="groups has 3 ids for 40 training pairs"):
        EpochSampler(40, batch_size=8, groups=[0, 1, 2])
    trainer = Trainer(tiny(), scenes(16),
                      TrainConfig(batch_size=8, group_batches=True, progress=False, out_dir="unused"))
    assert trainer.sampler.members == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
    with pytest.raises(ValueError, match="group_batches=True needs training data .* list has none"):
        Trainer(tiny(), [{"image": None, "caption": "x"}] * 8, TrainConfig(batch_size=4, group_batches=True, progress=False))


def test_train_config_validation_and_presets():
    with pytest.raises(ValueError, match="batch_size must be an integer >= 2"):
        TrainConfig(batch_size=1)
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="fp8")
    paper = train_config("paper-b16")
    assert (paper.lr_backbone, paper.lr_new, paper.weight_decay, paper.warmup_steps) == (1e-6, 2e-4, 0.01, 200)
    assert (paper.epochs, paper.batch_size, paper.accumulation, paper.fine_ramp_epochs) == (6, 128, 4, 1.0)
    with pytest.raises(KeyError, match=r"unknown setting 'train.lr'.*did you mean \['train.lr_backbone'"):
        train_config("synthetic-tiny", lr=1)


def test_loss_decreases_and_logs_are_written(tmp_path):
    model = tiny(loss="global")
    # One batch of 16 pairs, seen again and again: the contrastive loss must fall below chance (ln 16).
    trainer = Trainer(model, scenes(16), config(tmp_path, steps=30, batch_size=16, warmup_steps=5))
    history = trainer.fit()
    losses = [r["loss"] for r in history if "loss" in r]
    assert losses[0] > math.log(16) - 0.1 and losses[-1] < math.log(16) - 0.3
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == list(range(1, 31))
    assert {"loss", "global", "lr_backbone", "lr_new", "samples_per_s", "data_s", "truncated"} <= set(lines[0])
    assert [round(r["lr_new"] / 1e-3, 3) for r in lines[:5]] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert lines[6]["lr_new"] == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi * 1 / 25)))
    assert latest_checkpoint(tmp_path / "run").name == "step_0000030"


def test_plain_accumulation_averages_micro_batch_gradients(tmp_path):
    model = tiny(loss="global+fine")
    data = scenes(16)
    one = Trainer(model, data, config(tmp_path, steps=1, batch_size=4, accumulation=2, grad_clip=None))
    micro = [one.collate([one.dataset[i] for i in idx]) for idx in ([0, 1, 2, 3], [4, 5, 6, 7])]
    one._accumulate_backward(micro, {})
    accumulated = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    expected = {}
    for batch in micro:
        model.zero_grad()
        model(batch)["loss"].backward()
        for n, p in model.named_parameters():
            if p.grad is not None:
                expected[n] = expected.get(n, 0) + p.grad / 2
    assert accumulated.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(accumulated[name], expected[name], atol=1e-6, rtol=1e-5, msg=name)


@pytest.mark.parametrize("loss, diversity, two_inputs", [("global", 0.0, False), ("fine", 0.0, False), ("global+fine", 0.0, False),
                                                        ("global+fine", 0.5, False), ("global+fine", 0.0, True)])
def test_gradient_caching_equals_one_big_batch(tmp_path, loss, diversity, two_inputs):
    # In float64, so the comparison sees the math, not float32 summation order (which differs at ~1e-6).
    # two_inputs: DeBias-CLIP's augmented caption beside the full one (train.caption_inputs)
    model = tiny(loss=loss, pcm_weight=0.5, pcm_components=4, slot_diversity_weight=diversity).double()
    captions = dict(caption_drop_summary=1.0, caption_pad_sentences=2, caption_inputs="full+augmented") if two_inputs else {}
    trainer = Trainer(model, scenes(16), config(tmp_path, batch_size=4, accumulation=2, grad_cache=True, **captions))

    def batch(indices):
        return trainer.collate([trainer.dataset[i] for i in indices])

    micro = [batch([0, 1, 2, 3]), batch([4, 5, 6, 7])]
    model.zero_grad()
    cached_terms = trainer._grad_cache_backward(micro, {})
    cached = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    big = batch(range(8))
    big_terms = model({**big, "images": big["images"].double()})
    big_terms["loss"].backward()
    torch.testing.assert_close(cached_terms["loss"], big_terms["loss"].detach(), atol=1e-10, rtol=0)
    assert ("global_augmented" in big_terms) == two_inputs and ("augmented_input_ids" in big) == two_inputs
    assert cached.keys() == {n for n, p in model.named_parameters() if p.grad is not None}
    for name, param in model.named_parameters():
        if param.grad is not None:
            torch.testing.assert_close(cached[name], param.grad, atol=1e-6, rtol=0, msg=name)


def test_frozen_tower_warm_up_moves_only_the_new_modules_first(tmp_path):
    model = tiny(loss="global+fine")
    start = weights(model)
    new = {n for n, p in model.named_parameters() if any(p is q for q in model.new_parameters())}
    trainer = Trainer(model, scenes(32), config(tmp_path, steps=2, freeze_towers_steps=2, grad_clip=None))
    trainer.fit()
    after = weights(model)
    trained = {n for n, p in model.named_parameters() if p.requires_grad}
    moved = {n for n in trained if not torch.equal(start[n], after[n])}
    assert moved and moved <= new  # ATRM, the new position rows and the temperature moved; the towers did not
    assert {n for n in new if n in trained} <= moved
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr_backbone"] for r in logged] == [0.0, 0.0] and all(r["lr_new"] > 0 for r in logged)
    # a third step unfreezes them
    more = Trainer(model, scenes(32), config(tmp_path, steps=3, freeze_towers_steps=2, resume="latest", grad_clip=None,
                                             resume_changes=("steps",)))
    more.fit()
    assert any(not torch.equal(after[n], v) for n, v in weights(model).items() if n in trained - new)


def test_fine_only_warm_up_leaves_the_global_term_out_of_the_loss(tmp_path):
    model = tiny(loss="global+fine")
    trainer = Trainer(model, scenes(32), config(tmp_path, steps=3, fine_only_steps=2))
    trainer.fit()
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for record in logged[:2]:  # the global term is still computed and logged, but not in the loss
        assert record["loss"] == pytest.approx(record["fine"], abs=1e-5) and record["global"] > 0
    assert logged[2]["loss"] == pytest.approx(logged[2]["global"] + logged[2]["fine"], abs=1e-5)
    batch = trainer.collate([trainer.dataset[i] for i in range(8)])
    with torch.no_grad():
        terms = model(batch, global_weight=0.0)
    assert terms["loss"] == pytest.approx(float(terms["fine"]), abs=1e-6)
    with pytest.raises(ValueError, match="fine_only_steps must be an integer >= 0, got -1"):
        config(tmp_path, fine_only_steps=-1)
    with pytest.raises(ValueError, match="training setting freeze_towers_steps must be an integer \\(int\\), got 1.5"):
        config(tmp_path, freeze_towers_steps=1.5)


def test_a_checkpoint_from_before_a_training_setting_existed_resumes_under_its_default(tmp_path):
    from finelip_kit.train import check_resume_config

    saved = {k: v for k, v in config(tmp_path).to_dict().items() if k not in ("freeze_towers_steps", "fine_only_steps")}
    check_resume_config(saved, config(tmp_path), "old checkpoint")  # the new settings at their defaults: fine
    with pytest.raises(ValueError, match="fine_only_steps: checkpoint 0 -> now 5"):
        check_resume_config(saved, config(tmp_path, fine_only_steps=5), "old checkpoint")


def test_non_finite_losses_are_skipped_counted_then_stop(tmp_path, monkeypatch):
    model = tiny(loss="global")
    original = model.loss_terms
    bad_steps = {2, 4, 5, 6}
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        terms = original(*args, **kwargs)
        if calls["n"] in bad_steps:
            terms["loss"] = terms["loss"] * float("nan")
        return terms

    monkeypatch.setattr(model, "loss_terms", flaky)
    trainer = Trainer(model, scenes(64), config(tmp_path, steps=8, max_nonfinite=3))
    with pytest.raises(FloatingPointError, match=r"3 non-finite losses in a row, the last at step 6 \(loss terms .*'loss': nan"):
        trainer.fit()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped"] for r in records] == [False, True, False, True, True]
    assert records[-1]["nonfinite_total"] == 3


def test_out_of_memory_suggests_a_smaller_micro_batch(tmp_path, monkeypatch):
    model = tiny(loss="global")
    trainer = Trainer(model, scenes(64), config(tmp_path, steps=2, batch_size=16))

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(trainer, "_train_step", exhausted)
    with pytest.raises(torch.OutOfMemoryError, match="batch_size=8 accumulation=2 grad_cache=True"):
        trainer.fit()


def test_a_kill_during_save_leaves_the_previous_checkpoint_loadable(tmp_path, monkeypatch):
    model = tiny(loss="global")
    trainer = Trainer(model, scenes(64), config(tmp_path, steps=4))
    trainer.fit()
    good = latest_checkpoint(tmp_path / "run")
    assert good.name == "step_0000004"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed while renaming")

    monkeypatch.setattr(os, "replace", killed)
    trainer.step = 5
    with pytest.raises(KeyboardInterrupt):
        trainer.save_checkpoint()
    monkeypatch.undo()
    assert any(p.name.startswith(".tmp_step_0000005") for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert latest_checkpoint(tmp_path / "run") == good
    resumed = Trainer(tiny(loss="global"), scenes(64), config(tmp_path, steps=4, resume="latest"))
    assert resumed.load_checkpoint("latest") == good and resumed.step == 4
    assert_weights_close(weights(resumed.model), read_state_dict(good / "model.safetensors"), atol=0)


def run_cli(out: Path, steps: int, extra=()) -> subprocess.Popen:
    command = [sys.executable, "-m", "finelip_kit.cli", "train", "--out", str(out), "--eval-size", "8", "--model", "tiny", "--set",
               f"steps={steps}", "batch_size=8", "save_every=2", "keep_last=10", "progress=False", "log_every=1",
               "warmup_steps=2", "eval_every=None", "model.vision.image_size=32", "model.atrm_k=4",
               "data.image_size=32", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow
def test_resume_after_sigkill_is_bitwise_identical(tmp_path):
    reference = run_cli(tmp_path / "reference", 8)
    assert reference.wait(timeout=300) == 0, reference.stdout.read()
    victim = run_cli(tmp_path / "victim", 8)
    deadline = time.time() + 300
    while not (tmp_path / "victim" / "checkpoints" / "step_0000004").exists():
        assert victim.poll() is None, victim.stdout.read()
        assert time.time() < deadline
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not (tmp_path / "victim" / "checkpoints" / "step_0000008").exists()
    resumed = run_cli(tmp_path / "victim", 8, extra=["resume=latest"])
    output = resumed.communicate(timeout=300)[0]
    assert resumed.returncode == 0, output
    assert "resumed from" in output
    a = read_state_dict(tmp_path / "reference" / "checkpoints" / "step_0000008" / "model.safetensors")
    b = read_state_dict(tmp_path / "victim" / "checkpoints" / "step_0000008" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_two_rank_ddp_step_equals_one_rank_on_the_same_global_batch(tmp_path):
    worker = Path(__file__).with_name("train_worker.py")
    # plain: 3 steps of loss="fine", where the temperature gets no gradient (before the fix DDP's second
    # step failed waiting for it); grad_cache, and global (batch_scope="global": the same batch_size on 2
    # ranks as on 1): one step of InfoNCE + triplet
    for mode in ("plain", "grad_cache", "global"):
        per_rank = "8" if mode == "global" else "4"
        two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                              str(worker), str(tmp_path / f"two_{mode}"), per_rank, mode], capture_output=True, text=True,
                             timeout=300)
        assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
        one = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
                              str(worker), str(tmp_path / f"one_{mode}"), "8", mode], capture_output=True, text=True, timeout=300)
        assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
        a = read_state_dict(latest_checkpoint(tmp_path / f"two_{mode}") / "model.safetensors")
        b = read_state_dict(latest_checkpoint(tmp_path / f"one_{mode}") / "model.safetensors")
        assert_weights_close(a, b, atol=1e-6)


def cli_one_step(batch_size: int) -> list[str]:
    """One optimiser step of the preset through `finelip train`, with Adam's eps at 1 (the update
    is then linear in the gradient, so two summation orders agree to float32 precision)."""
    return ["--preset", "synthetic-tiny", "--eval-size", "0", "--set", "steps=1", f"batch_size={batch_size}",
            "lr_backbone=1e-2", "lr_new=1e-2", "adam_eps=1.0", "warmup_steps=0", "eval.size=8", "eval.reference=false",
            "progress=false"]


def test_finelip_train_under_torchrun_joins_one_process_group(tmp_path):
    # Before issue 20 the CLI never started the process group: each torchrun rank trained alone on
    # its 4 pairs (and both wrote one folder). Joined, 2 ranks x 4 pairs are the one process's 8.
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "finelip_kit.cli", "train", "--out", str(tmp_path / "two"), *cli_one_step(4),
                          *(["tracker=tensorboard"] if TENSORBOARD else [])],
                         capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    one = subprocess.run([sys.executable, "-m", "finelip_kit.cli", "train", "--out", str(tmp_path / "one"), *cli_one_step(8)],
                         capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]
    a = read_state_dict(tmp_path / "two" / "model" / "model.safetensors")
    b = read_state_dict(tmp_path / "one" / "model" / "model.safetensors")
    assert_weights_close(a, b, atol=1e-6)
    assert json.loads((tmp_path / "two.json").read_text())["status"] == "ok"  # one record, from rank 0
    if TENSORBOARD:  # trackers too: rank 0 only
        assert len(list((tmp_path / "two" / "tensorboard").glob("events.out.tfevents.*"))) == 1


def test_a_signal_during_fit_stops_after_the_step_with_a_checkpoint_and_restores_the_handlers(tmp_path):
    import signal

    from finelip_kit.train.preemption import Preempted

    before = {name: signal.getsignal(getattr(signal, name)) for name in ("SIGTERM", "SIGUSR1", "SIGUSR2")}

    def on_log(record):
        if record.get("step") == 2:
            os.kill(os.getpid(), signal.SIGUSR1)  # arrives mid-run: the trainer finishes the step it is in

    trainer = Trainer(tiny(loss="global"), scenes(64), config(tmp_path, steps=6, log_every=1, save_every=100), on_log=on_log)
    with pytest.raises(Preempted, match=r"stopped by SIGUSR1 after step 2; checkpoint .*step_0000002 saved") as stopped:
        trainer.fit()
    assert stopped.value.step == 2 and stopped.value.checkpoint == latest_checkpoint(tmp_path / "run")
    assert {name: signal.getsignal(getattr(signal, name)) for name in before} == before


def test_a_requeued_slurm_job_resumes_and_only_then():
    from finelip_kit.train.preemption import resume_after_requeue, slurm_job

    asked = TrainConfig(requeue=True)
    assert resume_after_requeue(asked, {"SLURM_RESTART_COUNT": "1"}).resume == "latest"
    assert resume_after_requeue(asked, {"SLURM_RESTART_COUNT": "0"}).resume is None
    assert resume_after_requeue(TrainConfig(), {"SLURM_RESTART_COUNT": "2"}).resume is None  # not asked to requeue
    assert resume_after_requeue(TrainConfig(requeue=True, resume="/x"), {"SLURM_RESTART_COUNT": "1"}).resume == "/x"
    assert slurm_job({"SLURM_JOB_ID": "12"}) == "12" and slurm_job({}) is None
    assert slurm_job({"SLURM_JOB_ID": "14", "SLURM_ARRAY_JOB_ID": "12", "SLURM_ARRAY_TASK_ID": "2"}) == "12_2"


def test_a_failed_checkpoint_write_names_the_intact_previous_one_and_removes_its_temporary(tmp_path, monkeypatch):
    import safetensors.torch

    from finelip_kit.train.checkpoint import CheckpointWriteError

    trainer = Trainer(tiny(loss="global"), scenes(64), config(tmp_path, steps=2))
    trainer.fit()
    good = latest_checkpoint(tmp_path / "run")

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    trainer.step = 3
    with pytest.raises(CheckpointWriteError, match=rf"step 3 .*No space left on device.*the previous checkpoint "
                                                   rf"'{good}' is intact"):
        trainer.save_checkpoint()
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == [good.name]


# ----------------------------------------------------------------------------- one epoch plan, one checkpoint interface
def test_both_samplers_follow_one_epoch_plan_with_one_seed_formula(tmp_path):
    from finelip_kit.data import load_pairs
    from finelip_kit.data.epochs import EpochPlan, epoch_seed, sample_seed
    from finelip_kit.data.shards import ShardEpoch, write_shards
    from finelip_kit.train import SeededPairs

    assert epoch_seed(3, 2) == 300_011 and sample_seed(3, 2, 7) == 1697298855448914201  # the formulas before the merge
    write_shards(scenes(50), tmp_path / "shards", shard_size=7)
    samplers = (EpochSampler(50, batch_size=4, seed=3, rank=1, world_size=2),
                ShardEpoch(load_pairs(f"wds:{tmp_path / 'shards'}"), 4, seed=3, rank=1, world_size=2))
    for sampler in samplers:
        assert isinstance(sampler, EpochPlan)
        assert (sampler.batches_per_epoch, sampler.dropped_per_epoch) == (6, 2)
        sampler.set_epoch(2, start_batch=1)
        assert (sampler.epoch, sampler.start_batch) == (2, 1)
        assert torch.equal(torch.randperm(50, generator=sampler.generator()),
                           torch.randperm(50, generator=torch.Generator().manual_seed(300_011)))
    # the map-style order: epoch 2's permutation, rank 1's half of each global batch from batch 1 on
    order = torch.randperm(50, generator=torch.Generator().manual_seed(epoch_seed(3, 2))).tolist()
    assert list(samplers[0]) == [i for b in range(1, 6) for i in order[b * 8 + 4: b * 8 + 8]]
    # one augmentation seed: SeededPairs' item seed is sample_seed(seed, epoch, index)
    pairs = SeededPairs(scenes(8), transform=lambda image: torch.rand(2), seed=3)
    pairs.transform.train = True
    pairs.epoch = 2
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(sample_seed(3, 2, 5))
        expected = torch.rand(2)
    assert torch.equal(pairs[5]["image"], expected)
    for make in (lambda: EpochSampler(5, batch_size=4, world_size=2), lambda: ShardEpoch(load_pairs(
            f"wds:{tmp_path / 'shards'}"), 32, world_size=2)):
        with pytest.raises(ValueError, match=r"fewer than one global batch \((4|32) x 2 ranks\); lower batch_size or add data"):
            make()


def test_the_checkpoint_interface_round_trips_weights_state_and_every_generator(tmp_path):
    import random

    import numpy as np

    from finelip_kit.train.checkpoint import find_checkpoint, read_checkpoint, restore_rng, rng_state, write_checkpoint

    model = tiny()
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    saved = rng_state()
    state = {"step": 4, "note": "plain values", "train_config": json.dumps(config(tmp_path).to_dict()), **saved}
    paths = [write_checkpoint(tmp_path / "run", step, model, state, keep_last=2) for step in (2, 4, 6)]
    assert [p.name for p in sorted((tmp_path / "run" / "checkpoints").iterdir())] == ["step_0000004", "step_0000006"]
    assert find_checkpoint(tmp_path / "run", "latest") == paths[-1] and find_checkpoint(tmp_path / "run", paths[1]) == paths[1]
    with pytest.raises(FileNotFoundError, match="is not a complete training checkpoint"):
        find_checkpoint(tmp_path / "run", tmp_path / "run" / "checkpoints" / "step_0000002")
    expected = (random.random(), float(np.random.rand()), float(torch.rand(())))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)  # move every generator elsewhere
    fresh = create_model("tiny", **SMALL)  # other weights (the generators were moved)
    restored = read_checkpoint(paths[-1], config(tmp_path), fresh)
    assert restored["step"] == 4 and restored["note"] == "plain values"
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    restore_rng(restored)
    assert (random.random(), float(np.random.rand()), float(torch.rand(()))) == expected
    with pytest.raises(ValueError, match="the training settings differ from the checkpoint's"):
        read_checkpoint(paths[-1], config(tmp_path, batch_size=4), fresh)


def test_trackers_end_in_one_place_a_bare_trainer_closes_its_own_and_leaves_the_callers_open(tmp_path, monkeypatch):
    from finelip_kit.train.trackers import Trackers

    closed = []
    monkeypatch.setattr(Trackers, "close", lambda self, failed=False: closed.append((self.out_dir.name, failed)))
    with pytest.raises(RuntimeError, match="boom"):
        with Trackers((), tmp_path / "block"):
            raise RuntimeError("boom")
    assert closed == [("block", True)]
    Trainer(tiny(), scenes(16), config(tmp_path)).fit()  # its own (config.tracker's, here none): closed at the end
    assert closed[-1] == ("run", False)
    mine = Trackers((), tmp_path / "mine")
    Trainer(tiny(), scenes(16), config(tmp_path / "b"), trackers=mine).fit()  # the caller's: left open
    assert closed[-1] == ("run", False) and len(closed) == 2
    failing = Trainer(tiny(), scenes(16), config(tmp_path / "c", max_nonfinite=1))
    monkeypatch.setattr(failing, "_train_step", lambda micro: (_ for _ in ()).throw(FloatingPointError("nan")))
    with pytest.raises(FloatingPointError):
        failing.fit()
    assert closed[-1] == ("run", True)  # a failed fit ends its tracker runs as failed
