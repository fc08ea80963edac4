import pytest
import torch

from finelip_kit.clim import _block_sizes, clim_pair_scores, clim_scores, token_alignment
from reference import clim_scores_loop


def ragged_mask(n, length, minimum=1):
    lengths = torch.randint(minimum, length + 1, (n,))
    return torch.arange(length)[None, :] < lengths[:, None]


def test_matches_per_caption_loop_without_masks():
    images, texts = torch.randn(9, 6, 32), torch.randn(7, 5, 32)
    torch.testing.assert_close(clim_scores(images, texts), clim_scores_loop(images, texts), atol=1e-5, rtol=0)


def test_matches_loop_with_ragged_text_and_image_masks():
    images, texts = torch.randn(8, 6, 32), torch.randn(11, 9, 32)
    text_mask, image_mask = ragged_mask(11, 9), ragged_mask(8, 6)
    expected = clim_scores_loop(images, texts, text_mask, image_mask)
    got = clim_scores(images, texts, text_mask, image_mask)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("chunk_bytes", [1, 500, 5_000, 50_000, 10**9])
def test_result_is_identical_whatever_the_chunk_size(chunk_bytes):
    images, texts = torch.randn(13, 5, 16), torch.randn(10, 7, 16)
    text_mask = ragged_mask(10, 7)
    reference = clim_scores(images, texts, text_mask, chunk_bytes=10**9)
    torch.testing.assert_close(clim_scores(images, texts, text_mask, chunk_bytes=chunk_bytes), reference, atol=1e-6, rtol=0)


def test_block_sizes_respect_the_budget():
    a = b = 40
    d = 512
    assert _block_sizes(a, b, d, 1000, 1000, 2**20) == (1, 1)  # below the result's own size: smallest blocks
    for budget in (8 * 2**20, 64 * 2**20, 256 * 2**20):
        texts, images = _block_sizes(a, b, d, 1000, 1000, budget)
        used = 4 * (images * texts * (a * b + 2 * (a + b)) + texts * b * d + images * a * d + 1000 * 1000)
        assert used <= budget, (budget, texts, images, used)


def test_pair_scores_are_the_diagonal():
    images, texts = torch.randn(6, 5, 16), torch.randn(6, 8, 16)
    text_mask = ragged_mask(6, 8)
    full = clim_scores(images, texts, text_mask)
    torch.testing.assert_close(clim_pair_scores(images, texts, text_mask), torch.diagonal(full), atol=1e-6, rtol=0)


def test_known_value_by_hand():
    # One image with tokens e1, e2; one text with tokens e1, -e2.
    image = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    text = torch.tensor([[[1.0, 0.0], [0.0, -1.0]]])
    # cos: [[1, 0], [0, -1]] ; leaky: [[1, 0], [0, -0.1]]
    # text->image: max over image per text token: [1, 0] -> mean 0.5
    # image->text: max over text per image token: [1, 0] -> mean 0.5
    assert clim_scores(image, text).item() == pytest.approx(1.0)
    # Scale does not matter (cosines).
    assert clim_scores(image * 3, text * 0.5).item() == pytest.approx(1.0)


def test_padding_tokens_do_not_change_scores():
    images, texts = torch.randn(4, 5, 16), torch.randn(3, 6, 16)
    text_mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1] * 6, [1, 1, 0, 0, 0, 0]]).bool()
    garbage = texts.clone()
    garbage[~text_mask] = torch.randn(int((~text_mask).sum()), 16) * 100
    torch.testing.assert_close(clim_scores(images, texts, text_mask), clim_scores(images, garbage, text_mask))


def test_gradients_match_loop_reference():
    images = torch.randn(4, 5, 16, requires_grad=True)
    texts = torch.randn(3, 6, 16, requires_grad=True)
    mask = ragged_mask(3, 6)
    clim_scores(images, texts, mask, chunk_bytes=2000).square().sum().backward()
    grads = images.grad.clone(), texts.grad.clone()
    images.grad = texts.grad = None
    clim_scores_loop(images, texts, mask).square().sum().backward()
    torch.testing.assert_close(grads[0], images.grad, atol=1e-5, rtol=0)
    torch.testing.assert_close(grads[1], texts.grad, atol=1e-5, rtol=0)


def test_token_alignment_is_cosine():
    image, text = torch.randn(5, 8), torch.randn(3, 8)
    expected = torch.nn.functional.cosine_similarity(image[:, None], text[None], dim=-1)
    torch.testing.assert_close(token_alignment(image, text), expected, atol=1e-6, rtol=0)
    assert token_alignment(torch.randn(2, 5, 8), torch.randn(2, 3, 8)).shape == (2, 5, 3)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="dims differ: 8 vs 4"):
        clim_scores(torch.randn(2, 3, 8), torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"text_mask rows \[1\] have no valid token"):
        clim_scores(torch.randn(2, 3, 8), torch.randn(2, 3, 8), torch.tensor([[1, 0, 0], [0, 0, 0]]).bool())
    with pytest.raises(ValueError, match="text_mask must be a bool tensor of shape"):
        clim_scores(torch.randn(2, 3, 8), torch.randn(2, 3, 8), torch.ones(2, 3))


@pytest.mark.parametrize("by", ["image", "text"])
@pytest.mark.parametrize("chunk_bytes", [1, 10**9])
def test_candidate_scores_are_the_matching_entries_of_the_full_matrix(by, chunk_bytes):
    from finelip_kit.clim import clim_candidate_scores

    images, texts = torch.randn(9, 5, 16), torch.randn(11, 7, 16)
    text_mask, image_mask = ragged_mask(11, 7), ragged_mask(9, 5)
    full = clim_scores(images, texts, text_mask, image_mask)
    queries, pool = (9, 11) if by == "image" else (11, 9)
    candidates = torch.stack([torch.randperm(pool)[:4] for _ in range(queries)])
    got = clim_candidate_scores(images, texts, candidates, by, text_mask, image_mask, chunk_bytes=chunk_bytes)
    rows = torch.arange(queries).unsqueeze(1).expand_as(candidates)
    expected = full[rows, candidates] if by == "image" else full.T[rows, candidates]
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_under_bf16_autocast_the_scores_accumulate_in_float32():
    # Issue 22: the GEMM may run in bf16 (autocast), the maxima are exact, the means over up to
    # 200 tokens accumulate in float32: float32 scores within bf16's rounding of the float64 ones.
    torch.manual_seed(0)
    images = torch.randn(20, 49, 64, requires_grad=True)
    texts = torch.randn(30, 200, 64, requires_grad=True)
    mask = torch.arange(200)[None] < torch.randint(20, 200, (30,))[:, None]
    exact = clim_scores(images.double(), texts.double(), mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = clim_scores(images, texts, mask)
    assert low.dtype == torch.float32
    torch.testing.assert_close(low.double(), exact, atol=2e-3, rtol=0)
    with torch.no_grad():
        from_bf16_tokens = clim_scores(images.bfloat16(), texts.bfloat16(), mask)
    assert from_bf16_tokens.dtype == torch.float32
    torch.testing.assert_close(from_bf16_tokens.double(), exact, atol=4e-3, rtol=0)
