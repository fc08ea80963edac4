import math

import pytest
import torch
import torch.nn.functional as F

from finelip_kit.losses import info_nce, positives_from_ids, primary_component_loss, primary_components, triplet_loss


def test_info_nce_equals_clip_cross_entropy():
    images, texts = torch.randn(6, 8), torch.randn(6, 8)
    scale = torch.tensor(math.log(20.0))
    logits = 20.0 * F.normalize(images, dim=-1) @ F.normalize(texts, dim=-1).T
    labels = torch.arange(6)
    expected = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    torch.testing.assert_close(info_nce(images, texts, scale), expected)


def test_info_nce_hand_computed_two_by_two():
    # Orthonormal pairs, scale 1: logits [[1, 0], [0, 1]] -> loss = log(1 + e^-1) each way.
    images = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    loss = info_nce(images, images.clone(), torch.tensor(0.0))
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)


def test_info_nce_with_shared_image_ids_spreads_the_target():
    images = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # images 0 and 1 are the same image
    texts = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    ids = torch.tensor([7, 7, 9])
    loss = info_nce(images, texts, torch.tensor(0.0), image_ids=ids)
    logits = images @ texts.T
    targets = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    one_way = -(targets * logits.log_softmax(-1)).sum(-1).mean()
    other = -(targets * logits.T.log_softmax(-1)).sum(-1).mean()
    assert loss.item() == pytest.approx(0.5 * (one_way + other).item(), abs=1e-6)


def test_triplet_sum_and_hardest_by_hand():
    scores = torch.tensor([[0.9, 0.8, 0.1], [0.5, 0.6, 0.7], [0.0, 0.2, 0.95]])
    positives = positives_from_ids(None, 3, scores.device)
    # image->text rows: k=0: relu(.2+.8-.9)=.1, relu(.2+.1-.9)=0 ; k=1: relu(.2+.5-.6)=.1, relu(.2+.7-.6)=.3
    #                   k=2: relu(.2+0-.95)=0, relu(.2+.2-.95)=0
    # text->image cols: k=0: relu(.2+.5-.9)=0, relu(.2+0-.9)=0 ; k=1: relu(.2+.8-.6)=.4, relu(.2+.2-.6)=0
    #                   k=2: relu(.2+.1-.95)=0, relu(.2+.7-.95)=0
    summed = triplet_loss(scores, positives, margin=0.2, negatives="sum")
    assert summed.item() == pytest.approx(0.1 + 0.1 + 0.3 + 0.4, abs=1e-6)
    hardest = triplet_loss(scores, positives, margin=0.2, negatives="hardest")
    assert hardest.item() == pytest.approx(0.1 + 0.3 + 0.4, abs=1e-6)
    mean = triplet_loss(scores, positives, margin=0.2, negatives="sum", reduction="mean")
    assert mean.item() == pytest.approx(0.9 / 3, abs=1e-6)


def test_triplet_pairs_sharing_an_image_are_not_negatives():
    scores = torch.tensor([[0.5, 0.9], [0.9, 0.5]])
    assert triplet_loss(scores, positives_from_ids(None, 2, scores.device)).item() == pytest.approx(4 * 0.6)
    same_image = positives_from_ids(torch.tensor([3, 3]), 2, scores.device)
    assert triplet_loss(scores, same_image).item() == 0.0


def test_triplet_rejects_bad_shapes_and_options():
    with pytest.raises(ValueError, match="square"):
        triplet_loss(torch.randn(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="negatives must be"):
        triplet_loss(torch.randn(2, 2), torch.eye(2, dtype=torch.bool), negatives="semi")


def test_primary_components_full_rank_is_identity_and_low_rank_matches_svd():
    x = torch.randn(20, 6, dtype=torch.float64)
    # Computed in float32 whatever the input dtype.
    torch.testing.assert_close(primary_components(x, 6), x, atol=1e-5, rtol=0)
    centred = x - x.mean(0)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    top = vh[:2].T
    expected = centred @ top @ top.T + x.mean(0)
    torch.testing.assert_close(primary_components(x, 2), expected, atol=1e-5, rtol=0)


def test_primary_component_loss_is_finite_with_small_batches():
    images = torch.randn(4, 16, requires_grad=True)  # batch < dim: repeated zero eigenvalues
    short = torch.randn(4, 16, requires_grad=True)
    loss = primary_component_loss(images, short, torch.tensor(2.0), components=8)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(images.grad).all() and torch.isfinite(short.grad).all()


def test_slot_overlap_is_one_for_collapsed_slots_and_zero_for_disjoint_ones():
    from finelip_kit.losses import slot_overlap

    uniform = torch.full((2, 4, 8), 1 / 8)
    disjoint = torch.eye(4).repeat_interleave(2, dim=1)[None] / 2  # slot k weighs tokens 2k, 2k+1
    assert slot_overlap(uniform).item() == pytest.approx(1.0) and slot_overlap(disjoint).item() == pytest.approx(0.0)
    half = torch.stack([torch.eye(4)[0], (torch.eye(4)[0] + torch.eye(4)[1]) / 2])[None]  # cosine 1/sqrt(2)
    assert slot_overlap(half).item() == pytest.approx(2 ** -0.5)
    assert slot_overlap(torch.ones(1, 1, 5)).item() == 0.0

