"""Issue 22's device scripts run end to end at toy size on CPU (their numbers only mean anything
on a GPU): the benchmark prints every row with the open_clip ratio, and the smoke run resumes
bitwise and evaluates."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from rounding import ratio_consistent, sum_consistent

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                          timeout=900, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def test_bench_gpu_prints_the_step_split_mfu_the_open_clip_ratio_and_gallery_scoring():
    out = run("bench_gpu.py", "--tiny", "--device", "cpu")
    assert "device: CPU" in out and "measured matmul peak" in out
    rows = [line for line in out.splitlines() if line.startswith("| tiny | 8 |")]
    assert [row.split("|")[3].strip() for row in rows] == ["off", "on"]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        samples, step, data, forward, backward, optimiser = (float(c.replace(",", "")) for c in cells[3:9])
        # every figure is printed rounded: the checks allow exactly that rounding (tests/rounding.py)
        assert samples > 0 and step > 0 and sum_consistent(step, [data, forward, backward, optimiser])
        assert re.fullmatch(r"\d+\.\d%", cells[10]) and float(cells[10][:-1]) > 0  # MFU
        assert float(cells[11]) > 0 and ratio_consistent(float(cells[12]), step, float(cells[11])), cells
    # each execution choice flipped alone, against the trainer's defaults, in the same run
    table = out.split("| execution (tiny, batch 8, grad cache off) |")[1].split("\n\n")[0].splitlines()[2:]
    options = {cells[0]: cells[1:] for cells in ([c.strip() for c in row.strip("|").split("|")] for row in table)}
    assert list(options) == ["the trainer's defaults (SDPA, TF32, AdamW auto, pinned)", "attention eager",
                             "TF32 off (IEEE float32 matmuls)", "AdamW foreach", "AdamW for-loop", "AdamW fused", "pageable host batches",
                             "gradient checkpointing", "towers compiled (aot_eager)"]
    base = float(options["the trainer's defaults (SDPA, TF32, AdamW auto, pinned)"][0])
    for label, (step, ratio, first, data, memory) in options.items():
        assert float(step) > 0 and ratio_consistent(float(ratio), float(step), base), (label, step, ratio, base)
    compiled = options["towers compiled (aot_eager)"]
    assert float(compiled[2]) * 1000 > float(compiled[0])  # the first step holds the compilation
    assert re.search(r"\| CLIM 200 x 200, 8 tokens, d 64 \(fp32\) \| [\d.]+ \| [\d.]+ x its GEMM floor", out)
    fused = re.search(r"\| CLIM, late interaction compiled \(aot_eager\) \| [\d.]+ \| [\d.]+ x the chunked scorer's "
                      r"speed; scores within ([\d.e+-]+) \|", out)
    assert fused and float(fused.group(1)) <= 1e-5
    assert "| CLIM, fused Triton kernel (finelip_kit.clim_fused) | nan | CUDA only (Triton) |" in out
    assert re.search(r"\| two-stage: global top-50, then CLIM \(t2i\) \| [\d.]+ \| [\d.]+ x faster than full CLIM", out)


def test_smoke_paper_resumes_bitwise_and_evaluates(tmp_path):
    out = run("smoke_paper.py", "--tiny", "--out", str(tmp_path / "smoke"))
    assert "2 process(es) on CPU, 6 steps" in out
    assert "| final weights, resumed vs straight | max abs difference 0 (bitwise equal) |" in out
    assert re.search(r"\| evaluation \(32 synthetic test pairs\) \| global/i2t/R@1 [\d.]+, global/t2i/R@1 [\d.]+", out)
    assert (tmp_path / "smoke" / "straight" / "checkpoints" / "step_0000003").is_dir()
