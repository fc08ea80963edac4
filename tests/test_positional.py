import pytest
import torch

from finelip_kit.positional import interpolation_matrix, kps_ratio, stretch_position_embedding
from reference import kps_stretch_longclip


def test_kps_77_to_248_equals_longclip_release_exactly_on_integer_tables():
    table = torch.randint(-16, 16, (77, 8)).double()
    stretched = stretch_position_embedding(table, 248, keep=20, mode="kps")
    assert stretched.shape == (248, 8)
    assert torch.equal(stretched, kps_stretch_longclip(table, keep=20))


def test_kps_matches_longclip_release_on_random_float32_table():
    table = torch.randn(77, 512)
    stretched = stretch_position_embedding(table, 248)
    assert stretched.dtype == torch.float32
    torch.testing.assert_close(stretched, kps_stretch_longclip(table), atol=1e-6, rtol=0)


def test_kps_pinned_values_small_table():
    # 5 rows, keep 2, ratio 2: rows 0-1 copied; pairs (2,3),(3,4) interpolated; 2 extrapolated.
    table = torch.tensor([[0.0], [10.0], [20.0], [40.0], [80.0]])
    stretched = stretch_position_embedding(table, 8, keep=2)
    expected = [0, 10, 20, 30, 40, 60, 80, 100]
    assert stretched.flatten().tolist() == expected
    assert kps_ratio(5, 8, keep=2) == 2


def test_kps_weights_are_the_documented_quarters():
    weights = interpolation_matrix(77, 248, keep=20, mode="kps")
    assert torch.equal(weights[:20], torch.eye(77, dtype=torch.float64)[:20])
    # Original row 20 and 21 give rows 20..23 with weights (1,0), (3/4,1/4), (1/2,1/2), (1/4,3/4).
    assert weights[20:24, 20:22].tolist() == [[1, 0], [0.75, 0.25], [0.5, 0.5], [0.25, 0.75]]
    # Last four rows extrapolate: last + j/4 (last - previous).
    assert weights[244:, 75:77].tolist() == [[0, 1], [-0.25, 1.25], [-0.5, 1.5], [-0.75, 1.75]]
    assert torch.allclose(weights.sum(-1), torch.ones(248, dtype=torch.float64))


@pytest.mark.parametrize("target", [77, 100, 248, 300, 512])
def test_kps_any_target_length_keeps_first_rows_and_is_cut_from_the_ratio_table(target):
    table = torch.randn(77, 16, dtype=torch.float64)
    stretched = stretch_position_embedding(table, target, keep=20)
    assert stretched.shape == (target, 16)
    assert torch.equal(stretched[:20], table[:20])
    ratio = kps_ratio(77, target, keep=20)
    full = stretch_position_embedding(table, 20 + ratio * 57, keep=20)
    assert torch.equal(stretched, full[:target])


def test_kps_ratio_one_is_identity():
    table = torch.randn(77, 4, dtype=torch.float64)
    assert torch.equal(stretch_position_embedding(table, 77, keep=20), table)


@pytest.mark.parametrize("keep", [0, 5, 40])
def test_kps_other_keep_values(keep):
    table = torch.arange(77 * 2, dtype=torch.float64).reshape(77, 2) ** 2
    stretched = stretch_position_embedding(table, keep + 4 * (77 - keep), keep=keep)
    assert torch.equal(stretched[:keep], table[:keep])
    # Every 4th row after the kept ones is an original row.
    assert torch.equal(stretched[keep : keep + 4 * (76 - keep) : 4], table[keep:76])


def test_linear_interpolates_all_rows_uniformly():
    table = torch.tensor([[0.0], [3.0], [6.0]])
    stretched = stretch_position_embedding(table, 5, mode="linear")
    assert stretched.flatten().tolist() == [0.0, 1.5, 3.0, 4.5, 6.0]
    table = torch.randn(77, 8, dtype=torch.float64)
    stretched = stretch_position_embedding(table, 248, mode="linear")
    assert torch.equal(stretched[0], table[0]) and torch.allclose(stretched[-1], table[-1])
    reference = torch.nn.functional.interpolate(table.T[None], size=248, mode="linear", align_corners=True)[0].T
    torch.testing.assert_close(stretched, reference)


def test_none_truncates_and_refuses_to_stretch():
    table = torch.randn(77, 4)
    assert torch.equal(stretch_position_embedding(table, 77, mode="none"), table)
    assert torch.equal(stretch_position_embedding(table, 50, mode="none"), table[:50])
    with pytest.raises(ValueError, match="context length must be <= 77, got 248"):
        stretch_position_embedding(table, 248, mode="none")


def test_bad_arguments_name_the_value():
    with pytest.raises(ValueError, match="stretch mode must be one of .* got 'cubic'"):
        stretch_position_embedding(torch.randn(77, 4), 248, mode="cubic")
    with pytest.raises(ValueError, match=r"keep must be in \[0, 75\].*got 76"):
        stretch_position_embedding(torch.randn(77, 4), 248, keep=76)
    with pytest.raises(ValueError, match="2-D"):
        stretch_position_embedding(torch.randn(77), 248)


def test_scratch_keeps_original_rows_and_draws_new_ones_reproducibly():
    table = torch.randn(77, 16)
    stretched = stretch_position_embedding(table, 248, mode="scratch")
    assert stretched.shape == (248, 16)
    assert torch.equal(stretched[:77], table)
    new = stretched[77:].double()
    assert abs(new.std().item() - 0.01) < 0.001 and abs(new.mean().item()) < 0.001
    assert torch.equal(stretch_position_embedding(table, 248, mode="scratch"), stretched)
    assert torch.equal(stretch_position_embedding(table, 50, mode="scratch"), table[:50])
