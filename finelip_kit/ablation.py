"""Ablation grids: one grid point's parameters and record, grid specs run with papermill,
and the helpers behind the ablation explorer.

A *grid point* is one run of ``ablations/grid.ipynb``: its parameters (``GridParameters``,
validated before any training) → ``run_point`` (train, evaluate, reference row) → a
*record*, a JSON dict written to ``results_dir/<run_name>.json`` and attached to the
executed notebook. ``finelip grid spec.yaml`` expands a spec into points and executes each
with papermill; ``load_records`` / ``ablation_table`` / ``plot_ablation`` read the records back.

A spec (YAML)::

    name: paper_ablations          # optional; the file name's stem otherwise
    fixed: {steps: 300}            # parameters every point shares
    points:                        # explicit list of points; {} is the defaults
      - {}
      - {pe_mode: linear}
    product:                       # crossed with every point (a full product if alone)
      seed: [0, 1, 2]
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import math
import os
import platform
import re
import shutil
import subprocess
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .paths import check_name, name_from, owned_run_folder

RECORD_MIMETYPE = "application/vnd.finelip-kit.record+json"
RECORD_VERSION = 1
# Parameters that name *where* a point writes, not *what* it measures.
BOOKKEEPING = ("results_dir", "run_name", "progress")
CHOICES = {
    "pe_mode": ("kps", "linear", "none", "scratch"),
    "loss": ("fine", "global", "global+fine"),
    "negatives": ("sum", "hardest"),
    "score_mode": ("global", "fine", "fused"),
}


@dataclass(frozen=True)
class GridParameters:
    """Every parameter of a grid point, with the CPU defaults of the ``synthetic-tiny`` preset."""

    preset: str = "synthetic-tiny"
    dataset: str = "synthetic"  # "synthetic", a dataset name (urban1k, docci, ...) or a path
    data_root: str | None = None
    use_atrm: bool = True
    atrm_k: int = 16
    atrm_k_text: int | None = None  # None: same as atrm_k
    use_clim: bool = True
    pe_mode: str = "kps"  # position stretching: kps | linear | none | scratch
    context_length: int = 248
    loss: str = "global+fine"
    fine_weight: float = 1.0
    negatives: str = "sum"  # hardest: switch from sum to hardest negatives after `hardest_after_steps`
    hardest_after_steps: int = 60
    group_batches: bool = False  # batches of whole hard-negative groups (synthetic data)
    score_mode: str = "global"  # the scoring mode of the summary's headline (every mode is recorded)
    steps: int | None = 300
    train_minutes: float | None = None  # train on wall time instead of steps
    batch_size: int = 64
    lr: float | None = None  # towers' learning rate; None: the preset's
    lr_new: float | None = None  # ATRM / new position rows / temperature; None: the preset's
    seed: int = 0
    eval_size: int = 1000  # test pairs (synthetic); None: the whole split
    rerank_k: int | None = None  # fine / fused R@k two-stage over the global top k (within-group stays exact)
    reference: bool = True  # also score the starting model as is (its original context)
    keep_model: bool = True  # save the fine-tuned model to <results_dir>/<run_name>/model (21 MB for tiny)
    results_dir: str = "ablations/results"
    run_name: str | None = None  # None: named by the parameters that differ from the defaults
    progress: bool = True

    def __post_init__(self) -> None:
        for spec in dataclasses.fields(self):
            _check_type(spec.name, getattr(self, spec.name), spec.type)
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(f"parameter {name} must be one of {list(choices)}, got {getattr(self, name)!r}")
        positive = ("atrm_k", "context_length", "hardest_after_steps", "batch_size", "steps", "eval_size", "atrm_k_text",
                    "rerank_k")
        for name in positive:
            value = getattr(self, name)
            if value is not None and value < (0 if name == "hardest_after_steps" else 1):
                raise ValueError(f"parameter {name} must be >= {0 if name == 'hardest_after_steps' else 1}, got {value}")
        for name in ("fine_weight", "lr", "lr_new", "train_minutes"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"parameter {name} must be >= 0, got {value} (a finite number)")
        if self.run_name is not None:
            check_name(self.run_name, "parameter run_name")
        if self.batch_size < 2:
            raise ValueError(f"parameter batch_size must be >= 2 (contrastive losses need negatives), got {self.batch_size}")
        if self.steps is None and self.train_minutes is None:
            raise ValueError("set parameter steps or train_minutes (both are None)")
        if self.pe_mode == "none" and self.context_length > 77:
            raise ValueError(f"parameter pe_mode 'none' keeps 77 positions; context_length must be <= 77, got "
                             f"{self.context_length} (or choose pe_mode kps / linear / scratch)")
        if not self.use_clim and (self.loss != "global" or self.score_mode != "global"):
            raise ValueError(f"use_clim=False leaves no fine-grained score: set loss='global' and score_mode='global' "
                             f"too (got loss={self.loss!r}, score_mode={self.score_mode!r})")
        if self.group_batches and self.dataset != "synthetic":
            raise ValueError(f"parameter group_batches needs data that declares hard-negative groups (dataset "
                             f"'synthetic'); dataset {self.dataset!r} has none: set group_batches=False")
        from .train import TRAIN_PRESETS

        if self.preset not in TRAIN_PRESETS:
            raise ValueError(f"parameter preset must be one of {sorted(TRAIN_PRESETS)}, got {self.preset!r}")

    @property
    def name(self) -> str:
        return self.run_name or point_name(self.measured())

    def measured(self) -> dict[str, Any]:
        """The parameters that define the measurement (no output locations)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in BOOKKEEPING}

    def model_overrides(self) -> dict[str, Any]:
        return {
            "use_atrm": self.use_atrm, "atrm_k": self.atrm_k, "atrm_k_text": self.atrm_k_text,
            "use_clim": self.use_clim, "text.stretch": self.pe_mode, "text.context_length": self.context_length,
            "loss": self.loss, "fine_weight": self.fine_weight, "score_mode": self.score_mode,
            "negatives": "hardest" if self.negatives == "hardest" and self.hardest_after_steps == 0 else "sum",
        }


def validate_parameters(**parameters: Any) -> GridParameters:
    """Check a grid point's parameters (names, types, values) before anything runs."""
    known = {f.name for f in dataclasses.fields(GridParameters)}
    unknown = sorted(set(parameters) - known)
    if unknown:
        raise ValueError(f"unknown grid parameter(s) {unknown}; known: {sorted(known)}")
    return GridParameters(**parameters)


def point_name(parameters: dict[str, Any], base: dict[str, Any] | None = None) -> str:
    """A file-safe name from the parameters that differ from ``base`` (default: the defaults);
    ``default`` if none do. Unsafe characters (in paths) become ``_`` and an over-long name is
    shortened with a hash (``paths.name_from``); ``expand_points`` refuses a spec whose points clash."""
    base = {**GridParameters().measured(), **(base or {})}
    parts = [f"{k}={_short(v)}" for k, v in sorted(parameters.items())
             if k not in BOOKKEEPING and base.get(k, object()) != v]
    return name_from("-".join(parts)) if parts else "default"


# ----------------------------------------------------------------------------- one point
def run_point(params: GridParameters, on_log=None) -> dict[str, Any]:
    """Train and evaluate one grid point; returns its record (also written to ``results_dir``)."""
    import torch

    from .data import SyntheticScenes, load_pairs
    from .evaluate import evaluate_retrieval
    from .pretrained import load_model
    from .train import TRAIN_PRESETS, Trainer, train_config

    started = time.perf_counter()
    preset = TRAIN_PRESETS[params.preset]
    out_dir = owned_run_folder(Path(params.results_dir) / check_name(params.name))
    if params.dataset == "synthetic":
        train_data = SyntheticScenes(split="train")
        test_data = SyntheticScenes(split="test", size=params.eval_size)
    else:
        train_data = load_pairs(params.dataset, split="train", root=params.data_root)
        test_data = load_pairs(params.dataset, split="test", root=params.data_root)
        if params.eval_size:
            test_data = test_data.take(params.eval_size)
    steps_per_epoch = max(1, len(train_data) // params.batch_size)
    train_options = {"out_dir": str(out_dir), "seed": params.seed, "batch_size": params.batch_size,
                     "steps": params.steps, "train_minutes": params.train_minutes, "progress": params.progress,
                     "keep_last": 1, "group_batches": params.group_batches}
    if params.negatives == "hardest" and params.hardest_after_steps > 0:
        train_options["hardest_after_epochs"] = params.hardest_after_steps / steps_per_epoch
    if params.lr is not None:
        train_options["lr_backbone"] = params.lr
    if params.lr_new is not None:
        train_options["lr_new"] = params.lr_new
    config = train_config(params.preset, **train_options)

    torch.manual_seed(params.seed)  # fresh modules' initialisation is part of the run
    model = load_model(preset["model"], **{**preset.get("model_overrides", {}), **params.model_overrides()})
    tick = time.perf_counter()
    history = Trainer(model, train_data, config, on_log=on_log).fit()
    train_seconds = time.perf_counter() - tick
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)  # in the run's own folder: not needed once finished
    model_dir = None
    if params.keep_model:
        model_dir = out_dir / "model"
        model.save_pretrained(str(model_dir))

    tick = time.perf_counter()
    metrics = plain_mode_names(evaluate_retrieval(model, test_data, rerank_k=params.rerank_k, progress=params.progress).metrics)
    eval_seconds = time.perf_counter() - tick
    reference = None
    if params.reference:
        tick = time.perf_counter()
        base = load_model(preset["model"])  # the starting model as is, at its original context
        reference = {
            "name": f"{preset['model']} (before fine-tuning, {base.context_length} tokens)",
            "metrics": evaluate_retrieval(base, test_data, modes=("global",)).metrics,
            "seconds": time.perf_counter() - tick,
        }
    record = {
        "record_version": RECORD_VERSION,
        "run_name": params.name,
        "status": "ok",
        "parameters": dataclasses.asdict(params),
        "metrics": metrics,
        "reference": reference,
        "history": [{k: h[k] for k in ("step", "loss", "global", "fine") if k in h} for h in history if "loss" in h],
        "timings": {"train_s": train_seconds, "eval_s": eval_seconds, "total_s": time.perf_counter() - started},
        "test_pairs": len(test_data),
        "model_dir": str(model_dir) if model_dir else None,
        **provenance(),
    }
    write_record(record, params.results_dir)
    return record


def plain_mode_names(metrics: dict[str, float]) -> dict[str, float]:
    """``fine@rerank20/t2i/R@1`` -> ``fine/t2i/R@1``: one key per mode across points, whether a
    point scored two-stage or not (its ``rerank_k`` parameter says which)."""
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
    return {"versions": versions, "git_commit": commit, "host": platform.node(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def write_record(record: dict[str, Any], results_dir: str | Path) -> Path:
    """Write ``<results_dir>/<run_name>.json`` atomically, as strict JSON.

    Non-finite numbers have no JSON form: in a ``history`` they become ``null`` (a skipped
    step's loss); anywhere else they are an error, since a record never reports one as a result."""
    import tempfile

    path = Path(results_dir) / f"{check_name(record['run_name'])}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {**record, "history": _finite_or_none(record["history"])} if "history" in record else record
    text = json.dumps(record, indent=2, default=str, allow_nan=False)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


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


def summary_frame(record: dict[str, Any]):
    """Rows: scoring modes (and the reference); columns: R@1/5/10 both ways, within-group accuracy."""
    import pandas as pd

    columns = ["t2i/R@1", "i2t/R@1", "t2i/R@5", "i2t/R@5", "t2i/R@10", "i2t/R@10", "group/t2i", "group/i2t"]
    rows = {}
    modes = list(dict.fromkeys(key.split("/")[0] for key in record["metrics"]))
    for mode in modes:
        rows[mode] = [record["metrics"].get(f"{mode}/{c}") for c in columns]
    if record.get("reference"):
        rows["reference: " + record["reference"]["name"]] = [record["reference"]["metrics"].get(f"global/{c}") for c in columns]
    return pd.DataFrame.from_dict(rows, orient="index", columns=columns).round(1)


# ----------------------------------------------------------------------------- grids
@dataclass
class GridSpec:
    name: str
    points: dict[str, dict[str, Any]]  # point name (what differs from `fixed`) → its parameters, in run order
    notebook: Path
    runs_dir: Path


def load_spec(path: str | Path, runs_dir: str | Path | None = None) -> GridSpec:
    """Read and expand a YAML grid spec; every point is validated before anything runs."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"grid spec {path} does not exist")
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"grid spec {path} is not valid YAML: {' '.join(str(error).split())}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"grid spec {path} must be a mapping with keys fixed / points / product, got {type(spec).__name__}")
    unknown = sorted(set(spec) - {"name", "fixed", "points", "product", "notebook", "description"})
    if unknown:
        raise ValueError(f"grid spec {path}: unknown key(s) {unknown}; use name, description, fixed, points, product, notebook")
    name = check_name(str(spec.get("name") or path.stem), f"grid spec {path}: grid name")
    points = expand_points(spec.get("fixed") or {}, spec.get("points"), spec.get("product") or {}, source=str(path))
    notebook = path.parent / spec["notebook"] if spec.get("notebook") else path.parent.parent / "grid.ipynb"
    runs = Path(runs_dir) if runs_dir else path.parent.parent / "runs"
    return GridSpec(name=name, points=points, notebook=notebook, runs_dir=runs / name)


def expand_points(fixed: dict, points: list | None, product: dict, source: str = "spec") -> dict[str, dict[str, Any]]:
    """``fixed`` ∪ each of ``points`` × the product of ``product``'s lists → validated parameter
    dicts, keyed by point name (the parameters that differ from ``fixed``; duplicates merged)."""
    if points is None:
        points = [{}]
    if not isinstance(points, list) or not all(isinstance(p, dict) or p is None for p in points):
        raise ValueError(f"{source}: points must be a list of mappings, got {points!r}")
    for key, values in product.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"{source}: product.{key} must be a non-empty list, got {values!r}")
    expanded: dict[str, dict[str, Any]] = {}
    for point in points:
        for combination in itertools.product(*product.values()):
            parameters = {**fixed, **(point or {}), **dict(zip(product, combination))}
            for key in BOOKKEEPING:
                if key in parameters:
                    raise ValueError(f"{source}: {key} is set by the grid runner, remove it from the spec")
            try:
                validate_parameters(**parameters)
            except (ValueError, TypeError) as error:
                raise ValueError(f"{source}: point {parameters}: {error}") from None
            name = point_name(parameters, base=fixed)
            if name in expanded and validate_parameters(**expanded[name]) != validate_parameters(**parameters):
                raise ValueError(
                    f"{source}: two different points share the name {name!r}: {expanded[name]} and {parameters} "
                    f"(names replace path separators, spaces and other unsafe characters with '_'); rename one of the files"
                )
            expanded.setdefault(name, parameters)
    return expanded


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
    """
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
                                       progress_bar=False, cwd=os.getcwd())
            if _status(spec.runs_dir / f"{name}.json") != "ok":
                raise RuntimeError(f"the notebook finished but wrote no successful record {name}.json")
            return None
        except BaseException as error:  # noqa: BLE001 - any failure of a point is recorded, the grid goes on
            message = _error_text(error)
            write_record({"record_version": RECORD_VERSION, "run_name": name, "status": "failed",
                          "parameters": {**GridParameters().measured(), **parameters}, "error": message,
                          "notebook": str(output), "timings": {"total_s": time.perf_counter() - started},
                          **provenance()}, spec.runs_dir)
            if not isinstance(error, Exception):
                raise
            return message


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


# ----------------------------------------------------------------------------- reading records
def load_records(results_dir: str | Path, status: str | None = None):
    """Every record under ``results_dir`` (recursively) as a DataFrame: one row per record,
    parameter columns, metric columns (``global/t2i/R@1``, ...), ``reference/<metric>``,
    ``status``, ``run_name``, ``path``. Files that are not records are skipped and counted in
    ``frame.attrs["skipped"]``."""
    import pandas as pd

    rows, skipped = [], []
    if not Path(results_dir).is_dir():
        raise FileNotFoundError(f"results folder {results_dir} does not exist; run a grid point first "
                                f"(papermill ablations/grid.ipynb out.ipynb) or point at ablations/runs/<grid>")
    for path in sorted(Path(results_dir).rglob("*.json")):
        if (path.parent / "model.safetensors").is_file() or path.parent.name.startswith("step_"):
            continue  # a saved model's or checkpoint's own config, not a record
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            skipped.append(str(path))
            continue
        if not isinstance(record, dict) or "parameters" not in record or "status" not in record:
            skipped.append(str(path))
            continue
        row = {"run_name": record["run_name"], "status": record["status"], "path": str(path)}
        row.update({k: v for k, v in record["parameters"].items() if k not in BOOKKEEPING})
        row.update(record.get("metrics") or {})
        if record.get("reference"):
            row.update({f"reference/{k}": v for k, v in record["reference"]["metrics"].items()})
        row["total_s"] = (record.get("timings") or {}).get("total_s")
        row["error"] = record.get("error")
        rows.append(row)
    frame = pd.DataFrame(rows)
    if status is not None and not frame.empty:
        frame = frame[frame["status"] == status].reset_index(drop=True)
    frame.attrs["skipped"] = skipped
    return frame


def parameter_columns(frame) -> list[str]:
    """The parameter columns that take more than one value in ``frame``."""
    names = [f.name for f in dataclasses.fields(GridParameters) if f.name not in BOOKKEEPING]
    return [n for n in names if n in frame and frame[n].astype(str).nunique() > 1]


def metric_columns(frame) -> list[str]:
    return [c for c in frame.columns if "/" in c and not c.startswith("reference/")]


def ablation_table(frame, metric: str = "global/group/t2i", by: list[str] | None = None,
                   baseline: dict[str, Any] | None = None):
    """Mean ± std of ``metric`` over seeds for each setting of ``by`` (default: every varied
    parameter but the seed), sorted best first; with ``baseline`` (a setting), a ``delta`` column."""
    import pandas as pd

    if metric not in frame:
        raise KeyError(f"metric {metric!r} is not in the records; choose one of {metric_columns(frame)}")
    ok = frame[frame["status"] == "ok"] if "status" in frame else frame
    by = by if by is not None else [c for c in parameter_columns(ok) if c != "seed"]
    if not by:
        ok = ok.assign(setting="all")
        by = ["setting"]
    keys = ok[by].astype(str)
    grouped = ok.assign(**{c: keys[c] for c in by}).groupby(by, sort=False)[metric]
    table = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std().fillna(0.0), "n": grouped.count()})
    table = table.sort_values("mean", ascending=False)
    if baseline is not None:
        index = tuple(str(baseline[c]) for c in by) if len(by) > 1 else str(baseline[by[0]])
        if index not in table.index:
            raise KeyError(f"baseline {baseline} is not a setting in the table; settings: {list(table.index)}")
        table["delta"] = table["mean"] - table.loc[index, "mean"]
    return table


def plot_ablation(frame, metric: str = "global/group/t2i", x: str = "atrm_k", group: str | None = None, ax=None):
    """``metric`` (mean ± std over seeds) against parameter ``x``, one line per value of ``group``;
    the reference row's value, where records carry one, as a dashed line. Returns the figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    ok = frame[frame["status"] == "ok"] if "status" in frame else frame
    for column in (metric, x) + ((group,) if group else ()):
        if column not in ok:
            raise KeyError(f"column {column!r} is not in the records")
    groups = ok.groupby(ok[group].astype(str)) if group else [(None, ok)]
    for label, part in groups:
        stats = part.groupby(part[x].astype(str), sort=False)[metric].agg(["mean", "std"]).fillna(0.0)
        stats = stats.loc[sorted(stats.index, key=_sort_key)]
        ax.errorbar(stats.index, stats["mean"], yerr=stats["std"], marker="o", capsize=3,
                    label=f"{group}={label}" if group else metric)
    reference = f"reference/{metric}"
    if reference in ok and ok[reference].notna().any():
        ax.axhline(ok[reference].mean(), color="grey", linestyle="--", label="reference (before fine-tuning)")
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax.figure


def _sort_key(value: str):
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def _short(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _check_type(name: str, value: Any, annotation: str) -> None:
    kinds = {"str": str, "int": int, "float": (int, float), "bool": bool}
    allowed = [part.strip() for part in str(annotation).split("|")]
    if value is None:
        if "None" in allowed:
            return
        raise TypeError(f"parameter {name} must not be None (expected {annotation})")
    for part in allowed:
        if part == "None":
            continue
        kind = kinds[part]
        if isinstance(value, bool) and part != "bool":
            continue  # True is an int in Python, never a valid count or rate here
        if isinstance(value, kind):
            return
    raise TypeError(f"parameter {name} must be {annotation}, got {value!r} ({type(value).__name__})")


# ----------------------------------------------------------------------------- the explorer
class AblationExplorer:
    """Interactive view of a results folder (ipywidgets): choose the metric, the x-axis
    parameter, a grouping parameter and filters; the plot and the table (best first, with
    deltas against a pinned baseline) update live; Export writes PNG and CSV.

    ``AblationExplorer("ablations/runs/paper_ablations")`` or ``AblationExplorer(frame)``.
    """

    def __init__(self, records, export_dir: str | Path = "ablations/exports"):
        import ipywidgets as widgets

        self.frame = load_records(records, status="ok") if isinstance(records, (str, Path)) else records
        if self.frame.empty:
            raise ValueError(f"no successful records in {records!r}; run a grid point first")
        self.export_dir = Path(export_dir)
        params = parameter_columns(self.frame) or ["seed"]
        metrics = metric_columns(self.frame)
        self.metric = widgets.Dropdown(options=metrics, value="global/group/t2i" if "global/group/t2i" in metrics else metrics[0],
                                       description="metric")
        self.x = widgets.Dropdown(options=params, value=params[0], description="x axis")
        self.group = widgets.Dropdown(options=["(none)", *params], value="(none)", description="group by")
        self.filters = {
            name: widgets.SelectMultiple(options=sorted(self.frame[name].astype(str).unique(), key=_sort_key),
                                         description=name, rows=min(5, self.frame[name].nunique()))
            for name in params
        }
        self.baseline = widgets.Dropdown(options=["(none)"], value="(none)", description="baseline")
        self.export = widgets.Button(description="Export PNG + CSV", icon="download")
        self.status = widgets.HTML()
        self.plot_output, self.table_output = widgets.Output(), widgets.Output()
        for control in (self.metric, self.x, self.group, self.baseline, *self.filters.values()):
            control.observe(lambda _: self.refresh(), names="value")
        self.export.on_click(lambda _: self.save())
        self.widget = widgets.VBox([
            widgets.HBox([self.metric, self.x, self.group, self.baseline]),
            widgets.HBox(list(self.filters.values())),
            widgets.HBox([self.export, self.status]),
            self.plot_output, self.table_output,
        ])
        self.figure, self.table = None, None
        self.refresh()

    def selection(self):
        """The records that pass the filters (an empty filter passes everything)."""
        frame = self.frame
        for name, control in self.filters.items():
            if control.value:
                frame = frame[frame[name].astype(str).isin(control.value)]
        return frame

    def refresh(self) -> None:
        import matplotlib.pyplot as plt

        frame = self.selection()
        by = [self.x.value] + ([self.group.value] if self.group.value != "(none)" else [])
        settings = ["(none)"] + [" | ".join(str(v) for v in key) for key in frame[by].astype(str).drop_duplicates().values]
        if list(self.baseline.options) != settings:
            current = self.baseline.value
            self.baseline.options = settings
            self.baseline.value = current if current in settings else "(none)"
        baseline = None if self.baseline.value == "(none)" else dict(zip(by, self.baseline.value.split(" | ")))
        self.plot_output.clear_output(wait=True)
        self.table_output.clear_output(wait=True)
        if frame.empty:
            self.status.value = "<i>no records pass the filters</i>"
            return
        if self.figure is not None:
            plt.close(self.figure)
        self.figure = plot_ablation(frame, self.metric.value, self.x.value,
                                    None if self.group.value == "(none)" else self.group.value)
        self.table = ablation_table(frame, self.metric.value, by=by, baseline=baseline)
        self.status.value = f"{len(frame)} record(s)"
        with self.plot_output:
            from IPython.display import display

            display(self.figure)
        with self.table_output:
            from IPython.display import display

            display(highlight(self.table))
        plt.close(self.figure)

    def save(self) -> tuple[Path, Path]:
        """Write the current plot (PNG) and table (CSV) to ``export_dir``."""
        self.export_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{self.metric.value.replace('/', '_')}_by_{self.x.value}"
        png, csv = self.export_dir / f"{stem}.png", self.export_dir / f"{stem}.csv"
        self.figure.savefig(png, dpi=150, bbox_inches="tight")
        self.table.to_csv(csv)
        self.status.value = f"wrote {png} and {csv}"
        return png, csv

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def highlight(table):
    """The ablation table styled: best mean in bold, deltas coloured."""
    style = table.style.format({"mean": "{:.1f}", "std": "{:.1f}", "delta": "{:+.1f}"}).highlight_max(
        subset=["mean"], props="font-weight: bold; background-color: #e6f4ea")
    if "delta" in table:
        style = style.map(lambda v: "color: #137333" if v > 0 else ("color: #a50e0e" if v < 0 else ""), subset=["delta"])
    return style
