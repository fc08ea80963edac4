"""Position-embedding stretching for long text (pure functions).

Every mode is a linear map of the original table: ``stretched = W @ table`` with an
interpolation matrix ``W`` of shape ``(target_len, original_len)``. Building ``W``
explicitly keeps the formulas readable and testable on their own.

Modes
-----
``kps``     Long-CLIP's knowledge-preserving stretch. Rows ``< keep`` are copied; each
            later original row ``i`` and its successor give ``ratio`` rows with weights
            ``(1 - j/ratio, j/ratio)`` for ``j = 0..ratio-1`` (for ratio 4: 1·0, 3/4·1/4,
            1/2·1/2, 1/4·3/4); the final ``ratio`` rows extrapolate from the last two
            original rows: ``last + (j/ratio)·(last - previous)``. 77 rows, keep 20,
            ratio 4 give ``20 + 4·(77 - 20) = 248`` rows.
``linear``  Uniform linear interpolation of all rows (first and last rows kept).
``none``    No stretching: the table is returned as is (context truncated to it).
``scratch`` The baseline Long-CLIP compares against: the original rows are kept and every
            row past them is new, drawn from N(0, 0.01²) as CLIP initialises positions (a
            fixed generator, so the table is reproducible), to be learned in fine-tuning.
            Not a linear map of the table; ``interpolation_matrix`` gives its copy part.
"""

from __future__ import annotations

import math

import torch
from einops import einsum

from .defaults import STRETCH_MODES  # noqa: E402 (the one list of modes, torch-free for the settings)
SCRATCH_INIT_STD = 0.01


def kps_ratio(original_len: int, target_len: int, keep: int = 20) -> int:
    """Smallest integer ratio whose knowledge-preserving table covers ``target_len`` rows."""
    return max(1, math.ceil((target_len - keep) / (original_len - keep)))


def kps_interpolation_matrix(original_len: int, target_len: int, keep: int = 20) -> torch.Tensor:
    """``(target_len, original_len)`` float64 weights of the knowledge-preserving stretch.

    The table is built for ``ratio = kps_ratio(...)`` and cut to ``target_len`` rows, so
    any target works; 77 → 248 with keep 20 is exactly Long-CLIP's ratio-4 table.
    """
    _check_lengths(original_len, target_len)
    if not 0 <= keep < original_len - 1:
        raise ValueError(
            f"keep must be in [0, {original_len - 2}] for a table of {original_len} rows, got {keep}"
        )
    ratio = kps_ratio(original_len, target_len, keep)
    full_len = keep + ratio * (original_len - keep)
    weights = torch.zeros(full_len, original_len, dtype=torch.float64)
    for row in range(keep):
        weights[row, row] = 1.0
    for i in range(keep, original_len - 1):
        for j in range(ratio):
            row = keep + (i - keep) * ratio + j
            weights[row, i] = (ratio - j) / ratio
            weights[row, i + 1] = j / ratio
    last, previous = original_len - 1, original_len - 2
    for j in range(ratio):
        row = full_len - ratio + j
        weights[row, last] = 1.0 + j / ratio
        weights[row, previous] = -j / ratio
    return weights[:target_len]


def linear_interpolation_matrix(original_len: int, target_len: int) -> torch.Tensor:
    """``(target_len, original_len)`` float64 weights of uniform linear interpolation."""
    _check_lengths(original_len, target_len)
    weights = torch.zeros(target_len, original_len, dtype=torch.float64)
    if target_len == 1:
        weights[0, 0] = 1.0
        return weights
    for row in range(target_len):
        position = row * (original_len - 1) / (target_len - 1)
        low = min(int(math.floor(position)), original_len - 2)
        frac = position - low
        weights[row, low] = 1.0 - frac
        weights[row, low + 1] = frac
    return weights


def interpolation_matrix(original_len: int, target_len: int, keep: int = 20, mode: str = "kps") -> torch.Tensor:
    """The ``(target_len, original_len)`` matrix of ``mode`` (see the module docstring)."""
    if mode == "kps":
        return kps_interpolation_matrix(original_len, target_len, keep)
    if mode == "linear":
        return linear_interpolation_matrix(original_len, target_len)
    if mode == "scratch":
        return torch.eye(target_len, original_len, dtype=torch.float64)
    if mode == "none":
        if target_len > original_len:
            raise ValueError(
                f"stretch mode 'none' keeps the original {original_len} positions, so the context "
                f"length must be <= {original_len}, got {target_len}; choose mode 'kps' or 'linear' to stretch"
            )
        return torch.eye(original_len, dtype=torch.float64)[:target_len]
    raise ValueError(f"stretch mode must be one of {STRETCH_MODES}, got {mode!r}")


def stretch_position_embedding(
    table: torch.Tensor, target_len: int, keep: int = 20, mode: str = "kps"
) -> torch.Tensor:
    """Stretch a ``(n, d)`` position table to ``(target_len, d)``; dtype and device kept.

    >>> stretch_position_embedding(torch.randn(77, 512), 248).shape
    torch.Size([248, 512])
    """
    if table.ndim != 2:
        raise ValueError(f"position table must be 2-D (positions, dim), got shape {tuple(table.shape)}")
    weights = interpolation_matrix(table.shape[0], target_len, keep, mode).to(table.device)
    stretched = einsum(weights, table.to(torch.float64), "target source, source d -> target d")
    if mode == "scratch" and target_len > table.shape[0]:
        generator = torch.Generator().manual_seed(0)
        new_rows = torch.randn(target_len - table.shape[0], table.shape[1], generator=generator, dtype=torch.float64)
        stretched[table.shape[0]:] = SCRATCH_INIT_STD * new_rows.to(table.device)
    return stretched.to(table.dtype)


def _check_lengths(original_len: int, target_len: int) -> None:
    if original_len < 2:
        raise ValueError(f"need a position table of at least 2 rows to stretch, got {original_len}")
    if target_len < 1:
        raise ValueError(f"target length must be >= 1, got {target_len}")
