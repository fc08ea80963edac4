"""How a training step is executed on a device, apart from what it computes: the AdamW kernel,
TF32 matmuls, pinned host memory. The trainer and ``benchmarks/bench_gpu.py`` both take their
choices from here, so the benchmark measures what the trainer runs.

    optimizer = adamw(groups, betas, eps, kernel="auto", device=device)   # fused on CUDA
    with matmul_precision(tf32_setting(True, device)):                     # TF32 on Ampere and newer
        ...

Each choice is a setting (``train.adamw_kernel``, ``train.tf32``) so that the benchmark can time
it both ways; none changes what a run measures beyond floating-point rounding.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch

from .config import ADAMW_KERNELS  # noqa: E402


def adamw_kernel(setting: str, device: torch.device) -> str:
    """``auto``: the fused kernel on CUDA (one launch for every parameter's update); elsewhere what
    PyTorch picks by default (the for-loop on CPU), so CPU runs, and the results recorded from
    them, stay bitwise as they were. ``foreach`` / ``for-loop`` / ``fused`` force one."""
    if setting not in ADAMW_KERNELS:
        raise ValueError(f"adamw_kernel must be one of {ADAMW_KERNELS}, got {setting!r}")
    if setting == "auto":
        return "fused" if device.type == "cuda" else "default"
    return setting


def adamw(groups: list[dict[str, Any]], betas: tuple[float, float], eps: float, kernel: str,
          device: torch.device) -> torch.optim.AdamW:
    """AdamW over ``groups`` with the ``kernel`` ``adamw_kernel`` picks for ``device``."""
    chosen = adamw_kernel(kernel, device)
    if chosen == "default":
        return torch.optim.AdamW(groups, betas=betas, eps=eps)
    return torch.optim.AdamW(groups, betas=betas, eps=eps, fused=chosen == "fused", foreach=chosen == "foreach")


@contextmanager
def matmul_precision(tf32: bool | None) -> Iterator[None]:
    """float32 matmuls in TF32 (``True``: PyTorch's "high") or IEEE float32 (``False``: "highest")
    inside the block, and the process's own setting back after it (a notebook's other cells are
    not changed); ``None``: nothing is touched (CPU). PyTorch's process-wide setter is used, not
    the per-backend one: mixing the two makes ``torch.get_float32_matmul_precision`` raise, and
    inductor's autotuning calls it."""
    if tf32 is None:
        yield
        return
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(before)


def with_kernel(saved: dict[str, Any], optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """A saved optimiser state to load into ``optimizer`` under ``optimizer``'s own kernel choice.
    ``load_state_dict`` would otherwise bring back the kernel the checkpoint was written with (a
    resume with another ``adamw_kernel`` would silently keep the old one) and place the step
    counters for it."""
    groups = [{**group, "fused": now["fused"], "foreach": now["foreach"]}
              for group, now in zip(saved["param_groups"], optimizer.param_groups)]
    return {**saved, "param_groups": groups}


def tf32_setting(setting: bool, device: torch.device) -> bool | None:
    """What ``matmul_precision`` is given for ``train.tf32`` on ``device``: on CUDA devices of compute
    capability 8.0 and newer (Ampere, Hopper, ...; tensor cores run TF32) the setting itself; on
    older CUDA devices False (they have no TF32); elsewhere None (nothing to set)."""
    if device.type != "cuda":
        return None
    return bool(setting) and torch.cuda.get_device_capability(device)[0] >= 8


def pin_memory(device: torch.device) -> bool:
    """Batches are collated into page-locked memory when they go to a CUDA device: the copy is then
    asynchronous (``non_blocking``) and overlaps the previous step's work."""
    return device.type == "cuda"
