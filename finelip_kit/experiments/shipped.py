"""What ships with the kit, and where a user's relative paths point.

The kit's record sets (``load_records("calibration")``), its notebooks and grid specs live in the
checkout (``docs/``, ``notebooks/``, ``ablations/``) and, in a wheel, are copied into the package as
``finelip_kit/_shipped/`` (``setup.py``'s build step): ``shipped(path)`` finds either, so the kit works
the same from a clone and from ``pip install``. ``finelip notebooks --to DIR`` copies the notebooks
and grids out of either into a project folder of the user's, marked with ``PROJECT_MARKER``.

A *project root* is the checkout (its ``pyproject.toml`` names finelip-kit) or such a folder, found
by walking up from the working directory: the grid notebook's ``ablations/results``, the explorer's
exports and ``load_records("ablations/runs/<grid>")`` mean the same folder whether the kernel starts
in the project root or in ``ablations/`` (JupyterLab starts it beside the notebook).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # finelip_kit/
BUNDLE = PACKAGE / "_shipped"  # what a wheel carries (setup.py copies it in)
PROJECT_MARKER = ".finelip-kit"  # written by `finelip notebooks --to DIR`
# Record sets shipped with the kit, by name: where each lies in the checkout (and in the bundle).
RECORD_SETS = {
    "calibration": "docs/calibration",  # the benchmark's calibration, 18 settings x 3 seeds
    "capacity-map": "docs/capacity/map",  # issue 18's map: width x scene load x arm, 3 seeds
    "capacity-levers": "docs/capacity/levers",  # levers on ATRM's slot collapse, 3 seeds
    "official-switches": "docs/fidelity/official_switches",  # the official code's switches, 3 seeds
    "debias": "docs/debias",  # DeBias-CLIP's caption augmentations x (recipe, global-only), probes on, 3 seeds
}
# What the wheel carries besides the record sets: the notebooks and the grid specs.
PROJECT_FILES = ("notebooks/*.ipynb", "ablations/grid.ipynb", "ablations/explorer.ipynb", "ablations/grids/*.yaml")
DEMO_RESULTS = "ablations/results"  # where `make demo` (ablations/grid.ipynb's default point) writes


def checkout() -> Path | None:
    """The clone the package runs from (an editable install), or None (installed from a wheel)."""
    root = PACKAGE.parent
    pyproject = root / "pyproject.toml"
    return root if pyproject.is_file() and 'name = "finelip-kit"' in pyproject.read_text() else None


def shipped(relative: str) -> Path:
    """A shipped file or folder (``docs/calibration``, ``notebooks/01_quickstart.ipynb``): the checkout's,
    else the wheel's copy."""
    root = checkout()
    return root / relative if root is not None else BUNDLE / relative


def project_root(start: str | Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` (default: the working directory) that is a project root:
    the kit's checkout or a folder ``finelip notebooks`` made. None when there is none."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PROJECT_MARKER).is_file():
            return folder
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and 'name = "finelip-kit"' in pyproject.read_text(errors="replace"):
            return folder
    return None


def in_project(path: str | Path) -> Path:
    """A relative ``path`` the docs name from the project root (``ablations/results``): against the project
    root when the working directory lies inside one, else against the working directory. Absolute paths
    and ``~`` are kept."""
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    root = project_root()
    return (root or Path.cwd()) / path


def copy_project(to: str | Path, overwrite: bool = False) -> list[Path]:
    """Copy the notebooks and the grid specs (``PROJECT_FILES``) into ``to``, marked as a project root.
    Existing files are refused (named) unless ``overwrite``. Returns the files written."""
    source = checkout() or BUNDLE
    files = sorted({p for pattern in PROJECT_FILES for p in source.glob(pattern)})
    if not files:
        raise FileNotFoundError(f"no notebooks found under {source}: this installation of finelip-kit is incomplete "
                                f"(reinstall it, or clone the repository)")
    target = Path(to).expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"--to {str(target)!r} is a file; name a folder")
    clashes = [target / p.relative_to(source) for p in files if (target / p.relative_to(source)).exists()]
    if clashes and not overwrite:
        raise FileExistsError(f"{len(clashes)} file(s) already exist in {str(target)!r} (e.g. {clashes[0]}); pass "
                              f"--overwrite to replace them, or name another folder")
    written = []
    for path in files:
        destination = target / path.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, destination)
        written.append(destination)
    (target / PROJECT_MARKER).write_text("finelip-kit project folder: relative paths in the notebooks start here\n")
    return written
