"""Grids on a SLURM cluster through submitit: each pending point is one task of a job array that
runs the same papermill point as the local runner and writes the same record.

    finelip grid spec.yaml --executor slurm --partition gpu --time 120 --gpus-per-task 1 [--wait]
    finelip grid status spec.yaml      # every point: pending / queued / running / ok / failed, job id, log
    finelip grid cancel spec.yaml      # scancel the queued and running points

Bookkeeping per point, beside its record: ``<point>.slurm.json`` (job id, log paths, when it was
submitted). A point whose task left the queue without a record (time limit, pre-emption,
cancellation, a killed node) gets a ``failed`` record with SLURM's state and reason and the log
path, whenever the grid is looked at (``status``, ``--wait``, a rerun); a rerun submits only the
points that have no ``ok`` record and are not queued or running.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .cluster import QUEUED, RUNNING, SlurmOptions, finished_state, queue_states
from .records import write_record
from .grid import BUSY, DONE_ELSEWHERE, GridSpec, _execute_point, _status, failed_record

STATES = ("pending", "queued", "running", "ok", "failed")


# ----------------------------------------------------------------------------- the task
def run_point_task(spec: GridSpec, name: str, parameters: dict, kernel_name: str | None, force: bool) -> str | None:
    """What one array task runs: the local runner's point (papermill, lock, record); a failed
    point's record also names the task's log."""
    error = _execute_point(spec, name, parameters, kernel_name, force)
    if error and error not in (BUSY, DONE_ELSEWHERE):
        path = spec.runs_dir / f"{name}.json"
        record = json.loads(path.read_text())
        tracked = tracking_file(spec, name)
        log = json.loads(tracked.read_text()).get("log_err") if tracked.is_file() else None
        # SLURM's own verdict (a cancellation kills the kernel first) is added once the job has left the queue
        write_record({**record, "slurm": {"job_id": record.get("slurm_job_id"), "state": None,
                                          "reason": "the notebook failed", "log": log}}, spec.runs_dir)
    return error


# ----------------------------------------------------------------------------- submitting
def tracking_file(spec: GridSpec, name: str) -> Path:
    return spec.runs_dir / f"{name}.slurm.json"


def submit_grid(spec: GridSpec, options: SlurmOptions, force: bool = False, kernel_name: str | None = None,
                executor=None, queue=None) -> dict[str, Any]:
    """Submit every point without an ``ok`` record that is not already queued or running, as one
    job array; returns point → submitit job. ``executor``: a submitit ``AutoExecutor`` (the unit
    tests pass one with ``cluster="local"``, and ``queue``: what stands for squeue)."""
    spec.runs_dir.mkdir(parents=True, exist_ok=True)
    states = point_states(spec, queue=queue)
    todo = [name for name, state in states.items()
            if state["state"] not in ("queued", "running") and (force or state["state"] != "ok")]
    if not todo:
        return {}
    if options.nodes != 1 or options.tasks_per_node != 1:
        raise ValueError(f"a grid point is one notebook process: slurm nodes and tasks_per_node must be 1, got "
                         f"{options.nodes} and {options.tasks_per_node} (give it GPUs with gpus_per_task)")
    if executor is None:
        try:
            import submitit
        except ImportError:
            raise ImportError("--executor slurm needs submitit: pip install submitit (or the kit's [cluster] extra)") from None

        executor = submitit.AutoExecutor(folder=spec.runs_dir / "slurm" / "%j", cluster="slurm")
    executor.update_parameters(**options.submitit_parameters(f"finelip-{spec.name}"))
    jobs = executor.map_array(run_point_task, [spec] * len(todo), todo, [spec.points[n] for n in todo],
                              [kernel_name] * len(todo), [force] * len(todo))
    submitted = {}
    for name, job in zip(todo, jobs):
        tracking_file(spec, name).write_text(json.dumps({
            "job_id": str(job.job_id), "log_out": str(job.paths.stdout), "log_err": str(job.paths.stderr),
            "submitted": time.time(), "options": asdict(options)}, indent=1))
        submitted[name] = job
    return submitted


# ----------------------------------------------------------------------------- reading the queue
def point_states(spec: GridSpec, reconcile: bool = True, queue=None) -> dict[str, dict[str, Any]]:
    """Every point's state with its job id and log path. ``reconcile``: a point whose task left the
    queue without a record gets a ``failed`` record with SLURM's state, reason and the log path.
    ``queue``: job ids → states of those still queued (default ``queue_states``, squeue)."""
    tracked = {}
    for name in spec.points:
        path = tracking_file(spec, name)
        if path.is_file():
            try:
                tracked[name] = json.loads(path.read_text())
            except ValueError:
                tracked[name] = {}
    in_queue = (queue or queue_states)([t["job_id"] for t in tracked.values() if t.get("job_id")]) if tracked else {}
    out: dict[str, dict[str, Any]] = {}
    for name in spec.points:
        job = tracked.get(name, {})
        record_path = spec.runs_dir / f"{name}.json"
        status = _status(record_path)
        row = {"state": "pending", "job_id": job.get("job_id"), "log": job.get("log_err")}
        queued = in_queue.get(job.get("job_id", ""))
        newer = job and (not record_path.is_file() or record_path.stat().st_mtime < job.get("submitted", 0))
        if queued is not None:  # still SLURM's (a task that wrote its record may still be completing)
            row["state"] = "queued" if queued in QUEUED else "running" if queued in RUNNING else queued.lower()
        elif job and newer and status != "ok":
            # the task left the queue and wrote no record after its submission: SLURM ended it
            state, reason = finished_state(job["job_id"], job.get("log_err"))
            row.update(state="failed", slurm_state=state, reason=reason)
            if reconcile:
                write_record(failed_record(name, spec.points[name], f"SLURM {state}: {reason}; log {job.get('log_err')}",
                                           slurm={"job_id": job["job_id"], "state": state, "reason": reason,
                                                  "log": job.get("log_err")}), spec.runs_dir)
        elif status in ("ok", "failed"):
            row["state"] = status
            if status == "failed" and job and queued is None and reconcile:
                _add_slurms_verdict(record_path, job, row)
        out[name] = row
    return out


def _add_slurms_verdict(record_path: Path, job: dict[str, Any], row: dict[str, Any]) -> None:
    """A failed record its task wrote (the kernel died: was it SLURM?) gets SLURM's final state:
    a cancellation, time limit or pre-emption kills the notebook before the task can know why."""
    record = json.loads(record_path.read_text())
    slurm = record.get("slurm") or {}
    if slurm.get("state") is not None or "job_id" not in job:
        if slurm.get("state") not in (None, "COMPLETED"):
            row.update(slurm_state=slurm["state"], reason=slurm.get("reason"))
        return
    state, reason = finished_state(job["job_id"], job.get("log_err"))
    if state == "UNKNOWN":
        return
    killed = state != "COMPLETED"
    record["slurm"] = {**slurm, "job_id": job["job_id"], "state": state, "reason": reason if killed else slurm.get("reason"),
                       "log": slurm.get("log") or job.get("log_err")}
    if killed:
        record["error"] = f"SLURM {state}: {reason}; log {job.get('log_err')} (the notebook saw: {record.get('error')})"
        row.update(slurm_state=state, reason=reason)
    write_record(record, record_path.parent)


def cancel_grid(spec: GridSpec) -> list[str]:
    """``scancel`` every queued or running point; returns their job ids."""
    jobs = [row["job_id"] for row in point_states(spec).values() if row["state"] in ("queued", "running")]
    if jobs:
        subprocess.run(["scancel", *jobs], check=True, capture_output=True, timeout=60)
    return jobs


def wait_for(spec: GridSpec, names: list[str], poll_s: float = 5.0, progress: bool = True) -> dict[str, dict[str, Any]]:
    """Follow the submitted points until none is queued or running, with the local runner's bar."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(names), desc=f"grid {spec.name} (slurm)", unit="point", disable=not progress)
    done: set[str] = set()
    while True:
        states = point_states(spec)
        finished = {n for n in names if states[n]["state"] in ("ok", "failed")}
        for name in sorted(finished - done):
            if states[name]["state"] == "failed":
                bar.write(f"point {name} failed (job {states[name]['job_id']}; log {states[name]['log']})")
            bar.update(1)
        done = finished
        bar.set_postfix(failed=sum(states[n]["state"] == "failed" for n in done))
        if len(done) == len(names):
            bar.close()
            return states
        time.sleep(poll_s)


def status_table(states: dict[str, dict[str, Any]]) -> str:
    """One line per point: state, job id, log path (and SLURM's reason for a killed task)."""
    width = max([len(n) for n in states] + [5])
    lines = [f"{'point':<{width}}  {'state':<8}  {'job id':<12}  log"]
    for name, row in states.items():
        extra = f"  ({row['slurm_state']}: {row['reason']})" if row.get("slurm_state") else ""
        lines.append(f"{name:<{width}}  {row['state']:<8}  {row['job_id'] or '-':<12}  {row['log'] or '-'}{extra}")
    counts = {state: sum(r["state"] == state for r in states.values()) for state in STATES}
    lines.append(", ".join(f"{count} {state}" for state, count in counts.items() if count))
    return "\n".join(lines)
