"""How the towers execute (issue 22, CPU side): fused SDPA attention equals the eager reference,
gradient checkpointing leaves the gradients unchanged, and training resumes exactly under each."""

import pytest
import torch

from finelip_kit import create_model, get_tokenizer
from finelip_kit.data import Collate, SyntheticConfig, SyntheticScenes, clip_transform
from finelip_kit.data.collate import PairDataset
from finelip_kit.train import TrainConfig, Trainer
from finelip_kit.train.execution import adamw_kernel, matmul_precision, pin_memory, tf32_setting

SMALL = {"vision.image_size": 32, "text.context_length": 200, "atrm_k": 4}


def tiny():
    torch.manual_seed(0)
    return create_model("tiny", **SMALL)


def batch(model, n=6):
    scenes = SyntheticScenes(SyntheticConfig(image_size=32), split="train", size=n)
    collate = Collate(get_tokenizer(context_length=model.context_length), model.context_length)
    data = PairDataset(scenes, clip_transform(model.config.vision))
    return collate([data[i] for i in range(n)])


def loss_and_gradients(model, inputs):
    model.zero_grad(set_to_none=True)
    terms = model.loss_terms(model.encode_image(inputs["images"]),
                             model.encode_text(inputs["input_ids"], inputs["attention_mask"]))
    terms["loss"].backward()
    return terms["loss"].detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_fused_attention_equals_the_eager_reference_in_both_towers():
    model = tiny()
    assert model.attention == "sdpa"  # the default
    inputs = batch(model)
    assert inputs["attention_mask"].sum(-1).max() > 150  # long captions: most of the 200 positions in use
    with torch.no_grad():
        fused = (model.encode_image(inputs["images"]), model.encode_text(inputs["input_ids"], inputs["attention_mask"]))
    fused_loss, fused_grads = loss_and_gradients(model.train(), inputs)
    model.set_attention("eager")
    assert model.attention == "eager"
    assert not any(block.attn.fused_attn for block in model.vision.vit.blocks)
    model.eval()
    with torch.no_grad():
        eager = (model.encode_image(inputs["images"]), model.encode_text(inputs["input_ids"], inputs["attention_mask"]))
    for a, b in zip(fused, eager):
        torch.testing.assert_close(a.global_, b.global_, atol=1e-5, rtol=0)
        torch.testing.assert_close(a.tokens[a.mask], b.tokens[b.mask], atol=1e-5, rtol=0)
    eager_loss, eager_grads = loss_and_gradients(model.train(), inputs)
    torch.testing.assert_close(fused_loss, eager_loss, atol=1e-5, rtol=1e-6)
    assert fused_grads.keys() == eager_grads.keys() and len(fused_grads) > 50
    for name in fused_grads:
        torch.testing.assert_close(fused_grads[name], eager_grads[name], atol=1e-5, rtol=1e-4, msg=name)
    with pytest.raises(ValueError, match="attention must be one of .* got 'flash'"):
        model.set_attention("flash")
    with pytest.raises(ValueError, match="attention must be one of .* got 'flash'"):
        TrainConfig(attention="flash")
    with pytest.raises(ValueError, match="compile must be true, false or one of torch.compile's backends .* got 'fast'"):
        TrainConfig(compile="fast")


def text_checkpointing(model) -> bool:
    text = model.text.transformer
    return text.is_activation_checkpointing if hasattr(text, "is_activation_checkpointing") else text.is_gradient_checkpointing


def test_gradient_checkpointing_gives_the_same_gradients():
    model = tiny().train()
    inputs = batch(model)
    plain_loss, plain = loss_and_gradients(model, inputs)
    model.set_grad_checkpointing(True)
    assert model.vision.vit.grad_checkpointing and text_checkpointing(model)
    checkpointed_loss, checkpointed = loss_and_gradients(model, inputs)
    assert torch.equal(plain_loss, checkpointed_loss)
    for name in plain:
        torch.testing.assert_close(plain[name], checkpointed[name], atol=1e-6, rtol=1e-5, msg=name)
    model.set_grad_checkpointing(False)
    assert not model.vision.vit.grad_checkpointing and not text_checkpointing(model)


# compile: aot_eager traces and compiles the towers' graphs as inductor does, without inductor's
# minute of C++ code generation on CPU (inductor itself: measured once, see the README)
@pytest.mark.parametrize("option", [{"attention": "eager"}, {"grad_checkpointing": True}, {"compile": "aot_eager"},
                                    {"adamw_kernel": "fused"}])
def test_training_under_each_option_resumes_exactly_and_matches_the_default(tmp_path, option):
    data = SyntheticScenes(SyntheticConfig(image_size=32), split="train", size=32)

    def train(name, resume=None, **settings):
        model = tiny()
        config = TrainConfig(out_dir=str(tmp_path / name), steps=4, batch_size=8, warmup_steps=0, progress=False,
                             lr_backbone=1e-3, lr_new=1e-3, save_every=2, keep_last=4, resume=resume, log_every=1,
                             **settings)
        history = Trainer(model, data, config).fit()
        first = history[0]
        if settings.get("compile"):  # the first step's time is the compilation's, not a throughput
            assert "compile_s" in first and "samples_per_s" not in first and "samples_per_s" in history[1]
        else:
            assert "compile_s" not in first and "samples_per_s" in first
        return model.state_dict()

    default = train("default")
    straight = train("straight", **option)
    assert straight.keys() == default.keys()  # compiled in place: the checkpoint keeps the model's own keys
    resumed = train("resumed", resume=str(tmp_path / "straight" / "checkpoints" / "step_0000002"), **option)
    for key in straight:
        assert torch.equal(straight[key], resumed[key]), key
        torch.testing.assert_close(straight[key], default[key], atol=1e-4, rtol=1e-3, msg=key)
    # a checkpoint may be resumed with the other execution choice: it changes no data position or state
    crossed = train("crossed", resume=str(tmp_path / "default" / "checkpoints" / "step_0000002"), **option)
    for key in crossed:
        torch.testing.assert_close(crossed[key], default[key], atol=1e-4, rtol=1e-3, msg=key)


def test_the_adamw_kernel_is_chosen_per_device_and_a_resume_takes_the_one_asked_for(tmp_path):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert adamw_kernel("auto", cpu) == "default" and adamw_kernel("auto", cuda) == "fused"
    assert adamw_kernel("fused", cpu) == "fused" and adamw_kernel("foreach", cuda) == "foreach"
    assert adamw_kernel("for-loop", cuda) == "for-loop"
    with pytest.raises(ValueError, match="adamw_kernel must be one of .* got 'apex'"):
        TrainConfig(adamw_kernel="apex")
    data = SyntheticScenes(SyntheticConfig(image_size=32), split="train", size=16)

    def trainer(name, **settings):
        config = TrainConfig(out_dir=str(tmp_path / name), steps=2, batch_size=8, progress=False, **settings)
        return Trainer(tiny(), data, config)

    first = trainer("default")  # on CPU: PyTorch's own default, the for-loop (what every CPU result was made with)
    assert [(g["fused"], g["foreach"]) for g in first.optimizer.param_groups] == [(None, None)] * len(first.optimizer.param_groups)
    assert [(g["fused"], g["foreach"]) for g in trainer("f", adamw_kernel="foreach").optimizer.param_groups][0] == (False, True)
    first.fit()
    # load_state_dict alone would bring the checkpoint's kernel back under adamw_kernel="fused"
    second = trainer("fused", adamw_kernel="fused")
    second.load_checkpoint(tmp_path / "default" / "checkpoints" / "step_0000002")
    assert all(g["fused"] and not g["foreach"] for g in second.optimizer.param_groups)
    states = list(second.optimizer.state.values())
    assert len(states) > 50 and all(s["step"].item() == 2 for s in states)


def test_tf32_is_set_on_ampere_and_newer_only_and_the_process_setting_comes_back(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert tf32_setting(True, cpu) is None and not pin_memory(cpu) and pin_memory(cuda)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))  # A100
    assert tf32_setting(True, cuda) is True and tf32_setting(False, cuda) is False
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))  # V100: no TF32
    assert tf32_setting(True, cuda) is False
    before = torch.get_float32_matmul_precision()
    with matmul_precision(True):
        assert torch.get_float32_matmul_precision() == "high" and torch.backends.cuda.matmul.fp32_precision == "tf32"
    assert torch.get_float32_matmul_precision() == before
    with matmul_precision(False):
        assert torch.get_float32_matmul_precision() == "highest"
    with matmul_precision(None):
        assert torch.get_float32_matmul_precision() == before
    assert torch.get_float32_matmul_precision() == before
    with pytest.raises(ValueError, match="tf32 must be true or false, got 'yes'"):
        TrainConfig(tf32="yes")
