"""Experiment trackers: TensorBoard, Weights & Biases, MLflow, from one setting (``train.tracker``).

    TrainConfig(tracker=("wandb", "mlflow"))        # or --set tracker=wandb,mlflow

Every record the trainer logs (loss terms, learning rates, samples/s, data and step seconds,
periodic evaluations) goes to each tracker at its step; the recipe adds the run's settings
(the whole vocabulary), the final evaluation tables and its metrics, and tags grid points
with their grid (the tracker's group) and point name. Only rank 0 tracks.

Where each writes, with nothing reaching the network unless the user has configured it:
- ``tensorboard``: ``<run folder>/tensorboard`` (``tensorboard --logdir <grid folder>`` shows
  every point of a grid as one run);
- ``wandb``: the project ``$WANDB_PROJECT`` (default ``finelip-kit``), run files under the run
  folder; ``WANDB_MODE=offline`` keeps it local (``wandb sync`` uploads it later);
- ``mlflow``: ``$MLFLOW_TRACKING_URI`` when set (a server, ``sqlite:///...``), else MLflow's
  file store ``<results folder>/mlruns``, shared by the runs of one results folder (MLflow 3
  keeps that store in maintenance mode; the kit sets ``MLFLOW_ALLOW_FILE_STORE=true`` unless you
  set it); the experiment is the grid (the results folder's name).
The tracker's run id is kept in ``<run folder>/trackers.json``: a resumed run continues it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

TRACKERS = ("tensorboard", "wandb", "mlflow")
_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
IDS_FILE = "trackers.json"


def tracker_names(value: Any) -> tuple[str, ...]:
    """``train.tracker`` as a tuple of tracker names: ``"none"``, one name, ``"wandb,mlflow"``, or a list."""
    if value is None:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(dict.fromkeys(str(item).strip().lower() for item in items if str(item).strip()))
    unknown = [name for name in names if name not in TRACKERS + ("none",)]
    if unknown:
        raise ValueError(f"tracker must be 'none' or any of {TRACKERS} (several: 'wandb,mlflow'), got {value!r}")
    if "none" in names and len(names) > 1:
        raise ValueError(f"tracker 'none' cannot be combined with others, got {value!r}")
    return tuple(name for name in names if name != "none")


def check_installed(names: tuple[str, ...]) -> None:
    """Fail before training when a named tracker's package is missing."""
    import importlib.util

    missing = [name for name in names if importlib.util.find_spec(_PACKAGES[name]) is None]
    if missing:
        raise ValueError(f"train.tracker names {missing}, whose package is not installed: pip install "
                         f"{' '.join(_PACKAGES[m] for m in missing)} (or pip install 'finelip-kit[trackers]'), or "
                         f"set tracker=none")


class Trackers:
    """The run's open trackers (none when ``names`` is empty): ``log``, ``config``, ``table``,
    ``summary``; used as ``with Trackers(...) as trackers:``, which closes them. ``out_dir``: the
    run folder; ``group``: the grid (or results folder); ``name``: the run or point; ``tags``: short strings (``preset:paper-b16``, ``atrm_k=16``);
    ``resume``: continue the tracker runs recorded in the run folder's ``trackers.json``."""

    def __init__(self, names: tuple[str, ...], out_dir: str | Path, name: str | None = None, group: str | None = None,
                 tags: tuple[str, ...] = (), results_dir: str | Path | None = None, resume: bool = False):
        self.names = tuple(names)
        check_installed(self.names)
        self.out_dir = Path(out_dir)
        self.name = name or self.out_dir.name
        self.group = group or self.out_dir.parent.name or "runs"
        self.tags = tuple(tags)
        self.results_dir = Path(results_dir) if results_dir else self.out_dir.parent
        self._open: dict[str, Any] = {}
        if not self.names:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        ids = self._ids() if resume else {}  # a resumed run continues its tracker runs; a new run starts new ones
        for tracker in self.names:
            self._open[tracker] = getattr(self, f"_open_{tracker}")(ids.get(tracker))
        (self.out_dir / IDS_FILE).write_text(json.dumps({k: v["id"] for k, v in self._open.items() if v.get("id")}))

    def __bool__(self) -> bool:
        return bool(self._open)

    def __enter__(self) -> "Trackers":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        """The one place a tracker run ends: finished, or failed when the block raised (a
        pre-empted run too: it goes on in the same tracker run when it resumes)."""
        self.close(failed=kind is not None)

    def _ids(self) -> dict[str, str]:
        try:
            return json.loads((self.out_dir / IDS_FILE).read_text())
        except (OSError, ValueError):
            return {}

    # ------------------------------------------------------------------ opening
    def _open_tensorboard(self, run_id):
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(self.out_dir / "tensorboard"))
        writer.add_text("tags", ", ".join((f"group:{self.group}", f"name:{self.name}", *self.tags)))
        return {"writer": writer}

    def _open_wandb(self, run_id):
        import wandb

        run = wandb.init(project=os.environ.get("WANDB_PROJECT", "finelip-kit"), group=self.group, name=self.name,
                         tags=list(self.tags), dir=str(self.out_dir), id=run_id, resume="allow" if run_id else None,
                         reinit="create_new")
        return {"run": run, "id": run.id}

    def _open_mlflow(self, run_id):
        from mlflow import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:  # the local default: MLflow's file store (MLflow 3 keeps it in maintenance mode; opt in)
            uri = (self.results_dir.resolve() / "mlruns").as_uri()
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(self.group)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(self.group)
        if run_id is None:
            tags = {"mlflow.runName": self.name, "group": self.group,
                    **{tag.split("=", 1)[0] if "=" in tag else tag: tag.split("=", 1)[1] if "=" in tag else "true"
                       for tag in self.tags}}
            run_id = client.create_run(experiment_id, run_name=self.name, tags=tags).info.run_id
        else:
            client.update_run(run_id, status="RUNNING")
        return {"client": client, "id": run_id, "uri": uri}

    # ------------------------------------------------------------------ logging
    def log(self, record: dict[str, Any]) -> None:
        """A trainer record's numbers at its ``step`` (``eval/...`` keys as they are)."""
        if not self._open:
            return
        step = int(record["step"])
        numbers = {k: float(v) for k, v in record.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"}
        for tracker, handle in self._open.items():
            if tracker == "tensorboard":
                for key, value in numbers.items():
                    handle["writer"].add_scalar(key, value, step)
            elif tracker == "wandb":
                handle["run"].log(numbers, step=step)
            elif tracker == "mlflow":
                from mlflow.entities import Metric

                now = int(time.time() * 1000)
                metrics = [Metric(_mlflow_key(k), v, now, step) for k, v in numbers.items()]
                for first in range(0, len(metrics), 500):
                    handle["client"].log_batch(handle["id"], metrics=metrics[first:first + 500])

    def config(self, settings: dict[str, Any]) -> None:
        """The run's settings (flat ``section.key`` names)."""
        flat = {k: v if isinstance(v, (int, float, str, bool)) or v is None else json.dumps(v, default=str)
                for k, v in _flatten(settings).items()}
        for tracker, handle in self._open.items():
            if tracker == "tensorboard":
                lines = "\n".join(f"| {k} | {v} |" for k, v in sorted(flat.items()))
                handle["writer"].add_text("settings", "| setting | value |\n|---|---|\n" + lines)
            elif tracker == "wandb":
                handle["run"].config.update(flat, allow_val_change=True)
            elif tracker == "mlflow":
                from mlflow.entities import Param, RunTag

                # a resumed run may change its budget (resume_changes); MLflow params are write-once,
                # so a changed one is kept as a tag "changed.<key>": "<old> -> <new>"
                before = handle["client"].get_run(handle["id"]).data.params
                values = {_mlflow_key(k): str(v)[:6000] for k, v in flat.items()}
                params = [Param(k, v) for k, v in values.items() if k not in before]
                tags = [RunTag(f"changed.{k}", f"{before[k]} -> {v}") for k, v in values.items()
                        if k in before and before[k] != v]
                for first in range(0, max(len(params), len(tags)), 100):
                    handle["client"].log_batch(handle["id"], params=params[first:first + 100],
                                               tags=tags[first:first + 100])

    def table(self, name: str, frame) -> None:
        """An evaluation table (a pandas DataFrame: rows = scoring modes, columns = metrics)."""
        frame = frame.reset_index()
        for tracker, handle in self._open.items():
            if tracker == "tensorboard":
                handle["writer"].add_text(name, frame.to_markdown(index=False) if _has_tabulate() else frame.to_string())
            elif tracker == "wandb":
                import wandb

                handle["run"].log({name: wandb.Table(dataframe=frame)})
            elif tracker == "mlflow":
                handle["client"].log_table(handle["id"], data=frame, artifact_file=f"{name}.json")

    def summary(self, metrics: dict[str, float]) -> None:
        """The run's final metrics (the record's), as the run's summary."""
        for tracker, handle in self._open.items():
            if tracker == "tensorboard":
                for key, value in metrics.items():
                    handle["writer"].add_scalar(f"final/{key}", value, 0)
            elif tracker == "wandb":
                handle["run"].summary.update({f"final/{k}": v for k, v in metrics.items()})
            elif tracker == "mlflow":
                from mlflow.entities import Metric

                metrics_ = [Metric(_mlflow_key(f"final/{k}"), float(v), 0, 0) for k, v in metrics.items()]
                for first in range(0, len(metrics_), 500):
                    handle["client"].log_batch(handle["id"], metrics=metrics_[first:first + 500])

    def close(self, failed: bool = False) -> None:
        for tracker, handle in self._open.items():
            if tracker == "tensorboard":
                handle["writer"].close()
            elif tracker == "wandb":
                handle["run"].finish(exit_code=1 if failed else 0)
            elif tracker == "mlflow":
                handle["client"].set_terminated(handle["id"], status="FAILED" if failed else "FINISHED")
        self._open = {}


def _flatten(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _mlflow_key(key: str) -> str:
    """MLflow allows letters, digits, ``_ - . / space`` and ``:``... in names; anything else becomes ``_``."""
    return "".join(c if c.isalnum() or c in "_-./ " else "_" for c in key)


def _has_tabulate() -> bool:
    import importlib.util

    return importlib.util.find_spec("tabulate") is not None
