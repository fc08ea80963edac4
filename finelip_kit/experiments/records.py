"""Run records: the one JSON format every run writes and every reader (tables, plots, the
explorer) reads. ``write_record`` writes it; ``read_record`` reads any record the kit has
written — this version, the grid's version-1 records, and the calibration script's records
(``docs/calibration/*.json``) — into this version's shape.

A record (version 2)::

    {"record_version": 2, "run_name": ..., "status": "ok" | "failed", "preset": "synthetic-tiny",
     "settings": {"model.atrm_k": 16, "train.steps": 300, "data.differing_objects": 1, ...},  # every measured setting
     "parameters": {...},          # the run's parameters as its caller named them (a grid point's)
     "metrics": {"global/t2i/R@1": ..., "fine/group/t2i": ...},     # test split
     "val_metrics": {...},         # validation split, when evaluated
     "reference": {"name": ..., "metrics": {...}} | null,
     "history": [{"step", "loss", "global", "fine", "global_augmented", "fine_augmented"}], "timings": {...}, "versions": {...}, ...}
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..files import atomic_file
from .paths import check_name

RECORD_VERSION = 2
STATUSES = ("ok", "failed")


def new_record(run_name: str, status: str, *, preset: str | None, settings: dict[str, Any], parameters: dict[str, Any],
               with_provenance: bool = True, **fields: Any) -> dict[str, Any]:
    """The one builder of a record: a run that finished (``recipe.run``: ``status="ok"``, its metrics,
    history, timings, ...) and a grid point that did not (the grid runner, local or under papermill, and
    SLURM's reconciliation: ``status="failed"`` with its ``error``). Every record carries the same head
    (version, name, status, preset, settings, parameters) and, with ``with_provenance``, where and from
    what it was made (``provenance``); it is checked field by field (``check_record``) before it is
    returned, so a record that readers would refuse is never written."""
    if status not in STATUSES:
        raise ValueError(f"a record's status must be one of {STATUSES}, got {status!r}")
    if status == "failed" and not isinstance(fields.get("error"), str):
        raise ValueError(f"the failed record {run_name!r} needs its error as text, got {fields.get('error')!r}")
    record = {"record_version": RECORD_VERSION, "run_name": run_name, "status": status, "preset": preset,
              "settings": settings, "parameters": parameters, **fields}
    if with_provenance:
        record.update(provenance())
    problem = check_record(record)
    if problem:
        raise BadRecord(f"record {run_name!r}: {problem}")
    return record


def write_record(record: dict[str, Any], results_dir: str | Path) -> Path:
    """Write ``<results_dir>/<run_name>.json`` atomically, as strict JSON.

    Non-finite numbers have no JSON form: in a ``history`` they become ``null`` (a skipped
    step's loss); anywhere else they are an error, since a record never reports one as a result."""
    path = Path(results_dir) / f"{check_name(record['run_name'])}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {**record, "history": _finite_or_none(record["history"])} if "history" in record else record
    text = json.dumps(record, indent=2, default=str, allow_nan=False)
    with atomic_file(path, "w", prefix=f".{path.stem}.") as file:
        file.write(text)
    return path


class BadRecord(ValueError):
    """A file shaped like a record whose fields are not what a record holds (named, with the field)."""


def read_record(path: str | Path) -> dict[str, Any] | None:
    """The record in ``path`` in this version's shape, or None when the file is not a record at all.
    Read as strict JSON and checked field by field (``check_record``): a record holding ``NaN`` /
    ``Infinity``, or a field of the wrong kind, raises ``BadRecord`` naming the file and the field, so
    that no reader ever shows it as a number."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except BadRecord as error:
        raise BadRecord(f"{str(path)!r}: {error}") from None
    except ValueError:
        return None
    record = upgrade(data, name=Path(path).stem)
    if record is not None:
        problem = check_record(record)
        if problem:
            raise BadRecord(f"{str(path)!r}: {problem}")
    return record


def _refuse_constant(name: str):
    raise BadRecord(f"holds {name}, which is not a number a record may report (records are strict JSON)")


def check_record(record: dict[str, Any]) -> str | None:
    """What is wrong with ``record``'s fields (None when nothing is): the types every reader relies on."""
    if not isinstance(record.get("run_name"), str) or not record["run_name"]:
        return f"run_name is {record.get('run_name')!r}, not a name"
    if record.get("status") not in ("ok", "failed"):
        return f"status is {record.get('status')!r}, not 'ok' or 'failed'"
    if record.get("preset") is not None and not isinstance(record["preset"], str):
        return f"preset is {type(record['preset']).__name__}, not a name"
    for key in ("settings", "parameters"):
        if not isinstance(record.get(key, {}), dict) or not all(isinstance(k, str) for k in record.get(key, {})):
            return f"{key} is {type(record.get(key)).__name__}, not a mapping of names to values"
    reference = record.get("reference")
    if reference is not None and not (isinstance(reference, dict) and isinstance(reference.get("metrics"), dict)):
        return "reference is neither null nor a mapping with metrics"
    for key, metrics in (("metrics", record.get("metrics")), ("val_metrics", record.get("val_metrics")),
                         ("reference.metrics", (reference or {}).get("metrics"))):
        if metrics is None:
            continue
        if not isinstance(metrics, dict):
            return f"{key} is {type(metrics).__name__}, not a mapping of metric names to numbers"
        for name, value in metrics.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                return f"{key}[{name!r}] is {value!r}, not a finite number"
    if not isinstance(record.get("history", []), list) or not all(isinstance(h, dict) for h in record.get("history", [])):
        return "history is not a list of logged steps"
    timings = record.get("timings")
    if timings is not None and not (isinstance(timings, dict) and all(
            v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in timings.values())):
        return "timings is not a mapping of names to seconds"
    if record.get("error") is not None and not isinstance(record["error"], str):
        return f"error is {type(record['error']).__name__}, not text"
    return None


def upgrade(data: Any, name: str = "record") -> dict[str, Any] | None:
    """Any record the kit has written, in this version's shape (None if ``data`` is not one)."""
    if not isinstance(data, dict):
        return None
    if "overrides" in data and "seed" in data and "axis" in data:
        return _from_calibration(data, name)
    if "parameters" not in data or "status" not in data or "run_name" not in data:
        return None
    if data.get("record_version", 1) >= 2:
        return data
    # Version 1 (the grid before the settings vocabulary): parameters named by the grid's short names.
    from .settings import from_short_names

    parameters = data["parameters"] if isinstance(data["parameters"], dict) else {}
    try:
        settings = from_short_names(parameters)
    except ValueError:
        settings = {}
    return {**data, "record_version": RECORD_VERSION, "preset": parameters.get("preset", "synthetic-tiny"),
            "settings": settings, "val_metrics": data.get("val_metrics", {})}


def _from_calibration(data: dict[str, Any], name: str) -> dict[str, Any]:
    """A record of ``benchmarks/calibrate_synthetic.py`` (before calibration became a grid):
    flat metric keys, ``val/`` for validation, ``short/`` for the alt-text captions."""
    from .settings import normalise

    metrics, val = {}, {}
    for key, value in data.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or "/" not in key:
            continue
        if key.startswith("val/"):
            val[key[len("val/"):]] = value
        elif key.startswith("short/"):
            metrics[f"alt/global/{key[len('short/'):]}"] = value
        else:
            metrics[key] = value
    settings = {**normalise(data["overrides"]), "train.seed": data["seed"]}
    if data.get("rerank_k"):
        settings["eval.rerank_k"] = data["rerank_k"]
    return new_record(name, "ok", preset="synthetic-tiny", settings=settings,
                      parameters={"axis": data["axis"], "setting": data["setting"]}, with_provenance=False,
                      metrics=metrics, val_metrics=val, reference=None, history=data.get("history", []),
                      timings={"train_s": data.get("seconds"), "total_s": data.get("seconds")})


def plain_mode_names(metrics: dict[str, float]) -> dict[str, float]:
    """``fine@rerank20/t2i/R@1`` -> ``fine/t2i/R@1``: one key per mode across runs, whether a
    run scored two-stage or not (its ``eval.rerank_k`` setting says which)."""
    return {re.sub(r"^([a-z]+)@rerank\d+/", r"\1/", key): value for key, value in metrics.items()}


def provenance() -> dict[str, Any]:
    """Package versions, git commit, host and time — what a record needs to be reproduced."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in ("finelip-kit", "torch", "timm", "transformers", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    out = {"versions": versions, "git_commit": commit, "host": platform.node(),
           "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    if os.environ.get("SLURM_JOB_ID"):  # where a point ran, when SLURM ran it
        array = os.environ.get("SLURM_ARRAY_JOB_ID")
        out["slurm_job_id"] = f"{array}_{os.environ.get('SLURM_ARRAY_TASK_ID')}" if array else os.environ["SLURM_JOB_ID"]
    return out


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def summary_frame(record: dict[str, Any]):
    """Rows: scoring modes (and the reference); columns: R@1/5/10 both ways, within-group accuracy
    (``evaluation.tables.metrics_table``, the one builder of metric tables)."""
    from ..evaluation.tables import metrics_table

    return metrics_table(record["metrics"], reference=record.get("reference"))
