"""SLURM dispatch against the local grid runner, on the tests' one-node SLURM cluster (issue 20).

Starts the cluster (root, slurm-wlm and munge installed: `.ci/run` installs them), runs the same
tiny grid points with the local runner and with `--executor slurm --array-parallelism 1` (one
point at a time in both, so the difference is the dispatch), and prints a table:
cluster start-up, seconds per point each way, the overhead per point and the ratio.

    python benchmarks/bench_slurm.py [--points 4]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    from slurm_cluster import missing, one_node_cluster

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=4)
    args = parser.parse_args()
    reason = missing()
    if reason:
        sys.exit(f"cannot start the test cluster: {reason}")
    work = Path(tempfile.mkdtemp(prefix="bench_slurm_"))
    (work / "grids").mkdir()
    shutil.copy(ROOT / "ablations" / "grid.ipynb", work / "grid.ipynb")
    spec = work / "grids" / "b.yaml"
    spec.write_text("fixed: {steps: 2, batch_size: 8, eval_size: 16, reference: false, keep_model: false}\n"
                    f"product:\n  seed: {list(range(args.points))}\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def finelip(*extra, environment=env) -> float:
        tick = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "finelip_kit.cli", "grid", str(spec), *extra], env=environment,
                              capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(done.stdout[-2000:] + done.stderr[-2000:])
        return time.perf_counter() - tick

    local = finelip("--runs-dir", str(work / "local"))
    tick = time.perf_counter()
    with one_node_cluster(work / "cluster") as cluster:
        startup = time.perf_counter() - tick
        slurm_env = {**env, "SLURM_CONF": cluster["SLURM_CONF"]}
        slurm = finelip("--runs-dir", str(work / "slurm"), "--executor", "slurm", "--array-parallelism", "1", "--wait",
                        environment=slurm_env)
    n = args.points
    print(f"{'':<34}{'seconds':>10}")
    print(f"{'cluster start-up (munge, slurmctld, slurmd)':<34}{startup:>10.1f}")
    print(f"{'local runner, per point':<34}{local / n:>10.1f}")
    print(f"{'slurm dispatch, per point':<34}{slurm / n:>10.1f}")
    print(f"{'overhead per point':<34}{(slurm - local) / n:>10.1f}")
    print(f"{'ratio slurm / local':<34}{slurm / local:>10.2f}")
    print(f"({n} tiny points, one at a time each way, whole commands timed; {os.cpu_count()} CPUs)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
