"""The fused Triton CLIM kernel (issue 22's candidate against the chunked scorer) gives
``clim_scores``' values. Run here under Triton's CPU interpreter, in a fresh process (Triton reads
TRITON_INTERPRET when it is imported); its speed is measured on a GPU by benchmarks/bench_gpu.py."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from finelip_kit.clim_fused import clim_scores_fused

pytest.importorskip("triton")
ROOT = Path(__file__).resolve().parents[1]


def test_the_fused_kernel_gives_the_chunked_scores_with_masks_and_ragged_blocks():
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "clim_fused_worker.py")], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "TRITON_INTERPRET": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["shape"] == [5, 11] and result["dtype"] == result["bf16_dtype"] == "torch.float32"
    assert result["score_range"][1] - result["score_range"][0] > 0.1  # scores that differ, not one constant
    assert result["masked"] <= 1e-6 and result["unmasked"] <= 1e-6 and result["slope"] <= 1e-6
    # bfloat16 tokens (the trainer's autocast): float32 scores within bfloat16's rounding of the inputs,
    # and not the float32 path again
    assert 0 < result["bf16"] <= 1e-2


def test_the_fused_kernel_refuses_what_it_cannot_run(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    images, texts = torch.randn(2, 3, 16), torch.randn(2, 4, 16)
    with pytest.raises(ValueError, match="runs on CUDA .* tokens are on cpu: use finelip_kit.clim.clim_scores"):
        clim_scores_fused(images, texts)
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # past the device check: the dtype and mask checks
    with pytest.raises(ValueError, match="float32, bfloat16 or float16 tokens .* got torch.float64"):
        clim_scores_fused(images.double(), texts.double())
    with pytest.raises(ValueError, match="text_mask must be a bool tensor of shape"):
        clim_scores_fused(images, texts, text_mask=torch.ones(2, 5, dtype=torch.bool))


@pytest.mark.parametrize("capability", [80, 90])  # A100, H100 / H200
def test_the_fused_kernel_compiles_to_a_cubin_for_ampere_and_hopper(capability):
    """No GPU here: Triton's own compiler and ptxas build the kernel for the device, which checks
    everything up to the machine code (types, layouts, shared memory) but not the speed."""
    import triton
    from triton.backends.compiler import GPUTarget

    from finelip_kit.clim_fused import _kernel

    pointers = {"image_valid": "*i8", "text_valid": "*i8", "scores": "*fp32"}
    scalars = {name: "i32" for name in ("n_texts", "a", "b", "d", "text_blocks")}
    for dtype, ieee in (("fp32", True), ("bf16", False)):
        signature = {"images": f"*{dtype}", "texts": f"*{dtype}", **pointers, **scalars, "slope": "fp32",
                     **dict.fromkeys(("BLOCK_A", "BLOCK_B", "BLOCK_D", "TEXTS", "IEEE", "UPCAST"), "constexpr")}
        # the paper's 39 image tokens (padded to 64) against up to 248 text tokens (256)
        source = triton.compiler.ASTSource(fn=_kernel(), signature=signature, constexprs={
            "BLOCK_A": 64, "BLOCK_B": 256, "BLOCK_D": 64, "TEXTS": 8, "IEEE": ieee, "UPCAST": False})
        compiled = triton.compile(source, target=GPUTarget("cuda", capability, 32))
        assert len(compiled.asm["cubin"]) > 1000 and ".entry clim_kernel" in compiled.asm["ptx"]
