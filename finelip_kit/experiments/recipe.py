"""The one run recipe: a run specification → model + data + TrainConfig → Trainer → evaluation → one record.

    from finelip_kit.recipe import RunSpec, run
    result = run(RunSpec(settings={"atrm_k": 8, "train.steps": 50}, name="k8", results_dir="runs"))
    result.record["metrics"]["global/group/t2i"]

``finelip train``, ``ablations/grid.ipynb`` (one grid point), ``notebooks/01_quickstart``,
``notebooks/02_train``, the calibration grid and ``finelip pretrain-tiny`` all call ``run``.
A run is a run preset (``presets.RUN_PRESETS``) plus settings in the one vocabulary
(``finelip_kit.settings``: ``model.*``, ``train.*``, ``data.*``, ``eval.*``). It writes its
folder ``<results_dir>/<name>/`` (training log, checkpoints, the model) and its record
``<results_dir>/<name>.json`` (``finelip_kit.records``).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from .paths import check_name, owned_run_folder
from .presets import RUN_PRESETS, TRAIN_PRESETS, preset_settings  # noqa: F401 (TRAIN_PRESETS: the old name)
from .settings import DataSpec, EvalSpec, SettingError, bookkeeping_keys, by_section, canonical, flatten, normalise
from ..train import TrainConfig


def demo_model_dir() -> Path:
    """Where `make demo` (ablations/grid.ipynb with its defaults) leaves its model: in the project the
    working directory lies in (the checkout, or a folder ``finelip notebooks`` made; ``shipped.py``)."""
    from .shipped import DEMO_RESULTS, in_project

    return in_project(DEMO_RESULTS) / "default" / "model"


@dataclass(frozen=True)
class RunSpec:
    """One run: a run preset, settings that override it, and where it writes."""

    settings: dict = field(default_factory=dict)  # any key of the vocabulary (dotted, an alias or a bare field)
    preset: str = "synthetic-tiny"
    name: str = "run"  # the run folder <results_dir>/<name>/ and the record <results_dir>/<name>.json
    results_dir: str = "runs"
    keep_model: bool = True  # save the trained model to <results_dir>/<name>/model
    keep_checkpoints: bool = True  # False: remove <name>/checkpoints once the run is recorded
    progress: bool = True
    requested: dict | None = None  # the parameters as the caller named them (a grid point's), kept in the record

    @property
    def folder(self) -> Path:
        return Path(self.results_dir) / check_name(self.name)


@dataclass
class Resolved:
    """A run's every setting, built and checked: what ``run`` executes and the record reports."""

    model_source: str
    model_overrides: dict[str, Any]
    train: TrainConfig
    data: DataSpec
    eval: EvalSpec

    def settings(self, model_config=None) -> dict[str, Any]:
        """Every measured setting as dotted keys (bookkeeping left out): the record's ``settings``;
        with ``model_config``, every model key, else the overrides only."""
        model = flatten("model", model_config.to_dict()) if model_config is not None else {
            f"model.{k}": v for k, v in self.model_overrides.items()}
        data = {f"data.{k}": v for k, v in asdict(self.data).items() if k != "synthetic"}
        from ..data.datasets import source_info

        generated = source_info(self.data.source).config
        if generated is not None:  # a generated source's every config field is a setting
            data.update({f"data.{k}": v for k, v in asdict(generated(**self.data.synthetic)).items()})
        out = {"model.source": self.model_source, **model, **flatten("train", self.train.to_dict()), **data,
               **flatten("eval", asdict(self.eval))}
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in out.items() if k not in bookkeeping_keys()}


@dataclass
class RunResult:
    record: dict[str, Any]
    model: Any  # the trained FineLIP
    history: list[dict[str, Any]]





def demo_model(model: str | None = "auto", steps: int = 300, batch_size: int = 64, out_dir: str = "runs/alignment"):
    """A model to look at: ``"auto"`` loads the `make demo` result (``ablations/results/default/model``
    in the project, wherever in it the notebook runs: ``recipe.demo_model_dir``) if it exists, else
    says so (with the path it looked at) and fine-tunes the ``synthetic-tiny`` preset for ``steps``
    through the one recipe into ``out_dir/model``; ``None`` always trains; anything else is loaded
    with ``load_model`` (a checkpoint dir, ...)."""
    from ..model.pretrained import load_model

    if model == "auto":
        found = demo_model_dir()
        if found.is_dir():
            model = str(found)
        else:
            print(f"no `make demo` model at {found} (run `make demo` in the checkout, or set model to a checkpoint "
                  f"folder); training the synthetic-tiny preset for {steps} steps instead (about "
                  f"{max(1, round(steps * 0.45 / 60))} min on 2 cores)")
            model = None
    if model is None:
        spec = RunSpec(settings={"steps": steps, "batch_size": batch_size, "eval.size": 64, "eval.reference": False},
                       name="model", results_dir=out_dir, progress=False)
        model = run(spec).record["model_dir"]
    return load_model(model)


def train_config(preset: str = "synthetic-tiny", **overrides: Any) -> TrainConfig:
    """The ``TrainConfig`` of a preset, with ``TrainConfig`` fields overridden (a run's whole
    specification goes through ``recipe.resolve``; this is its training part alone)."""
    preset_settings(preset)  # an unknown name is an error that lists the presets
    for key in overrides:
        canonical(f"train.{key}")  # an unknown option: SettingError naming the closest ones
    return TrainConfig(**{**RUN_PRESETS[preset]["train"], **overrides})


def with_validation_size(settings: dict[str, Any], preset: str, val_size: int | None) -> dict[str, Any]:
    """``settings`` (dotted, normalised) with the validation size a run started by hand takes unless it names
    one (``finelip train --eval-size``, notebook 02's ``eval_size``): on the synthetic benchmark ``val_size``
    pairs; on real data with a validation split, all of it."""
    out = dict(settings)
    from ..data.datasets import source_info

    source = out.get("data.source", preset_settings(preset)["data.source"])
    if source_info(source).generated:
        out.setdefault("eval.val_size", val_size)
    elif out.get("data.val_split"):
        out.setdefault("eval.val_size", None)
    return out


def resolve(spec: RunSpec) -> Resolved:
    """Check and build every setting of ``spec`` (nothing is loaded or trained): the preset's
    settings, then the run's on top. The preset's model overrides apply to the preset's own
    model only; naming another ``model.source`` starts from that model as it is."""
    user = normalise(spec.settings, where=f"run {spec.name!r} settings")
    if "train.out_dir" in user:
        raise SettingError(f"train.out_dir is set by the run's results folder and name "
                           f"({spec.folder}); remove it and set the run's name / results_dir instead")
    base = preset_settings(spec.preset)
    if "model.source" in user and user["model.source"] != base["model.source"]:
        base = {k: v for k, v in base.items() if not k.startswith("model.")}
    sections = by_section({**base, **user})
    model = sections["model"]
    source = model.pop("source")
    data_fields = {f.name for f in fields(DataSpec)}
    synthetic = {k: v for k, v in sections["data"].items() if k not in data_fields}
    data = DataSpec(**{k: v for k, v in sections["data"].items() if k in data_fields}, synthetic=synthetic)
    train = TrainConfig(**{**sections["train"], "out_dir": str(spec.folder), "progress": spec.progress})
    return Resolved(model_source=str(source), model_overrides=model, train=train, data=data,
                    eval=EvalSpec(**sections["eval"]))


def load_data(data: DataSpec, evaluation: EvalSpec):
    """(train, validation or None, test or None) pairs for a run. Validation and test come from
    ``data.eval_source`` when set (else ``data.source``); the synthetic benchmark's validation
    split is always ``val``. A size of 0 skips a split, None takes all of it."""
    from ..data.datasets import source_info

    if evaluation.binding and not source_info(data.eval_source or data.source).generated:
        raise ValueError(f"eval.binding is a probe of the synthetic benchmark; the evaluation data here is "
                         f"{data.eval_source or data.source!r}: set eval.binding=false")
    from ..data import CaptionView, load_pairs
    from ..data.protocols import names_a_split

    def pairs(source: str, split: str, size: int | None = None):
        # a protocol name (data.eval_source=flickr30k-all) fixes its own split; shards are one set
        one_set = names_a_split(source) or source.startswith("wds:")
        return load_pairs(source, split=None if one_set else split, root=data.root, on_error=data.on_error,
                          size=size or None, config=(data.synthetic or None) if source_info(source).generated else None)

    source = data.eval_source or data.source
    if names_a_split(source) and data.val_split and evaluation.val_size != 0:
        raise ValueError(f"the evaluation data {source!r} is a protocol: one fixed set, which cannot be both the "
                         f"validation split {data.val_split!r} and the test set; validate on the dataset's own split "
                         f"(data.eval_source=<dataset>) or set eval.val_size=0")
    if source.startswith("wds:") and ((data.test_split and evaluation.size != 0) or
                                      (data.val_split and evaluation.val_size != 0)):
        raise ValueError(f"the evaluation data {source!r} are webdataset shards, streamed for training; evaluate on "
                         f"other data (data.eval_source=<dataset or file>) or on none (data.test_split=null)")
    train = pairs(data.source, data.train_split)
    val_split = source_info(source).validation_split or data.val_split
    val = pairs(source, val_split, evaluation.val_size) if val_split and evaluation.val_size != 0 else None
    test = pairs(source, data.test_split, evaluation.size) if data.test_split and evaluation.size != 0 else None
    if data.caption_field != "caption":
        if data.source.startswith("wds:"):
            raise ValueError(f"data.caption_field={data.caption_field!r} does not apply to webdataset shards, whose "
                             f"caption is each sample's .txt; write the shards from that caption field instead")
        train = CaptionView(train, data.caption_field)
    return train, val, test


def binding_pairs(data: DataSpec, size: int):
    """``size`` test pairs of the run's synthetic scenes in binding groups (two late objects
    swap attributes; ``SyntheticConfig.group_kind``): the ``eval.binding`` probe."""
    from ..data import SyntheticConfig, SyntheticScenes

    config = SyntheticConfig(**{**data.synthetic, "group_kind": "binding", "differing_objects": 2})
    return SyntheticScenes(config, split="test", size=size)


def run(spec: RunSpec, on_log: Callable[[dict[str, Any]], None] | None = None) -> RunResult:
    """Train and evaluate one run; its record is written to ``<results_dir>/<name>.json``.
    Under torchrun or ``srun`` with several tasks every process trains (DDP) and rank 0 saves,
    evaluates and writes the record (the others return an empty record)."""
    import torch

    from ..model.pretrained import load_model
    from ..train.distributed import init_distributed

    from dataclasses import replace

    from ..train.preemption import Preempted, requeue_job, resume_after_requeue, slurm_job

    started = time.perf_counter()
    resolved = resolve(spec)
    resolved = replace(resolved, train=resume_after_requeue(resolved.train))  # a requeued SLURM job goes on
    rank, world_size = init_distributed()  # torchrun's or srun's processes: one run, rank 0 writes
    folder = owned_run_folder(spec.folder) if rank == 0 else spec.folder
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()  # the run folder exists before any rank writes into it
    data = load_data(resolved.data, resolved.eval)
    config = resolved.train
    torch.manual_seed(config.seed)  # the fresh modules' initialisation is part of the run
    model = load_model(resolved.model_source, **resolved.model_overrides)
    try:
        with run_trackers(spec, config.tracker if rank == 0 else (), folder, resume=config.resume is not None) as trackers:
            trackers.config(resolved.settings(model.config))  # closed (failed on any error) before a requeue
            record, history = _train_and_record(spec, resolved, model, data, trackers, on_log, started, folder, rank)
    except Preempted as stopped:  # the checkpoint is saved; under SLURM with train.requeue the job goes back
        if config.requeue and rank == 0 and slurm_job():
            requeue_job(slurm_job())
            stopped.requeued = slurm_job()
        raise
    return RunResult(record=record, model=model, history=history)


def run_trackers(spec: RunSpec, names: tuple[str, ...], folder: Path, resume: bool = False):
    """The run's experiment trackers (``train.tracker``): grouped by the results folder (a grid's
    points share it), named by the run, tagged with the preset and a grid point's parameters."""
    from ..train.trackers import Trackers

    requested = dict(spec.requested) if spec.requested is not None else {}
    tags = (f"preset:{spec.preset}",
            *(f"{k}={v}"[:64] for k, v in sorted(requested.items()) if not isinstance(v, dict)))  # W&B: 64 at most
    return Trackers(names, folder, name=spec.name, group=Path(spec.results_dir).resolve().name, tags=tags,
                    results_dir=spec.results_dir, resume=resume)


def _train_and_record(spec, resolved, model, data, trackers, on_log, started, folder, rank):
    """Train, evaluate, write the record: ``run``'s body, with the trackers open."""
    from ..data import CaptionView
    from ..evaluation import caption_probes, data_protocol, evaluate_retrieval
    from ..model.pretrained import load_model
    from .records import new_record, plain_mode_names, summary_frame, write_record
    from ..train import Trainer

    train_data, val_data, test_data = data
    config, evaluation = resolved.train, resolved.eval
    tick = time.perf_counter()
    periodic = val_data if config.eval_every else None
    trainer = Trainer(model, train_data, config, eval_data=periodic, eval_modes=evaluation.modes, on_log=on_log,
                      final_eval=False, trackers=trackers)
    history = trainer.fit()
    train_seconds = time.perf_counter() - tick
    if rank != 0:  # the other ranks trained; rank 0 saves, evaluates and records
        return {}, history
    if not spec.keep_checkpoints:
        shutil.rmtree(folder / "checkpoints", ignore_errors=True)  # inside the run's own folder
    model_dir = None
    if spec.keep_model:
        model_dir = folder / "model"
        model.save_pretrained(str(model_dir))

    chance: dict[str, dict[str, float]] = {}  # within-group accuracy of a random scorer, per split with groups

    def score(pairs, modes=evaluation.modes, rerank_k=evaluation.rerank_k, split=None) -> dict[str, float]:
        result = evaluate_retrieval(model, pairs, modes=modes, rerank_k=rerank_k, batch_size=evaluation.batch_size,
                                    chunk_bytes=evaluation.chunk_bytes,
                                    progress=spec.progress, device=config.device if config.device != "auto" else None)
        if split and result.chance:
            chance[split] = result.chance
        return plain_mode_names(result.metrics)

    tick = time.perf_counter()
    metrics = score(test_data, split="test") if test_data is not None else {}
    if test_data is not None and evaluation.alt_captions:
        alt = score(CaptionView(test_data, "alt_caption"), modes=("global",), rerank_k=None)
        metrics.update({f"alt/{k}": v for k, v in alt.items()})
    if test_data is not None and evaluation.probes:
        metrics.update(caption_probes(model, test_data, evaluation.probes, modes=evaluation.modes,
                                      position=evaluation.probe_position, fillers=evaluation.probe_fillers,
                                      max_k=evaluation.prefix_k, batch_size=evaluation.batch_size,
                                      device=config.device if config.device != "auto" else None))
    if test_data is not None and evaluation.binding:
        metrics.update({f"binding/{k}": v for k, v in score(binding_pairs(resolved.data, len(test_data))).items()})
    val_metrics = score(val_data, split="val") if val_data is not None else {}
    if val_metrics:  # the training log ends with the final validation scores, as periodic evaluations appear there
        trainer.write_log({"step": trainer.step, "final": True, **{f"eval/{k}": round(v, 3) for k, v in val_metrics.items()}})
    eval_seconds = time.perf_counter() - tick
    reference = None
    if evaluation.reference and test_data is not None:
        tick = time.perf_counter()
        base = load_model(resolved.model_source)  # the starting model as is, at its original context
        reference = {
            "name": f"{resolved.model_source} (before fine-tuning, {base.context_length} tokens)",
            "metrics": evaluate_retrieval(base, test_data, modes=("global",), batch_size=evaluation.batch_size).metrics,
            "seconds": time.perf_counter() - tick,
        }
    record = new_record(
        spec.name, "ok", preset=spec.preset, settings=resolved.settings(model.config),
        parameters=dict(spec.requested) if spec.requested is not None else normalise(spec.settings),
        metrics=metrics,
        val_metrics=val_metrics,
        reference=reference,
        history=[{k: h[k] for k in ("step", "loss", "global", "fine", "global_augmented", "fine_augmented") if k in h}
                 for h in history if "loss" in h],
        timings={"train_s": train_seconds, "eval_s": eval_seconds, "total_s": time.perf_counter() - started},
        protocols={"test": data_protocol(test_data), "val": data_protocol(val_data)},  # what the numbers were measured on
        chance=chance,  # {"test": {"group/i2t": 25.0, "group/t2i": 25.0}, ...}: within-group accuracy by chance
        test_pairs=len(test_data) if test_data is not None else 0,
        val_pairs=len(val_data) if val_data is not None else 0,
        run_dir=str(folder),
        model_dir=str(model_dir) if model_dir else None,
    )
    write_record(record, spec.results_dir)
    if trackers:
        trackers.summary({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        for name, values in (("test", metrics), ("validation", val_metrics)):
            if values:
                trackers.table(f"evaluation/{name}", summary_frame({"metrics": values}).rename_axis("mode"))
    return record, history
