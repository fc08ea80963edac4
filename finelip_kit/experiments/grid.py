"""Grids: YAML specs expanded into points, each point executed with papermill under its lock,
and the record a notebook carries in its output.

A spec (YAML)::

    name: paper_ablations          # optional; the file name's stem otherwise
    fixed: {steps: 300}            # parameters every point shares
    points:                        # explicit list of points; {} is the defaults
      - {}
      - {pe_mode: linear}
      - {data.differing_objects: 3}   # any dotted setting (finelip_kit.settings) is a parameter too
    product:                       # crossed with every point (a full product if alone)
      seed: [0, 1, 2]
    slurm: {partition: gpu, time_min: 120, gpus_per_task: 1}   # for --executor slurm (ablation/slurm.py)
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .paths import check_name
from .records import new_record, write_record
from .params import BOOKKEEPING, GridParameters, point_name, validate_parameters

RECORD_MIMETYPE = "application/vnd.finelip-kit.record+json"


def attach_record(record: dict[str, Any]) -> None:
    """Show ``record`` as a custom-mimetype output, so the executed notebook carries it."""
    from IPython.display import display

    display({RECORD_MIMETYPE: json.loads(json.dumps(record, default=str)),
             "text/plain": f"finelip-kit record {record['run_name']} ({record['status']})"}, raw=True)


def read_notebook_record(path: str | Path) -> dict[str, Any]:
    """The record attached to an executed grid notebook."""
    import nbformat

    notebook = nbformat.read(str(path), as_version=4)
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if RECORD_MIMETYPE in output.get("data", {}):
                return dict(output["data"][RECORD_MIMETYPE])
    raise ValueError(f"{path} carries no finelip-kit record (was the notebook executed to the end?)")


# ----------------------------------------------------------------------------- grids
@dataclass
class GridSpec:
    name: str
    points: dict[str, dict[str, Any]]  # point name (what differs from `fixed`) → its parameters, in run order
    notebook: Path
    runs_dir: Path
    slurm: dict = dataclasses.field(default_factory=dict)  # the spec's `slurm:` block (ablation/slurm.py)


def load_spec(path: str | Path, runs_dir: str | Path | None = None) -> GridSpec:
    """Read and expand a YAML grid spec; every point is validated before anything runs."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"grid spec {path} does not exist")
    try:
        spec = load_yaml(path.read_text(), str(path)) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"grid spec {path} is not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"grid spec {path} must be a mapping with keys fixed / points / product, got {type(spec).__name__}")
    unknown = sorted(set(spec) - {"name", "fixed", "points", "product", "notebook", "description", "slurm"})
    if unknown:
        raise ValueError(f"grid spec {path}: unknown key(s) {unknown}; use name, description, fixed, points, product, "
                         f"notebook, slurm")
    if not isinstance(spec.get("slurm") or {}, dict):
        raise ValueError(f"grid spec {path}: slurm must be a mapping of SLURM options (partition, time_min, ...)")
    name = check_name(str(spec.get("name") or path.stem), f"grid spec {path}: grid name")
    points = expand_points(spec.get("fixed") or {}, spec.get("points"), spec.get("product") or {}, source=str(path))
    notebook = path.parent / spec["notebook"] if spec.get("notebook") else path.parent.parent / "grid.ipynb"
    runs = Path(runs_dir) if runs_dir else path.parent.parent / "runs"
    return GridSpec(name=name, points=points, notebook=notebook, runs_dir=runs / name, slurm=dict(spec.get("slurm") or {}))


MAX_YAML_NODES = 100_000  # a spec of a thousand points has a few thousand
MAX_POINTS = 10_000  # a grid larger than this is a typo (or a machine-month): refused before it is expanded


def load_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` with the document's size counted first, aliases expanded: a spec whose anchors
    and aliases would unfold into more than ``MAX_YAML_NODES`` nodes (an alias bomb) is refused."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        sizes: dict[int, int] = {}

        def size(item) -> int:  # expanded size, each shared node counted once per use (memoised)
            if id(item) not in sizes:
                sizes[id(item)] = 0  # a recursive alias counts as one while it is being measured
                children = (item.value if isinstance(item, yaml.SequenceNode) else
                            [part for pair in item.value for part in pair] if isinstance(item, yaml.MappingNode) else [])
                sizes[id(item)] = min(1 + sum(size(child) for child in children), MAX_YAML_NODES + 1)
            return sizes[id(item)]

        if size(node) > MAX_YAML_NODES:
            raise ValueError(f"{source}: the YAML would expand to more than {MAX_YAML_NODES:,} values (anchors and "
                             f"aliases repeated inside each other: an alias bomb?); write the spec out plainly")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def expand_points(fixed: dict, points: list | None, product: dict, source: str = "spec") -> dict[str, dict[str, Any]]:
    """``fixed`` ∪ each of ``points`` × the product of ``product``'s lists → validated parameter
    dicts, keyed by point name (the parameters that differ from ``fixed``; duplicates merged).
    Dotted keys are settings of the vocabulary and go into the point's ``settings``."""
    if points is None:
        points = [{}]
    if not isinstance(points, list) or not all(isinstance(p, dict) or p is None for p in points):
        raise ValueError(f"{source}: points must be a list of mappings, got {points!r}")
    if not isinstance(product, dict):
        raise ValueError(f"{source}: product must be a mapping of parameters to lists, got {product!r}")
    for key, values in product.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"{source}: product.{key} must be a non-empty list, got {values!r}")
    count = len(points) * math.prod(len(values) for values in product.values())
    if count > MAX_POINTS:
        raise ValueError(f"{source}: {len(points)} point(s) x the product of {[len(v) for v in product.values()]} values "
                         f"make {count:,} points, more than the {MAX_POINTS:,} a grid may hold; split the grid")
    expanded: dict[str, dict[str, Any]] = {}
    folded: dict[str, str] = {}  # lower-cased name -> name: file systems that ignore case see one file
    for point in points:
        for combination in itertools.product(*product.values()):
            parameters = fold_settings({**fixed, **(point or {}), **dict(zip(product, combination))})
            for key in BOOKKEEPING:
                if key in parameters:
                    raise ValueError(f"{source}: {key} is set by the grid runner, remove it from the spec")
            try:
                validate_parameters(**parameters)
            except (ValueError, TypeError) as error:
                raise ValueError(f"{source}: point {parameters}: {error}") from None
            name = point_name(parameters, base=fold_settings(dict(fixed)))
            if name in expanded and validate_parameters(**expanded[name]) != validate_parameters(**parameters):
                raise ValueError(
                    f"{source}: two different points share the name {name!r}: {expanded[name]} and {parameters} "
                    f"(names replace path separators, spaces and other unsafe characters with '_'); rename one of the files"
                )
            if folded.setdefault(name.lower(), name) != name:
                raise ValueError(f"{source}: points {folded[name.lower()]!r} and {name!r} have names that differ only in "
                                 f"case: on a file system that ignores case (macOS, Windows) they would share one record; "
                                 f"rename one")
            expanded.setdefault(name, parameters)
    return expanded


def fold_settings(parameters: dict[str, Any]) -> dict[str, Any]:
    """A spec's point as the grid notebook takes it: a dotted key that has a short name
    (``model.atrm_k``) becomes that parameter (``atrm_k``), any other dotted key
    (``data.differing_objects: 3``) goes into the parameter ``settings``."""
    from .settings import ALIASES, canonical, short_name

    dotted = {k: v for k, v in parameters.items() if "." in str(k)}
    if not dotted:
        return parameters
    rest = {k: v for k, v in parameters.items() if "." not in str(k)}
    settings = dict(rest.get("settings") or {})
    for key, value in dotted.items():
        name = short_name(canonical(key))
        if name in ALIASES and name != "hardest_after_steps":
            if name in rest and rest[name] != value:
                raise ValueError(f"{key}={value!r} and {name}={rest[name]!r} set the same parameter; keep one")
            rest[name] = value
        else:
            settings[key] = value
    return {**rest, "settings": settings} if settings else rest


@dataclass
class GridOutcome:
    ran: list[str]
    skipped: list[str]
    failed: dict[str, str]  # point → error
    busy: list[str] = dataclasses.field(default_factory=list)  # in progress in another runner: left to it
    not_started: list[str] = dataclasses.field(default_factory=list)  # stopped by Ctrl-C before they began
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted


def run_grid(spec: GridSpec, workers: int = 1, force: bool = False, kernel_name: str | None = None,
             progress: bool = True) -> GridOutcome:
    """Execute every point of ``spec`` with papermill into ``<runs_dir>/<point>.ipynb``.

    A point whose record says ``ok`` is skipped unless ``force``; a point that raises gets a
    ``failed`` record (error and notebook path) and the others go on. Each point runs under
    a lock (``<point>.lock``), so two runners on one folder share the work instead of
    overwriting each other: a point locked by another runner is left to it (``busy``).
    Ctrl-C stops launching points; the running ones end (a terminal's Ctrl-C interrupts their
    kernels too, and they are recorded as failed) and ``interrupted`` is set; a rerun resumes.
    A second Ctrl-C while waiting raises ``KeyboardInterrupt`` (``finelip grid`` then exits at once).
    With several workers each point's kernel gets an equal share of the CPUs (``point_threads``),
    unless ``OMP_NUM_THREADS`` is set already.
    """
    with point_threads(workers):
        return _run_grid(spec, workers, force, kernel_name, progress)


@contextlib.contextmanager
def point_threads(workers: int):
    """``OMP_NUM_THREADS`` (which torch reads when a kernel starts) set to the CPUs each of ``workers``
    points gets, ``max(1, cpus // workers)``, while the block runs; nothing when it is set already or
    one point runs at a time. Points running side by side with every core each oversubscribe the
    machine (docs/benchmarks.md has the measurement)."""
    if workers <= 1 or "OMP_NUM_THREADS" in os.environ:
        yield None
        return
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    os.environ["OMP_NUM_THREADS"] = threads
    try:
        yield int(threads)
    finally:
        os.environ.pop("OMP_NUM_THREADS", None)


def _run_grid(spec: GridSpec, workers: int, force: bool, kernel_name: str | None, progress: bool) -> GridOutcome:
    from tqdm.auto import tqdm

    if not spec.notebook.is_file():
        raise FileNotFoundError(f"grid notebook {spec.notebook} does not exist (set `notebook:` in the spec)")
    spec.runs_dir.mkdir(parents=True, exist_ok=True)
    todo, skipped = [], []
    for name, parameters in spec.points.items():
        record = spec.runs_dir / f"{name}.json"
        if not force and record.is_file() and _status(record) == "ok":
            skipped.append(name)
        else:
            todo.append((name, parameters))
    outcome = GridOutcome(ran=[], skipped=skipped, failed={})
    bar = tqdm(total=len(todo), desc=f"grid {spec.name}", unit="point", disable=not progress)
    if skipped and progress:
        bar.write(f"skipping {len(skipped)} point(s) with a successful record (--force re-runs them)")
    pool = ThreadPoolExecutor(max_workers=max(1, workers))
    futures = {pool.submit(_execute_point, spec, name, parameters, kernel_name, force): name for name, parameters in todo}
    pending = set(futures)
    try:
        for future in as_completed(futures):
            pending.discard(future)
            _collect(outcome, futures[future], future.result(), bar)
    except KeyboardInterrupt:
        outcome.interrupted = True
        cancelled = [futures[f] for f in pending if f.cancel()]
        outcome.not_started = sorted(cancelled)
        bar.write(f"Ctrl-C: stopping; {len(cancelled)} point(s) not started, waiting for "
                  f"{len(pending) - len(cancelled)} running point(s) to end (Ctrl-C again abandons them)")
        for future in as_completed([f for f in pending if not f.cancelled()]):
            _collect(outcome, futures[future], future.result(), bar)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        bar.close()
    return outcome


def _collect(outcome: GridOutcome, name: str, result: str | None, bar) -> None:
    if result is None:
        outcome.ran.append(name)
    elif result is BUSY:
        outcome.busy.append(name)
        bar.write(f"point {name} is running in another grid runner; left to it")
    elif result is DONE_ELSEWHERE:
        outcome.skipped.append(name)
    else:
        outcome.failed[name] = result
        bar.write(f"point {name} failed: {result.splitlines()[-1] if result else result}")
    bar.set_postfix(failed=len(outcome.failed))
    bar.update(1)


BUSY = "busy"  # _execute_point's answer for a point another runner holds
DONE_ELSEWHERE = "done elsewhere"  # ... and for one another runner finished meanwhile


def _execute_point(spec: GridSpec, name: str, parameters: dict, kernel_name: str | None, force: bool = False) -> str | None:
    """Run one point's notebook under its lock; on failure write a ``failed`` record and return
    the error text; ``BUSY`` when another runner holds the point, ``DONE_ELSEWHERE`` when another
    runner recorded it as ``ok`` meanwhile."""
    import papermill

    with point_lock(spec.runs_dir / f"{name}.lock") as held:
        if not held:
            return BUSY
        if not force and _status(spec.runs_dir / f"{name}.json") == "ok":
            return DONE_ELSEWHERE  # another runner finished it while this one waited in the queue
        output = spec.runs_dir / f"{name}.ipynb"
        injected = {**parameters, "results_dir": str(spec.runs_dir.resolve()), "run_name": name, "progress": False}
        started = time.perf_counter()
        try:
            papermill.execute_notebook(str(spec.notebook), str(output), parameters=injected, kernel_name=kernel_name,
                                       progress_bar=False, cwd=os.getcwd(), kernel_manager_class=ipc_kernel_manager())
            if _status(spec.runs_dir / f"{name}.json") != "ok":
                raise RuntimeError(f"the notebook finished but wrote no successful record {name}.json")
            return None
        except BaseException as error:  # noqa: BLE001 - any failure of a point is recorded, the grid goes on
            message = _error_text(error)
            write_record(failed_record(name, parameters, message, notebook=str(output),
                                       timings={"total_s": time.perf_counter() - started}), spec.runs_dir)
            if not isinstance(error, Exception):
                raise
            return message


def ipc_kernel_manager():
    """The kernel manager grid points run under: the kernel talks over local (unix) sockets, not TCP, so no
    other user of the machine can connect to it (and it prints no "running over TCP without encryption")."""
    import uuid

    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.paths import jupyter_runtime_dir
    from traitlets import CaselessStrEnum, default

    class IPCKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        @default("ip")
        def _unique_socket_prefix(self) -> str:  # jupyter_client's default is "kernel-ipc" in the working folder
            folder = Path(jupyter_runtime_dir())
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            return str(folder / f"finelip-{uuid.uuid4().hex[:12]}-ipc")

    return IPCKernelManager


def failed_record(name: str, parameters: dict[str, Any], error: str, **extra: Any) -> dict[str, Any]:
    """The record of a point that did not finish (its notebook raised, or SLURM ended its task):
    its settings and parameters, so its row sits under them in a table, and the error."""
    return new_record(name, "failed", preset=parameters.get("preset", GridParameters.preset),
                      settings=_settings_of(parameters), parameters={**GridParameters().measured(), **parameters},
                      error=error, **extra)


def _settings_of(parameters: dict[str, Any]) -> dict[str, Any]:
    """A failed point's settings, so its row in a table sits under its own settings."""
    try:
        return GridParameters(**parameters).to_settings()
    except (TypeError, ValueError):
        return {}


@contextlib.contextmanager
def point_lock(path: Path):
    """An exclusive, non-blocking lock on ``path`` (``flock``): yields True when held. The
    lock dies with its process, so a killed runner never leaves a point locked."""
    import fcntl

    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _error_text(error: Exception) -> str:
    name, value = getattr(error, "ename", None), getattr(error, "evalue", None)
    if name:  # papermill's PapermillExecutionError carries the notebook's exception
        return f"{name}: {value}"
    if isinstance(error, KeyboardInterrupt):
        return "KeyboardInterrupt: the grid runner was interrupted (Ctrl-C) while this point ran; rerun the grid"
    return "".join(traceback.format_exception_only(type(error), error)).strip()


def _status(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("status")
    except (OSError, ValueError):
        return None


