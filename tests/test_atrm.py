import pytest
import torch

from finelip_kit.atrm import ATRM, masked_softmax


def test_shapes_and_weights_sum_to_one_over_valid_tokens():
    atrm = ATRM(dim=16, k=5)
    tokens = torch.randn(3, 9, 16)
    mask = torch.arange(9)[None, :] < torch.tensor([[9], [4], [1]])
    refined, weights = atrm(tokens, mask)
    assert refined.shape == (3, 5, 16) and weights.shape == (3, 5, 9)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 5))
    assert (weights[~mask[:, None, :].expand_as(weights)] == 0).all()
    # A single valid token takes all the weight: every slot is that token.
    torch.testing.assert_close(refined[2], tokens[2, :1].expand(5, 16))


def test_padding_content_does_not_change_the_output():
    atrm = ATRM(dim=16, k=4)
    tokens = torch.randn(2, 7, 16)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 1, 1, 0]]).bool()
    refined, weights = atrm(tokens, mask)
    garbage = tokens.clone()
    garbage[~mask] = torch.randn(int((~mask).sum()), 16) * 1e3
    refined2, weights2 = atrm(garbage, mask)
    assert torch.equal(refined, refined2) and torch.equal(weights, weights2)
    # And it equals running each row on its valid tokens alone.
    for row in range(2):
        alone, _ = atrm(tokens[row : row + 1, mask[row]])
        torch.testing.assert_close(refined[row], alone[0], atol=1e-6, rtol=0)


def test_matches_a_hand_written_reference():
    atrm = ATRM(dim=8, k=3, hidden_ratio=0.5)
    with torch.no_grad():
        atrm.scale.fill_(2.0)
    tokens = torch.randn(2, 5, 8)
    refined, weights = atrm(tokens)
    norm, fc1, act, fc2 = atrm.score
    logits = fc2(act(fc1(norm(tokens)))).transpose(1, 2) * 2.0  # (b, k, n)
    expected_weights = torch.softmax(logits, dim=-1)
    torch.testing.assert_close(weights, expected_weights)
    torch.testing.assert_close(refined, expected_weights @ tokens)
    assert fc1.out_features == 4


def test_all_masked_row_gives_zeros_and_finite_gradients():
    atrm = ATRM(dim=8, k=2)
    tokens = torch.randn(2, 4, 8, requires_grad=True)
    mask = torch.tensor([[True, True, False, False], [False] * 4])
    refined, weights = atrm(tokens, mask)
    assert torch.equal(refined[1], torch.zeros(2, 8)) and torch.equal(weights[1], torch.zeros(2, 4))
    refined.sum().backward()
    assert torch.isfinite(tokens.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in atrm.parameters())


def test_masked_softmax_without_mask_is_softmax():
    logits = torch.randn(3, 6)
    torch.testing.assert_close(masked_softmax(logits, None), logits.softmax(-1))


def test_k_must_be_positive():
    with pytest.raises(ValueError, match="atrm_k must be >= 1, got 0"):
        ATRM(dim=8, k=0)
