"""Checkpoints on disk, behind a small interface the trainer calls:

    write_checkpoint(out_dir, step, model, state, keep_last)  -> checkpoints/step_XXXXXXX (atomic)
    read_checkpoint(path, config, model)   -> the trainer state (weights loaded into ``model``)
    find_checkpoint(out_dir, "latest")     -> the newest complete one (or the one named)
    rng_state() / restore_rng(state)       -> Python, NumPy, torch and CUDA generators, as tensors

and what a resume needs besides: refusing it under changed settings (``check_resume_config``),
trimming the log to the resumed step (``trim_log``), cleaning temporaries of dead writers."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files import atomic_file, exclusive_folder
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


def find_checkpoint(out_dir: str | Path, where: str | Path) -> Path | None:
    """``where`` = ``"latest"``: the newest complete checkpoint under ``out_dir`` (None when there is
    none); else the checkpoint folder ``where``, which must be complete."""
    if str(where) == "latest":
        return latest_checkpoint(out_dir)
    path = Path(where)
    if not (path / STATE_FILE).is_file():
        raise FileNotFoundError(f"{str(path)!r} is not a complete training checkpoint (no {STATE_FILE})")
    return path


def write_checkpoint(out_dir: str | Path, step: int, model, state: dict[str, Any], keep_last: int) -> Path:
    """Atomically write ``out_dir/checkpoints/step_XXXXXXX``: ``model``'s weights (safetensors) and
    ``state`` (tensors and plain values). Everything goes to a temporary folder (created
    exclusively), is fsynced, then renamed: a kill at any moment leaves the earlier checkpoints
    complete and loadable. The kit's complete checkpoints beyond the newest ``keep_last`` rotate
    out; any other ``step_*`` folder is left alone. A failed write raises ``CheckpointWriteError``
    naming the earlier checkpoint that is intact."""
    from ..weights.load import save_pretrained

    root = Path(out_dir) / CHECKPOINTS
    final = root / f"step_{step:07d}"
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(root)
    temporary = exclusive_folder(root, f".tmp_step_{step:07d}_", f"_{os.getpid()}")  # the pid last: stale ones are found
    try:
        save_pretrained(model, temporary, tokenizer=False)
        torch.save(state, temporary / STATE_FILE)
        for path in temporary.iterdir():
            _fsync(path)
        _fsync(temporary)
    except Exception as error:  # a full disk, a file-size limit (ulimit -f), a quota: this checkpoint only
        shutil.rmtree(temporary, ignore_errors=True)
        if not isinstance(error, (OSError, RuntimeError)) and type(error).__name__ != "SafetensorError":
            raise
        previous = latest_checkpoint(out_dir)
        raise CheckpointWriteError(
            f"could not write the checkpoint of step {step} under {str(root)!r} ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else 'no detail'}); "
            + (f"the previous checkpoint {str(previous)!r} is intact: " if previous else "no earlier checkpoint: ")
            + "free disk space or raise the file-size limit (ulimit -f), then resume with train.resume=latest"
        ) from error
    if final.exists():
        shutil.rmtree(final)
    os.replace(temporary, final)
    _fsync(root)
    for old in sorted(p for p in root.glob("step_*") if (p / STATE_FILE).is_file())[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_checkpoint(path: Path, config: TrainConfig, model) -> dict[str, Any]:
    """The trainer state saved in checkpoint ``path``, after refusing a resume under changed
    settings (``check_resume_config``) and loading its weights into ``model`` (checked against the
    model's own keys and shapes). Read with ``weights_only``: nothing in it can run code."""
    import pickle

    from ..weights.files import WEIGHTS_FILE, read_state_dict
    from ..weights.load import check_weights

    try:
        state = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"refused to load {str(path / STATE_FILE)!r}: it holds Python objects other than tensors "
                         f"and plain values, which could run code when unpickled") from error
    check_resume_config(json.loads(state["train_config"]), config, str(path))
    weights = read_state_dict(path / WEIGHTS_FILE)
    check_weights(model.state_dict(), weights, str(path / WEIGHTS_FILE))
    model.load_state_dict(weights)
    return state


def rng_state() -> dict[str, Any]:
    """Every random generator a training step draws from (Python, NumPy, torch, CUDA), as tensors
    and plain values (``torch.load(weights_only=True)`` reads them)."""
    numpy_state = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {
        "rng_python": (version, torch.tensor(internal, dtype=torch.int64), gauss),
        "rng_numpy": (numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]),
        "rng_torch": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Put back the generators ``rng_state`` saved."""
    version, internal, gauss = state["rng_python"]
    random.setstate((version, tuple(int(x) for x in internal.tolist()), gauss))
    name, keys, *rest = state["rng_numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["rng_torch"])
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])


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
    with atomic_file(path, "w") as file:  # created exclusively: a planted link redirects nothing
        file.write("".join(kept))


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
