"""Writing files safely: every file and folder the kit writes appears whole or not at all, and its
temporary is created exclusively (``O_EXCL`` / ``mkdtemp``), so a link planted at a guessable
name redirects nothing. Temporaries get the permissions a plain ``open`` would give (the umask's),
not ``mkstemp``'s owner-only ``0600`` (colleagues on a shared cluster can read records and shards);
a replaced file keeps its own.

    with atomic_file(path, "w") as file:        # a record, a manifest, a trimmed log
        file.write(text)                         # committed (fsynced, renamed) on a clean exit
    folder = exclusive_folder(root, ".tmp_step_0000100_", f"_{os.getpid()}")  # a checkpoint being written
"""

from __future__ import annotations

import os
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


def _umask() -> int:
    """The process's umask: read from ``/proc`` where there is one (setting it to read it back
    would race with other threads creating files), else set and restored."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def exclusive_folder(root: str | Path, prefix: str, suffix: str = "") -> Path:
    """A new empty folder under ``root`` (created exclusively), readable as ``mkdir`` would make it."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=root))
    os.chmod(folder, 0o777 & ~_umask())
    return folder


def _mode_of(path: Path, default: int) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return default


@contextmanager
def atomic_file(path: str | Path, mode: str = "w", prefix: str | None = None) -> Iterator[IO]:
    """Write ``path`` through an exclusive temporary in its folder (named ``prefix`` + random +
    ``.tmp``; default ``.<name>.``); on a clean exit it is fsynced and renamed over ``path``, on
    an error removed, leaving any earlier ``path`` as it was. A replaced file keeps its permissions."""
    path = Path(path)
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_file writes a whole file: mode must be 'w' or 'wb', got {mode!r}")
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=prefix or f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode) as file:
            os.fchmod(file.fileno(), _mode_of(path, 0o666 & ~_umask()))
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
