"""Names that become files: run names, grid point names, grid names.

Whatever a user names (``run_name``, a grid spec's ``name``, a point) is one path component
inside its results folder, never a path: ``check_name`` refuses anything else and says why;
``name_from`` builds a safe name from free text (parameters that hold paths). A folder the kit creates for a run carries ``RUN_MARKER``, and
the kit removes only inside folders that carry it (``owned_run_folder``).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

MAX_NAME_BYTES = 200  # leaves room for suffixes (.json, .ipynb, .lock) under the 255-byte file-name limit
RUN_MARKER = ".finelip-run"
RUN_ENTRIES = ("metrics.jsonl", "model", "checkpoints", "tensorboard", "wandb", "trackers.json")  # what a run writes in its folder
_SAFE = re.compile(r"[A-Za-z0-9._=+,@-]+")


def check_name(name: str, what: str = "run_name") -> str:
    """``name`` if it is a single safe file-name component; otherwise a ValueError saying why."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{what} must be a non-empty string, got {name!r}")
    problem = None
    if name in (".", ".."):
        problem = "it names a folder, not a file"
    elif "/" in name or "\\" in name:
        problem = "it holds a path separator; it must be one name inside the results folder, not a path"
    elif name.startswith((".", "-")):
        problem = "it starts with '.' or '-'"
    elif not _SAFE.fullmatch(name):
        bad = sorted(set(re.sub(r"[A-Za-z0-9._=+,@-]", "", name)))
        problem = f"it holds characters {bad}; use letters, digits and . _ = + , @ -"
    elif len(name.encode()) > MAX_NAME_BYTES:
        problem = f"it is {len(name.encode())} bytes long; at most {MAX_NAME_BYTES}"
    if problem:
        raise ValueError(f"{what} {name!r} is refused: {problem}. Example of a valid name: "
                         f"{name_from(name)!r}")
    return name


def name_from(text: str) -> str:
    """A safe name for free text: unsafe characters become ``_``; a name over ``MAX_NAME_BYTES``
    is shortened and ends with a hash of the whole text. Two texts that differ only in unsafe
    characters get one name: callers that name many things check for such clashes."""
    name = re.sub(r"[^A-Za-z0-9._=+,@-]", "_", str(text)).lstrip(".-") or "_"
    if len(name.encode()) > MAX_NAME_BYTES:
        name = f"{name[: MAX_NAME_BYTES - 11]}-{hashlib.sha1(str(text).encode()).hexdigest()[:10]}"
    return name


def owned_run_folder(folder: Path) -> Path:
    """Create ``folder`` for a run (or take it back from an earlier run of the kit), marked as
    the kit's. A folder that exists without the mark belongs to someone else: refused."""
    if folder.exists() and not (folder / RUN_MARKER).is_file():
        # Empty, or a run folder of a kit version before the mark: only what a run writes, and the
        # run's record beside it. Anything else is someone's folder.
        if folder.is_dir() and (not any(folder.iterdir()) or (
                {p.name for p in folder.iterdir()} <= set(RUN_ENTRIES) and _is_record(folder.with_name(folder.name + ".json")))):
            (folder / RUN_MARKER).touch()
            return folder
        raise FileExistsError(
            f"{str(folder)!r} exists and was not created by finelip-kit for a run; the kit writes and removes files "
            f"only in folders it created. Choose another run_name or results_dir"
        )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RUN_MARKER).touch()
    return folder


def _is_record(path: Path) -> bool:
    import json

    try:
        return "record_version" in json.loads(path.read_text())
    except (OSError, ValueError, TypeError):
        return False
