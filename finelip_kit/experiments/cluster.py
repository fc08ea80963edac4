"""SLURM through submitit: the options a job asks for, reading the queue, and submitting a
training run (``finelip train --executor slurm``). Grids use it through ``ablation/slurm.py``.

    finelip train --executor slurm --nodes 2 --tasks-per-node 8 --gpus-per-task 1 --partition gpu \\
                  --time 1440 --preset paper-b16 --out runs/b16 ...

Every task of the job runs the same ``finelip train`` run; the process group comes from SLURM's
environment (``train/distributed.py``), so no wrapper script is needed.
"""

from __future__ import annotations

import math
import re
import subprocess
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

QUEUED = {"PENDING", "REQUEUED", "RESV_DEL_HOLD", "SUSPENDED", "REQUEUE_HOLD", "REQUEUE_FED"}
RUNNING = {"RUNNING", "CONFIGURING", "COMPLETING", "STAGE_OUT", "SIGNALING", "RESIZING"}


@dataclass
class SlurmOptions:
    """What a job asks SLURM for: a grid point's task (the grid YAML's ``slurm:`` block; the CLI
    wins) or a training run's job."""

    partition: str | None = None
    time_min: int = 60  # the time limit of one grid point or of the training job, minutes
    cpus_per_task: int = 1
    gpus_per_task: int = 0
    mem_gb: float | None = None
    array_parallelism: int = 32  # grid points running at once
    nodes: int = 1  # training: nodes of the job (a grid point is one process: 1)
    tasks_per_node: int = 1  # training: processes per node, one per GPU (a grid point: 1)
    sbatch: dict = field(default_factory=dict)  # any other sbatch option: {"qos": "high", "account": "lab"}

    def __post_init__(self) -> None:
        for name in ("time_min", "cpus_per_task", "array_parallelism", "nodes", "tasks_per_node"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"slurm.{name} must be an integer >= 1, got {value!r}")
        if isinstance(self.gpus_per_task, bool) or not isinstance(self.gpus_per_task, int) or self.gpus_per_task < 0:
            raise ValueError(f"slurm.gpus_per_task must be an integer >= 0, got {self.gpus_per_task!r}")
        if self.mem_gb is not None and not (isinstance(self.mem_gb, (int, float)) and self.mem_gb > 0):
            raise ValueError(f"slurm.mem_gb must be a number > 0 or None, got {self.mem_gb!r}")
        if not isinstance(self.sbatch, dict) or not all(isinstance(k, str) for k in self.sbatch):
            raise ValueError(f"slurm.sbatch must map sbatch option names to values, got {self.sbatch!r}")
        if self.partition is not None:
            _check_value("slurm.partition", self.partition)
        for key, value in self.sbatch.items():
            if not _OPTION_NAME.fullmatch(key):
                raise ValueError(f"slurm.sbatch option name {key!r} is refused: sbatch option names are letters, digits, "
                                 f"'-' and '_' (e.g. qos, mail-type)")
            if key.replace("_", "-").lower() in _KIT_OPTIONS:
                raise ValueError(f"slurm.sbatch {key!r} is set by the kit (it names the job's logs, array and signal); "
                                 f"remove it")
            if value is not True:
                _check_value(f"slurm.sbatch {key}", value)

    @classmethod
    def merged(cls, spec_block: dict | None, cli: dict[str, Any]) -> "SlurmOptions":
        """The spec's ``slurm:`` block with the command line's options on top (None: not given)."""
        block = dict(spec_block or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(block) - known)
        if unknown:
            raise ValueError(f"grid spec slurm: unknown key(s) {unknown}; known: {sorted(known)}")
        given = {k: v for k, v in cli.items() if v is not None and v != {}}
        if "sbatch" in given:
            given["sbatch"] = {**block.get("sbatch", {}), **given["sbatch"]}
        return cls(**{**block, **given})

    def submitit_parameters(self, name: str) -> dict[str, Any]:
        out = {"name": name, "timeout_min": self.time_min, "cpus_per_task": self.cpus_per_task,
               "slurm_array_parallelism": self.array_parallelism, "nodes": self.nodes,
               "tasks_per_node": self.tasks_per_node}
        if self.partition:
            out["slurm_partition"] = self.partition
        if self.gpus_per_task:
            out["slurm_gpus_per_task"] = self.gpus_per_task
        if self.mem_gb is not None:
            out["mem_gb"] = self.mem_gb
        if self.sbatch:
            out["slurm_additional_parameters"] = dict(self.sbatch)
        return out


# Every value goes into a ``#SBATCH --key=value`` line of the job script: one line, no shell syntax.
_OPTION_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_OPTION_VALUE = re.compile(r"[A-Za-z0-9._:,=+@%/\[\]*|&!^~()-]+")
_KIT_OPTIONS = {"output", "error", "array", "signal", "open-mode", "wrap", "job-name", "chdir", "parsable"}


def _check_value(what: str, value: Any) -> None:
    """A value sbatch takes on one ``#SBATCH`` line: a number, or text of letters, digits and
    ``. _ : , = + @ % / [ ] * | & ! ^ ~ ( ) -`` (no whitespace, quotes, ``#``, ``$``, ``;`` or newline)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{what} must be a number or text, got {value!r}")
    if isinstance(value, str) and not _OPTION_VALUE.fullmatch(value):
        bad = sorted(set(re.sub(_OPTION_VALUE.pattern, "", value))) or ["(empty)"]
        raise ValueError(f"{what} {value!r} is refused: it holds {bad}, which a #SBATCH line cannot carry safely "
                         f"(whitespace, newlines, quotes, '#', '$', ';' ...); use letters, digits and . _ : , = + @ % / "
                         f"[ ] * | & ! ^ ~ ( ) -")


def queue_states(job_ids: list[str]) -> dict[str, str]:
    """job id → SLURM state for the jobs still in the queue (``squeue``; array tasks expanded)."""
    if not job_ids:
        return {}
    try:
        result = subprocess.run(["squeue", "-h", "-r", "-o", "%i %T"], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise RuntimeError("squeue is not installed here: follow a SLURM grid from a machine of the cluster") from None
    if result.returncode != 0:
        raise RuntimeError(f"squeue failed ({result.stderr.strip()}): is this a SLURM login node (SLURM_CONF set)?")
    states = dict(line.split()[:2] for line in result.stdout.splitlines() if line.strip())
    return {job: states[job] for job in job_ids if job in states}


def finished_state(job_id: str, log_err: str | None) -> tuple[str, str]:
    """(state, reason) of a job that left the queue: from ``scontrol show job`` while SLURM still
    remembers it, else from the task's log (slurmstepd writes CANCELLED / TIME LIMIT / PREEMPTION there)."""
    try:
        result = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        result = None
    if result is not None and result.returncode == 0:
        state = re.search(r"JobState=(\S+)", result.stdout)
        reason = re.search(r"Reason=(\S+)", result.stdout)
        if state:
            return state.group(1), reason.group(1) if reason else ""
    text = Path(log_err).read_text(errors="replace")[-20000:] if log_err and Path(log_err).is_file() else ""
    for pattern, state in (("DUE TO TIME LIMIT", "TIMEOUT"), ("DUE TO PREEMPTION", "PREEMPTED"),
                           ("oom-kill|Out Of Memory|OUT_OF_MEMORY", "OUT_OF_MEMORY"), ("CANCELLED", "CANCELLED"),
                           ("NODE_FAIL|DUE TO NODE FAILURE", "NODE_FAIL")):
        if re.search(pattern, text):
            line = next((line for line in text.splitlines() if re.search(pattern, line)), "")
            return state, line.strip()
    return "UNKNOWN", "the task left the queue without a record and SLURM no longer knows the job (see its log)"




def submit_run(spec, options: "SlurmOptions", folder: str | Path, executor=None):
    """Submit one training run (``recipe.run(spec)`` on every task of the job); returns the
    submitit job. Logs go to ``folder/<job id>/``."""
    if executor is None:
        import submitit

        executor = submitit.AutoExecutor(folder=Path(folder) / "%j", cluster="slurm")
    from dataclasses import replace

    from .settings import normalise

    executor.update_parameters(**options.submitit_parameters(f"finelip-train-{spec.name}"))
    settings = normalise(spec.settings)
    settings.setdefault("train.requeue", True)  # pre-empted (or near its limit: submitit's USR2): save, requeue, resume
    return executor.submit(_train_task, replace(spec, settings=settings))


def _train_task(spec):
    """One task of a submitted training job. Pre-empted after its checkpoint was saved and the job
    requeued, it leaves without a result (``SystemExit``, as submitit's own requeue does), so submitit
    waits for the restarted job, which resumes."""
    from .recipe import run
    from ..train.preemption import PREEMPTED_EXIT, Preempted

    try:
        record = run(spec).record
    except Preempted as stopped:
        if stopped.requeued:
            raise SystemExit(PREEMPTED_EXIT) from None
        raise
    return {k: record[k] for k in ("run_name", "status", "metrics")} if record else None


def wait_for_run(job, poll_s: float = 2.0, queue_every_s: float = 30.0, gone_s: float = 60.0,
                 queue=queue_states) -> dict[str, Any]:
    """Follow a submitted training job (``finelip train --executor slurm --wait``) until it ends;
    returns rank 0's summary. The result file is looked for every ``poll_s``; the queue is asked
    (``squeue``) only every ``queue_every_s``, as a cluster's admins would want. A requeued job is
    followed through its restarts. A job that left the queue without a result (killed before the
    run started, cancelled, out of memory) raises, with SLURM's verdict and the log, once it has been
    gone ``gone_s`` seconds (a shared file system may show the result late): submitit alone would
    wait for ever where ``sacct`` is not available."""
    import time

    gone_since, asked = None, -math.inf
    while not job.done():
        now = time.monotonic()
        if now - asked >= queue_every_s:
            asked = now
            if queue([str(job.job_id)]):
                gone_since = None
            elif gone_since is None:
                gone_since = now
            elif now - gone_since > gone_s:
                state, reason = finished_state(str(job.job_id), str(job.paths.stderr))
                raise RuntimeError(f"SLURM job {job.job_id} left the queue without the run's result ({state}: {reason}); "
                                   f"see its log {job.paths.stderr}. Resubmit it: the run resumes from its last checkpoint")
        time.sleep(poll_s)
    return next(r for r in job.results() if r)  # rank 0's summary; the other tasks return None
