"""Checkpoints on disk: finding the latest complete one, refusing a resume under changed
settings, trimming the log to the resumed step, cleaning temporaries of dead writers."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import torch

from .config import RESUME_CHANGEABLE, RESUME_IGNORED, TrainConfig

CHECKPOINTS = "checkpoints"


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, a file-size limit); earlier ones are untouched."""


STATE_FILE = "trainer_state.pt"


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete checkpoint under ``out_dir/checkpoints`` (temporary folders ignored)."""
    root = Path(out_dir) / CHECKPOINTS
    complete = sorted(p for p in root.glob("step_*") if (p / STATE_FILE).is_file())
    return complete[-1] if complete else None


def check_resume_config(saved: dict[str, Any], config: TrainConfig, source: str) -> None:
    """Refuse to resume under settings that change what the checkpoint's data position and
    optimiser state mean; ``config.resume_changes`` lets the budget keys differ on purpose."""
    current = config.to_dict()
    # a setting newer than the checkpoint counts as its default there (what that version did); a
    # setting the checkpoint has and TrainConfig no longer does (train.eval_modes, now eval.modes) is not compared
    saved = {**{f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING and f.name not in saved},
             **{k: v for k, v in saved.items() if k in current}}
    changed = sorted(k for k in current
                     if k not in RESUME_IGNORED and k not in config.resume_changes
                     and _comparable(saved.get(k)) != _comparable(current.get(k)))
    if changed:
        details = ", ".join(f"{k}: checkpoint {saved.get(k)!r} -> now {current.get(k)!r}" for k in changed)
        allowed = [k for k in changed if k in RESUME_CHANGEABLE]
        hint = (f"; to change {allowed} on purpose, pass resume_changes={allowed} (--set resume_changes=...)"
                if allowed else "")
        raise ValueError(f"cannot resume from {source}: the training settings differ from the checkpoint's ({details}). "
                         f"Resume with the checkpoint's settings, or start a new run in another out_dir{hint}")


def _comparable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def trim_log(path: Path, step: int) -> None:
    """Drop the records of steps after ``step`` from a ``metrics.jsonl`` (they are re-run after a resume)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines(keepends=True)
            if line.strip() and _logged_step(line) <= step]
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # exclusively
    try:
        with os.fdopen(handle, "w") as file:
            file.write("".join(kept))
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _logged_step(line: str) -> float:
    try:
        return json.loads(line).get("step", 0)
    except (ValueError, AttributeError):
        return math.inf  # a torn last line from a kill: dropped


def remove_stale_temporaries(root: Path) -> list[Path]:
    """Remove ``.tmp_step_*_<pid>`` folders under ``root`` left by killed processes (the pid is
    not running); a live process's folder is left alone."""
    removed = []
    for folder in root.glob(".tmp_step_*_*"):
        pid = folder.name.rsplit("_", 1)[-1]
        if folder.is_dir() and pid.isdigit() and (int(pid) == os.getpid() or not _running(int(pid))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _python_state_to_tensors(state):
    version, internal, gauss = state
    return (version, torch.tensor(internal, dtype=torch.int64), gauss)


def _python_state_from_tensors(state):
    version, internal, gauss = state
    return (version, tuple(int(x) for x in internal.tolist()), gauss)
