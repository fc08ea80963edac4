"""Diagnostics of the fine-grained path: known values on constructed inputs, agreement with
the evaluation on a model, and no side effects."""

import pytest
import torch
import torch.nn.functional as F

from finelip_kit.data import Collate, PairDataset, SyntheticConfig, SyntheticScenes, clip_transform
from finelip_kit.diagnose import (
    effective_slots,
    group_margins,
    loss_diagnostics,
    slot_similarity,
    slot_statistics,
    token_similarity,
    weight_entropy,
)
from finelip_kit.evaluate import evaluate_retrieval
from finelip_kit.tokenizer import get_tokenizer
from test_train import tiny

SCENES = SyntheticScenes(SyntheticConfig(image_size=32), split="val", size=16)


def test_entropy_similarity_and_effective_slots_on_known_inputs():
    uniform = torch.full((1, 2, 8), 1 / 8)
    one_hot = F.one_hot(torch.tensor([[0, 3]]), 8).float()
    assert torch.allclose(weight_entropy(uniform), torch.ones(1, 2)) and torch.allclose(weight_entropy(one_hot), torch.zeros(1, 2))
    half = torch.tensor([[[0.5, 0.5, 0.0, 0.0]]])
    assert torch.allclose(weight_entropy(half, torch.tensor([[True, True, False, False]])), torch.ones(1, 1))
    orthogonal = torch.eye(4)[None] * 3.0
    same = torch.ones(1, 4, 4)
    assert torch.allclose(slot_similarity(orthogonal), torch.zeros(1)) and torch.allclose(slot_similarity(same), torch.ones(1))
    assert torch.allclose(effective_slots(orthogonal), torch.tensor([4.0])) and torch.allclose(effective_slots(same), torch.tensor([1.0]))
    tokens = torch.stack([torch.eye(3), torch.ones(3, 3)])  # orthogonal tokens; identical ones (the last one masked)
    assert torch.allclose(token_similarity(tokens, torch.tensor([[True] * 3, [True, True, False]])), torch.tensor([0.0, 1.0]))


def test_slot_statistics_and_margins_agree_with_the_evaluation():
    model = tiny()
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = slot_statistics(model, SCENES)
    assert stats["k_image"] == 4 and 0 <= stats["image/entropy"] <= 1 and 1 <= stats["image/effective_slots"] <= 4
    assert 0 <= stats["text/entropy"] <= 1 and -1 <= stats["text/slot_cosine"] <= 1
    assert 0 <= stats["image/objects_found"] <= 100 and 0 < stats["image/slots_on_objects_chance"] <= 100
    margins = group_margins(model, SCENES)
    metrics = evaluate_retrieval(model, SCENES).metrics
    for mode in ("global", "fine", "fused"):  # a positive margin is a correct within-group choice
        assert abs(margins[f"{mode}/correct"] - metrics[f"{mode}/group/t2i"]) < 1e-4, mode
        assert margins[f"{mode}/margin_in_spread"] * margins[f"{mode}/spread"] == pytest.approx(margins[f"{mode}/margin"])
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    sharp = slot_statistics(tiny(atrm_scale_init=30.0), SCENES)  # a sharper start: lower entropy, more distinct slots
    assert sharp["image/entropy"] < stats["image/entropy"] and sharp["image/effective_slots"] > stats["image/effective_slots"]


def test_loss_diagnostics_split_the_gradient_and_count_active_hinges():
    model = tiny(loss="global+fine")
    collate = Collate(get_tokenizer(context_length=model.context_length), model.context_length)
    dataset = PairDataset(SCENES, clip_transform(model.config.vision))
    batch = collate([dataset[i] for i in range(8)])
    out = loss_diagnostics(model, batch)
    assert out["fine/grad_towers"] > 0 and out["fine/grad_new"] > 0 and out["global/grad_towers"] > 0
    assert 0 < out["fine/tower_share"] < 1
    assert 0 <= out["hinge/i2t_active"] <= 100 and 0 <= out["hinge/t2i_active"] <= 100
    assert all(p.grad is None for p in model.parameters())  # nothing accumulated, nothing stepped
