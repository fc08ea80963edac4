"""Starting the process group: under ``torchrun`` (its ``RANK`` / ``WORLD_SIZE`` / ``MASTER_*``
variables) or under SLURM's ``srun`` (``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``,
the job's node list), with no wrapper script:

    srun --nodes=2 --ntasks-per-node=8 --gpus-per-node=8 finelip train --preset paper-b16 ...

``init_distributed()`` is called by the run recipe before training; one process is no process group.
"""

from __future__ import annotations

import os
import re
from typing import Mapping

import torch
import torch.distributed as dist

from ..math.losses import world


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``gpu[03-05,09],cpu1`` → ``gpu03``; ``node7`` → ``node7``."""
    text = nodelist.strip()
    if not text:
        raise ValueError("empty SLURM node list")
    match = re.match(r"([^,\[]+)(\[([^\]]+)\])?", text)
    prefix, ranges = match.group(1), match.group(3)
    if not ranges:
        return prefix
    first = ranges.split(",")[0].split("-")[0]
    return prefix + first


def slurm_environment(env: Mapping[str, str]) -> dict[str, str]:
    """torch.distributed's variables from SLURM's, for a step of several tasks started by ``srun``
    (empty when torchrun's are already set, or when the step has one task). The step's own task
    count (``SLURM_STEP_NUM_TASKS``) decides, not the job's: a batch script itself also sees
    ``SLURM_PROCID=0`` and the job's ``SLURM_NTASKS``, and must not wait for tasks it did not start.
    ``MASTER_ADDR`` is the step's first node, ``MASTER_PORT`` (unless set) 15000 + the job id
    modulo 20000, so two jobs sharing a node do not collide."""
    tasks = int(env.get("SLURM_STEP_NUM_TASKS", "1"))
    if "RANK" in env or "SLURM_PROCID" not in env or tasks < 2:
        return {}
    nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not nodes:
        raise RuntimeError("srun started several tasks but SLURM_JOB_NODELIST is not set: cannot find the master node")
    return {
        "RANK": env["SLURM_PROCID"],
        "WORLD_SIZE": str(tasks),
        "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
        "MASTER_ADDR": env.get("MASTER_ADDR") or first_host(nodes),
        "MASTER_PORT": env.get("MASTER_PORT") or str(15000 + int(env.get("SLURM_JOB_ID", "0")) % 20000),
    }


def init_distributed() -> tuple[int, int]:
    """Join the process group the environment describes (torchrun's or srun's); ``(rank, world_size)``.
    NCCL when CUDA is available, gloo otherwise; nothing to do for a single process."""
    os.environ.update(slurm_environment(os.environ))
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not (dist.is_available() and dist.is_initialized()):
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return world()
