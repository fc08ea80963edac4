"""Grid points side by side: every point with all the cores' threads (torch's default) against the
share `finelip grid --workers N` now gives each (``grid.point_threads``: OMP_NUM_THREADS = cpus // N).

Runs N copies of the same short `synthetic-tiny` training at once, twice — first with
OMP_NUM_THREADS unset in every copy, then with each copy's share — and prints a table: the
median logged step time over the copies' steps after the warm-up, and the whole wall time of the
N copies, each way, with the ratios.

    python benchmarks/bench_grid_threads.py [--workers 2] [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def side_by_side(workers: int, steps: int, threads: str | None, work: Path) -> tuple[float, float]:
    """(median step seconds after step 10, wall seconds) of ``workers`` trainings run at once."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = threads
    folders = [work / f"{threads or 'all'}_{i}" for i in range(workers)]
    started = time.perf_counter()
    processes = [subprocess.Popen([sys.executable, "-m", "finelip_kit.cli", "train", "--preset", "synthetic-tiny",
                                   "--out", str(folder), "--set", f"train.steps={steps}", "train.log_every=1",
                                   "eval.size=8", "eval.val_size=0", "eval.reference=false", "train.progress=false"],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                 for folder in folders]
    for process in processes:
        _, error = process.communicate()
        if process.returncode != 0:
            sys.exit(f"a training failed ({process.returncode}):\n{error[-3000:]}")
    wall = time.perf_counter() - started
    times = [json.loads(line)["step_s"] for folder in folders
             for line in (folder / "metrics.jsonl").read_text().splitlines()
             if "step_s" in json.loads(line) and json.loads(line)["step"] > 10]
    return statistics.median(times), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args()
    share = str(max(1, (os.cpu_count() or 1) // args.workers))
    with tempfile.TemporaryDirectory(prefix="bench_threads_") as folder:
        work = Path(folder)
        every_core = side_by_side(args.workers, args.steps, None, work)
        shared = side_by_side(args.workers, args.steps, share, work)
    print(f"{args.workers} synthetic-tiny trainings at once on {os.cpu_count()} CPUs, {args.steps} steps each\n")
    print("| threads per training | median step (s) | wall, all trainings (s) |\n|---|---|---|")
    print(f"| torch's default (every core) | {every_core[0]:.3f} | {every_core[1]:.0f} |")
    print(f"| OMP_NUM_THREADS={share} (the grid's share) | {shared[0]:.3f} | {shared[1]:.0f} |")
    print(f"| ratio, default / share | {every_core[0] / shared[0]:.2f} | {every_core[1] / shared[1]:.2f} |")


if __name__ == "__main__":
    main()
