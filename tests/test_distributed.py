"""Gathered losses under torchrun (2 ranks, gloo) give the single-process full-batch gradients."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import dist_worker
from finelip_kit.clim import clim_scores
from finelip_kit.losses import info_nce, positives_from_ids, triplet_loss

WORLD = 2


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={WORLD}",
        str(Path(__file__).with_name("dist_worker.py")), str(out),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parent)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


def reduce_like_ddp(per_rank):
    """DDP averages gradients over ranks; local tensors' gradients carry the world-size factor."""
    return torch.cat([g / WORLD for g in per_rank])


@pytest.mark.slow
@pytest.mark.parametrize("local_loss", [False, True])
def test_gathered_info_nce_gradients_equal_full_batch(ranks, local_loss):
    data = dist_worker.global_batch()
    images = data["images"].clone().requires_grad_()
    texts = data["texts"].clone().requires_grad_()
    scale = torch.tensor(2.0, requires_grad=True)
    info_nce(images, texts, scale, data["ids"]).backward()
    got = [r[f"info_nce_{local_loss}"] for r in ranks]
    torch.testing.assert_close(reduce_like_ddp([g[0] for g in got]), images.grad, atol=1e-6, rtol=0)
    torch.testing.assert_close(reduce_like_ddp([g[1] for g in got]), texts.grad, atol=1e-6, rtol=0)
    torch.testing.assert_close(sum(g[2] for g in got) / WORLD, scale.grad, atol=1e-6, rtol=0)


@pytest.mark.slow
def test_gathered_clim_triplet_gradients_equal_full_batch(ranks):
    data = dist_worker.global_batch()
    image_tokens = data["image_tokens"].clone().requires_grad_()
    text_tokens = data["text_tokens"].clone().requires_grad_()
    scores = clim_scores(image_tokens, text_tokens)
    triplet_loss(scores, positives_from_ids(data["ids"], 8, scores.device)).backward()
    torch.testing.assert_close(reduce_like_ddp([r["triplet"][0] for r in ranks]), image_tokens.grad, atol=1e-6, rtol=0)
    torch.testing.assert_close(reduce_like_ddp([r["triplet"][1] for r in ranks]), text_tokens.grad, atol=1e-6, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name, augmented", [("model", False), ("model_two_inputs", True)])
def test_model_forward_gradients_averaged_over_ranks_equal_full_batch(ranks, name, augmented):
    """The model's loss under DDP-style gathering equals the full batch's, with one text input and
    with DeBias-CLIP's two (the augmented caption's terms gathered like the full caption's)."""
    from finelip_kit import get_tokenizer

    model = dist_worker.tiny_model()
    terms = model(dist_worker.model_batch(get_tokenizer(context_length=64), augmented), augmented_weight=0.5 if augmented else 1.0)
    terms["loss"].backward()
    keys = ("loss", "global", "fine") + (("global_augmented", "fine_augmented") if augmented else ())
    assert set(keys) <= set(ranks[0][f"{name}_terms"])
    for key in keys:
        torch.testing.assert_close(ranks[0][f"{name}_terms"][key], terms[key].detach(), atol=1e-5, rtol=0)
    if augmented:  # the total is the full caption's loss + 0.5 x the augmented caption's
        expected = terms["global"] + terms["fine"] * model.config.fine_weight
        expected = expected + 0.5 * (terms["global_augmented"] + terms["fine_augmented"] * model.config.fine_weight)
        extra = terms["loss"] - expected  # the other configured terms (none for this model)
        torch.testing.assert_close(extra, torch.zeros(()), atol=1e-6, rtol=0)
    compared = 0
    for name_, param in model.named_parameters():
        if param.grad is None:
            continue
        averaged = sum(r[name][name_] for r in ranks) / WORLD
        # float32 sums in another order: equal to 1e-6 relative to the gradient's largest entry.
        largest = param.grad.abs().max().clamp(min=1.0)
        assert (averaged - param.grad).abs().max() <= 1e-6 * largest, name_
        compared += 1
    assert compared == len([p for p in model.parameters() if p.requires_grad])
