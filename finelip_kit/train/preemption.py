"""Pre-emption: a signal asks the trainer to stop; it finishes the current step, saves a checkpoint and
exits with ``PREEMPTED_EXIT``, saying how to resume.

SLURM sends ``SIGTERM`` before it kills a job (pre-emption, ``scancel``, the time limit) and, with
``--signal=USR1@90``, ``SIGUSR1`` shortly before the limit; submitit asks with ``SIGUSR2``. While
``Trainer.fit`` runs, each of them only sets a flag (``PreemptionFlag``); after every optimiser step
the ranks agree on it and, when it is set, rank 0 saves a checkpoint and every rank raises
``Preempted``. With ``train.requeue`` a job under SLURM then requeues itself (``requeue_job``) and,
restarted, resumes from that checkpoint (``resume_after_requeue``): the resume is bitwise the run
that was not interrupted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

PREEMPTED_EXIT = 75  # EX_TEMPFAIL: stopped on request, checkpoint saved, resumable ("try again")
SIGNALS = ("SIGTERM", "SIGUSR1", "SIGUSR2")


class Preempted(Exception):
    """Training stopped on a signal after saving ``checkpoint`` at ``step``."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path | None, requeued: str | None = None):
        self.signal_name, self.step, self.checkpoint, self.requeued = signal_name, step, checkpoint, requeued
        super().__init__(f"stopped by {signal_name} after step {step}; checkpoint {checkpoint} saved")


class PreemptionFlag:
    """While entered, the pre-emption signals set ``received`` (the first signal's name) instead of
    killing the process; the earlier handlers come back on exit. Outside the main thread (where
    Python cannot set handlers) nothing is installed and ``received`` stays None."""

    def __init__(self, names: tuple[str, ...] = SIGNALS):
        self.names = tuple(n for n in names if hasattr(signal, n))
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame) -> None:
        self.received = self.received or signal.Signals(signum).name

    def __enter__(self) -> "PreemptionFlag":
        if threading.current_thread() is threading.main_thread():
            for name in self.names:
                number = getattr(signal, name)
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()


def slurm_job(env: Mapping[str, str] = os.environ) -> str | None:
    """The id ``scontrol`` knows this job by (an array task as ``<array job>_<task>``), or None outside SLURM."""
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID")


def requeue_job(job: str) -> None:
    """``scontrol requeue <job>``: SLURM puts the job back in the queue and, when it starts again,
    runs its script from the beginning (where the run resumes, ``resume_after_requeue``)."""
    try:
        done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as error:
        raise RuntimeError(f"could not requeue SLURM job {job} ({error}); resume it by hand") from error
    if done.returncode != 0:
        raise RuntimeError(f"scontrol requeue {job} failed ({done.stderr.strip()}): was the job submitted with "
                           f"--no-requeue, or does the cluster set JobRequeue=0? Resume it by hand")


def resume_after_requeue(config, env: Mapping[str, str] = os.environ):
    """``config`` with ``resume="latest"`` when this is a SLURM job that ``train.requeue`` requeued
    (SLURM counts the restarts in ``SLURM_RESTART_COUNT``) and no resume was asked for."""
    restarts = env.get("SLURM_RESTART_COUNT", "0")
    if config.requeue and config.resume is None and restarts.isdigit() and int(restarts) > 0:
        return replace(config, resume="latest")
    return config
