"""``finelip`` command line.

    finelip train --preset synthetic-tiny --out runs/x [--data synthetic|<name>|<path>] [--set key=value ...]
                  (the one recipe, finelip_kit.recipe.run: writes runs/x/ and the record runs/x.json)
    finelip pretrain-tiny --out <dir>   (rebuilds the packaged tiny-synthetic-clip)
    finelip eval --model <spec> --data <name|path> [--data-root <dir>] [--modes ...] [--rerank-k 50] --out results.json
    finelip export --from <dir|.pt|.safetensors> --to <dir> [--what text|clip|finelip|open_clip]
    finelip shard <pairs> --out <dir> [--shard-size N]   (webdataset shards; train on them with --data wds:<dir>/)
    finelip grid ablations/grids/<name>.yaml [--workers N] [--force] [--kernel NAME]
    finelip notebooks --to <dir>   (the notebooks and grid specs, for a kit installed from a wheel)
    finelip show <results_dir>/<run>.json   (a record as a short table)

``torchrun --nproc_per_node=N -m finelip_kit.cli train ...`` trains on N processes.
"""

from __future__ import annotations

import argparse
import math
import os
import pickle
import sys
from pathlib import Path


def export(args: argparse.Namespace) -> int:
    from .model.pretrained import export_clip, export_open_clip, export_text_encoder, load_model, save_pretrained

    model = load_model(args.source)
    writer = {"text": export_text_encoder, "clip": export_clip, "finelip": save_pretrained,
              "open_clip": export_open_clip}[args.what]
    writer(model, args.to)
    print(f"wrote {args.what} export of {args.source} to {args.to} (context length {model.context_length})")
    return 0


def parse_value(text: str):
    """``--set`` values: numbers, booleans, ``None``/``null``, lists (``[1, 2]``), else the string
    itself (so ``text.stretch=none`` stays the string ``"none"``)."""
    import ast

    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if text.strip() in ("None", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    if lowered.lstrip("+-") in ("inf", "infinity", "nan"):
        return float(lowered)  # a number (refused where a finite one is needed), not the string "inf"
    return text


def parse_settings(settings: list[str]) -> dict:
    """``key=value`` pairs → settings (keys in any form of the vocabulary, ``finelip_kit.settings``)."""
    out = {}
    for setting in settings:
        if "=" not in setting:
            raise SystemExit(f"--set expects key=value, got {setting!r}")
        key, value = setting.split("=", 1)
        out[key.strip()] = parse_value(value)
    return out


def train(args: argparse.Namespace) -> int:
    from .experiments.recipe import RunSpec, run, with_validation_size
    from .experiments.settings import normalise

    settings = normalise(parse_settings(args.set or []), where="--set")
    options = {"model.source": args.model, "data.source": args.data, "data.root": args.data_root,
               "data.train_split": args.train_split, "data.eval_source": args.eval_data, "data.val_split": args.eval_split}
    for key, value in options.items():
        if value is not None:
            if key in settings and settings[key] != value:
                raise ValueError(f"{key} is given twice: by an option ({value!r}) and by --set ({settings[key]!r}); keep one")
            settings[key] = value
    settings = with_validation_size(settings, args.preset, args.eval_size)
    out = Path(args.out)
    spec = RunSpec(settings=settings, preset=args.preset, name=out.name, results_dir=str(out.parent),
                   progress=bool(settings.get("train.progress", True)))
    if args.executor == "slurm":
        from .experiments.cluster import submit_run, wait_for_run
        from .experiments.recipe import resolve

        resolve(spec)  # a bad setting fails here, not in the queue
        job = submit_run(spec, slurm_options(args), folder=out.parent / "slurm")
        print(f"submitted job {job.job_id}: {out} (logs {job.paths.stdout.parent})")
        if not args.wait:
            return 0
        result = wait_for_run(job)
        print(f"job {job.job_id} ended: {result['run_name']} {result['status']}; record {out.parent / (out.name + '.json')}")
        return 0
    record = run(spec).record
    if not record:  # a rank other than 0 of a torchrun / srun job: rank 0 reports
        return 0
    config = record["settings"]
    budget = f"{config['train.steps']} steps" if config["train.steps"] else f"{config['train.epochs']} epochs"
    print(f"trained {budget}; run folder: {out}; record: {out.parent / (out.name + '.json')}")
    print(record_summary(record))
    return 0


def record_summary(record: dict) -> str:
    """A finished run's record as text: per split, a table of every scoring mode (``summary_table``),
    and the reference (the starting model as is) beside it."""
    lines = []
    for title, metrics in (("validation", record.get("val_metrics")), ("test", record.get("metrics"))):
        if metrics:
            split = "val" if title == "validation" else "test"
            lines.append(f"{title} ({record.get(split + '_pairs')} pairs), protocol {(record.get('protocols') or {}).get(split)}:")
            lines.append(summary_table(metrics, (record.get("chance") or {}).get(split)))
    if record.get("reference"):
        reference = record["reference"]["metrics"]
        lines.append(f"reference, {record['reference']['name']}: within-group "
                     f"{reference.get('global/group/t2i', float('nan')):.1f}%, R@1 {reference['global/t2i/R@1']:.1f}% (test)")
    return "\n".join(lines)


def show(args: argparse.Namespace) -> int:
    from .experiments.records import read_record

    record = read_record(args.record)
    if record is None:
        raise ValueError(f"{args.record} is not a run record (a record has run_name, status and settings); "
                         f"name a <results_dir>/<run>.json a run or grid point wrote")
    print(f"{args.record}: run {record.get('run_name')!r}, preset {record.get('preset')!r}, status {record.get('status')}")
    if record.get("status") != "ok":
        print(f"  the run failed: {record.get('error')}")
        return 1
    print(record_summary(record))
    return 0


def summary_table(metrics: dict, chance: dict | None = None) -> str:
    """A compact text table of retrieval metrics (``<mode>/<metric>`` keys); ``chance``: within-group
    accuracy by chance (``evaluate.group_chance``), printed as a last row (``evaluation.tables.metrics_text``)."""
    from .evaluation.tables import metrics_text

    return metrics_text(metrics, chance)


def evaluate(args: argparse.Namespace) -> int:
    from .data import load_pairs
    from .evaluation import evaluate_retrieval, paper_table, write_results
    from .model.pretrained import load_model

    model = load_model(args.model)
    data = load_pairs(args.data, split=args.split, root=args.data_root, on_error=args.on_error, size=args.size)
    if data.report.skipped or data.report.notes:
        print(data.report)
    if args.data.startswith("wds:"):
        data = data.take()  # an evaluation gallery is scored whole: read the shards into memory
    result = evaluate_retrieval(model, data, modes=args.modes, fuse_weight=args.fuse_weight, rerank_k=args.rerank_k,
                                batch_size=args.batch_size, progress=True)
    print(f"protocol {result.protocol} ({len(data)} pairs):")
    print(result.table.to_string())
    print(paper_table({result.protocol: result}, mode=(args.modes or ["global"])[0]).to_string())
    probes = None
    if args.probes:
        from .evaluation import caption_probes, probes_table

        probes = caption_probes(model, data, args.probes, modes=args.modes, position=args.probe_position,
                                fillers=args.probe_fillers, max_k=args.prefix_k, batch_size=args.batch_size)
        table = probes_table(probes, plain=result.metrics)
        print(f"\nsentence-level probes (R@1 and within-group accuracy, percent; 'none': the captions as they are):")
        print(table.round(1).to_string())
        for mode, value in table.attrs["himo"].items():
            print(f"HiMo@{args.prefix_k} ({mode}): {value:.3f} over {int(probes[f'prefix/{mode}/himo_captions'])} captions")
    if args.out:
        print(f"wrote {write_results(args.out, result, model=args.model, data=args.data, split=args.split, pairs=len(data), probes=probes)}")
    return 0


def shard(args: argparse.Namespace) -> int:
    from .data import load_pairs, source_info
    from .data.shards import write_shards

    pairs = load_pairs(args.pairs, split=args.split or source_info(args.pairs).train_split, root=args.data_root,
                       on_error=args.on_error, size=args.size)
    report = write_shards(pairs, args.out, shard_size=args.shard_size, overwrite=args.overwrite)
    print(report)
    last = f"{report.shards - 1:06d}"
    print(f"stream them with load_pairs('wds:{args.out}/{{000000..{last}}}.tar') or --data wds:{args.out}/")
    return 0


def notebooks(args: argparse.Namespace) -> int:
    from .experiments.shipped import copy_project

    written = copy_project(args.to, overwrite=args.overwrite)
    root = Path(args.to).expanduser().resolve()
    print(f"copied {len(written)} files (notebooks/, ablations/grid.ipynb, explorer.ipynb, ablations/grids/) to {root}")
    print(f"open them with: jupyter lab {root}  (relative paths in them start at {root})")
    return 0


def pretrain_tiny(args: argparse.Namespace) -> int:
    import json

    from .experiments.pretrain import pretrain_tiny as run

    metrics = run(args.out, steps=args.steps, seed=args.seed, settings=parse_settings(args.set or []))
    print(json.dumps({k: v for k, v in metrics.items() if k != "loss"}, indent=2))
    print(f"wrote the tiny base to {args.out}; load it with FineLIP.from_pretrained({args.out!r})")
    return 0


def grid(args: argparse.Namespace) -> int:
    from .experiments import load_spec, run_grid

    action, path = ("run", args.spec) if args.spec not in ("status", "cancel") else (args.spec, args.target)
    if path is None or (action == "run" and args.target is not None):
        print("error: finelip grid <spec.yaml> | finelip grid status <spec.yaml> | finelip grid cancel <spec.yaml>",
              file=sys.stderr)
        return 2
    try:
        spec = load_spec(path, runs_dir=args.runs_dir)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if action != "run" or args.executor == "slurm":
        try:
            return _grid_on_slurm(spec, path, action, args)
        except (RuntimeError, ImportError) as error:  # no squeue here, no submitit installed
            print(f"finelip grid: error: {error}", file=sys.stderr)
            return 2
    print(f"grid {spec.name}: {len(spec.points)} point(s), notebook {spec.notebook}, results in {spec.runs_dir}")
    if args.dry_run:
        for name, parameters in spec.points.items():
            print(f"  {name}: {parameters}")
        return 0
    try:
        outcome = run_grid(spec, workers=args.workers, force=args.force, kernel_name=args.kernel)
    except KeyboardInterrupt:  # the second Ctrl-C: leave the running points (their kernels exit with us)
        print("interrupted again: abandoning the running point(s); rerun the grid to redo them", file=sys.stderr)
        sys.stderr.flush()
        os._exit(130)  # without waiting for the worker threads, which the interpreter would join
    print(f"ran {len(outcome.ran)}, skipped {len(outcome.skipped)} (already recorded), failed {len(outcome.failed)}"
          + (f", left to another runner {len(outcome.busy)}" if outcome.busy else "")
          + (f", not started {len(outcome.not_started)} (interrupted; rerun to resume)" if outcome.interrupted else ""))
    for name, error in outcome.failed.items():
        print(f"  FAILED {name}: {error.splitlines()[-1] if error else ''}\n    notebook: {spec.runs_dir / (name + '.ipynb')}")
    if outcome.interrupted:
        return 130
    print(grid_report(spec.runs_dir))
    return 0 if outcome.ok else 1


def grid_report(results) -> str:
    """What a finished grid found (``finelip report``'s table), or why there is no table yet."""
    from .experiments.report import report

    try:
        return report(results)
    except (ValueError, KeyError) as error:  # one setting only, no preset default, no metric yet
        return f"(no effects table: {error}; see finelip report {results} --baseline KEY=VALUE)"


def report_command(args: argparse.Namespace) -> int:
    """``finelip report``: the effects table of a results folder or a shipped record set."""
    from .experiments.analysis import load_records, records_folder
    from .experiments.report import diff_runs, effects, export_effects, report

    frame = load_records(args.results)  # read once: the table, its notes and the exports come from it
    if args.diff:
        found = diff_runs(frame, *args.diff, metrics=[args.metric] if args.metric_only else None)
        print(f"{args.diff[0]} (a) against {args.diff[1]} (b)")
        print(found["settings"].to_string(index=False) if len(found["settings"]) else "no setting differs (seeds only)")
        print(found["metrics"].to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        print(found["curves_note"])
        return 0
    baseline = parse_settings(args.baseline) if args.baseline else None
    table = effects(frame, args.metric, baseline=baseline, correction="holm" if args.holm else None)
    print(report(frame, fmt=args.format, table=table))
    if args.export:
        folder = Path(args.export) if args.export != "results" else records_folder(args.results) / "exports"
        for path in export_effects(table, folder):
            print(f"wrote {path}")
    return 0


def _grid_on_slurm(spec, path: str, action: str, args: argparse.Namespace) -> int:
    """``finelip grid --executor slurm``, ``grid status``, ``grid cancel`` (ablation/slurm.py)."""
    from .experiments.slurm import cancel_grid, point_states, status_table, submit_grid, wait_for

    if action == "status":
        print(status_table(point_states(spec)))
        return 0
    if action == "cancel":
        jobs = cancel_grid(spec)
        print(f"cancelled {len(jobs)} job(s): {' '.join(jobs)}" if jobs else "nothing queued or running")
        return 0
    options = slurm_options(args, spec.slurm)
    print(f"grid {spec.name}: {len(spec.points)} point(s) on SLURM ({options}), results in {spec.runs_dir}")
    if args.dry_run:
        for name, row in point_states(spec, reconcile=False).items():
            print(f"  {name}: {row['state']}")
        return 0
    submitted = submit_grid(spec, options, force=args.force, kernel_name=args.kernel)
    first = str(next(iter(submitted.values())).job_id).split("_")[0] if submitted else None
    print(f"submitted {len(submitted)} point(s)" + (f" as job array {first}" if submitted else
                                                      " (every point is ok, queued or running)"))
    if not args.wait:
        print(f"follow it with: finelip grid status {path}")
        return 0
    following = [n for n, row in point_states(spec, reconcile=False).items() if row["state"] in ("queued", "running")]
    states = wait_for(spec, sorted(set(following) | set(submitted)))
    failed = {n: r for n, r in states.items() if r["state"] == "failed"}
    print(f"ran {len(states) - len(failed)} ok, failed {len(failed)}")
    for name, row in failed.items():
        print(f"  FAILED {name}: job {row['job_id']}, log {row['log']}")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    import dataclasses

    from .model.config import SCORE_MODES as MODES
    from .data.captions import PROBES as PROBE_NAMES
    from .experiments.pretrain import PRETRAIN
    from .experiments.presets import RUN_PRESETS
    from .train import TrainConfig

    from ._version import __version__

    parser = argparse.ArgumentParser(prog="finelip", description="finelip-kit command line")
    parser.add_argument("--version", action="version", version=f"finelip-kit {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    options = "\n".join(f"  train.{f.name} = {f.default if f.default is not dataclasses.MISSING else f.default_factory()!r}"
                         for f in dataclasses.fields(TrainConfig))
    trainer = commands.add_parser(
        "train",
        help="train a model (CPU or GPU; torchrun for several processes)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="--set key=value takes any setting of the vocabulary (finelip_kit.settings): model.<config key>\n"
        "(model.atrm_k=8, model.text.context_length=77), train.<option> (below), data.<key> (data.source, data.root,\n"
        "splits, and the synthetic data's fields: data.differing_objects=3), eval.<key> (eval.size=2000,\n"
        "eval.rerank_k=20, eval.reference=false). A bare option name works when it is unambiguous (steps=50).\n"
        "The run folder is --out; its record goes beside it (<out>.json).\n\n"
        "training options (defaults; a preset changes some):\n" + options,
    )
    trainer.add_argument("--preset", choices=sorted(RUN_PRESETS), default="synthetic-tiny", help="default: synthetic-tiny")
    trainer.add_argument("--out", required=True, help="run folder: metrics.jsonl, checkpoints/, model/ (the record: <out>.json)")
    trainer.add_argument("--data", help="synthetic, a known dataset name (with --data-root) or a path; default: the preset's")
    trainer.add_argument("--data-root", help="where a known dataset lies")
    trainer.add_argument("--train-split", default="train", help="default: train")
    trainer.add_argument("--eval-data", help="evaluation data (default: --data)")
    trainer.add_argument("--eval-split", help="evaluation split of real data (none: no periodic evaluation)")
    trainer.add_argument("--eval-size", type=number_in(0, None, int), default=400,
                         help="synthetic validation pairs evaluated at the end (default: 400; test pairs: --set eval.size=N)")
    trainer.add_argument("--model", help=f"the model to start from; default: the preset's. {MODEL_HELP}")
    trainer.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override options (see below)")
    slurm_arguments(trainer, "task", "local: train here (torchrun / srun start the processes); slurm: submit the run "
                                     "as a SLURM job through submitit, one task per GPU")
    trainer.add_argument("--nodes", type=number_in(1, None, int), help="slurm: nodes")
    trainer.add_argument("--tasks-per-node", type=number_in(1, None, int), help="slurm: processes per node (one per GPU)")
    trainer.set_defaults(run=train)
    pretrainer = commands.add_parser("pretrain-tiny", help="rebuild the packaged tiny-synthetic-clip base model",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    pretrainer.add_argument("--out", required=True, help="output folder (config.json, model.safetensors, metrics.json)")
    pretrainer.add_argument("--steps", type=int, default=PRETRAIN["steps"])
    pretrainer.add_argument("--seed", type=int, default=PRETRAIN["seed"])
    pretrainer.add_argument("--set", nargs="*", metavar="KEY=VALUE",
                            help="more settings, e.g. model.embed_dim=4 or data.grid_size=8 (a base for another regime)")
    pretrainer.set_defaults(run=pretrain_tiny)
    evaluator = commands.add_parser("eval", help="retrieval evaluation (R@1/5/10 both ways, every scoring mode)",
                                    formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    evaluator.add_argument("--model", required=True, help=MODEL_HELP)
    evaluator.add_argument("--data", required=True, help="synthetic, a known dataset name (with --data-root) or a path")
    evaluator.add_argument("--data-root", help="where a known dataset lies")
    evaluator.add_argument("--split", help="a split of --data; default: the dataset's paper protocol (see docs/data.md's "
                                           "protocol table); --data may also be a protocol name (flickr30k-all, ...)")
    evaluator.add_argument("--size", type=number_in(1, None, int), help="only the first N pairs (default: all; synthetic: "
                           "the split's 2,000)")
    evaluator.add_argument("--modes", nargs="+", choices=MODES,
                           help="default: every mode the model has (fine and fused need CLIM)")
    evaluator.add_argument("--fuse-weight", type=number_in(0.0, 1.0),
                           help="the fused score's CLIM weight, in [0, 1] (default: the model's own fuse_weight)")
    evaluator.add_argument("--rerank-k", type=number_in(1, None, int), help="two-stage scoring: global top-k, then CLIM (k >= 1)")
    evaluator.add_argument("--batch-size", type=number_in(1, None, int), default=64)
    evaluator.add_argument("--on-error", choices=["raise", "skip"], default="raise")
    evaluator.add_argument("--probes", nargs="+", choices=PROBE_NAMES, metavar="PROBE",
                           help=f"sentence-level robustness probes on the captions, any of {', '.join(PROBE_NAMES)} "
                                f"(docs/debias.md)")
    evaluator.add_argument("--probe-position", type=number_in(0, None, int), default=2,
                           help="move_first: the position the first sentence goes to (0-based)")
    evaluator.add_argument("--probe-fillers", type=number_in(0, None, int), default=2,
                           help="prepend_filler: how many 'This is a photo.' sentences")
    evaluator.add_argument("--prefix-k", type=number_in(1, None, int), default=5,
                           help="first_k: k = 1 ... K sentences, and HiMo@K")
    evaluator.add_argument("--out", help="results.json")
    evaluator.set_defaults(run=evaluate)
    reporter = commands.add_parser(
        "report", help="what mattered in a grid: each setting's paired delta against a baseline over seeds, with its CI",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    reporter.add_argument("results", help="a results folder (a grid's ablations/runs/<grid>) or a shipped record set "
                                          "(calibration, capacity-map, capacity-levers, official-switches, debias, demo)")
    reporter.add_argument("--metric", default="global/group/t2i", help="the metric column (finelip show lists them)")
    reporter.add_argument("--baseline", nargs="*", metavar="KEY=VALUE",
                          help="the setting to compare with (default: the records' preset default), e.g. atrm_k=16")
    reporter.add_argument("--format", choices=("text", "md", "latex"), default="text")
    reporter.add_argument("--holm", action="store_true", help="mark by Holm-adjusted p (many settings, one baseline)")
    reporter.add_argument("--diff", nargs=2, metavar=("RUN_A", "RUN_B"),
                          help="two runs by name: the settings that differ and every metric's delta (b - a)")
    reporter.add_argument("--metric-only", action="store_true", help="--diff: only --metric")
    reporter.add_argument("--export", nargs="?", const="results", metavar="FOLDER",
                          help="also write the table as .csv, .md and .tex (default folder: <results>/exports)")
    reporter.set_defaults(run=report_command)
    shower = commands.add_parser("show", help="a run's record as a short table (every scoring mode, the reference)")
    shower.add_argument("record", help="a record: <results_dir>/<run>.json")
    shower.set_defaults(run=show)
    sharder = commands.add_parser("shard", help="write pairs as webdataset .tar shards (stream them with --data wds:<dir>/)",
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sharder.add_argument("pairs", help="synthetic, a known dataset name (with --data-root), a protocol or a path: "
                                       "anything load_pairs reads")
    sharder.add_argument("--out", required=True, help="folder for 000000.tar, 000001.tar, ... and shards.json")
    sharder.add_argument("--shard-size", type=number_in(1, None, int), default=10_000, help="samples per shard")
    sharder.add_argument("--data-root", help="where a known dataset lies")
    sharder.add_argument("--split", help="a split of the pairs (default: the dataset's; synthetic: train)")
    sharder.add_argument("--size", type=number_in(1, None, int), help="only the first N pairs (synthetic: N drawn; "
                                                                      "default: the split's size)")
    sharder.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                         help="bad records: raise, or skip and count them")
    sharder.add_argument("--overwrite", action="store_true", help="replace shards already in --out")
    sharder.set_defaults(run=shard)
    copier = commands.add_parser("notebooks", help="copy the notebooks and grid specs into a folder of your own "
                                                  "(for a pip-installed kit)")
    copier.add_argument("--to", required=True, help="the folder (created; it becomes a project root)")
    copier.add_argument("--overwrite", action="store_true", help="replace files already there")
    copier.set_defaults(run=notebooks)
    exporter = commands.add_parser(
        "export",
        help="convert weights: to a transformers text encoder, a transformers CLIPModel, or a finelip-kit checkpoint",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    exporter.add_argument("--from", dest="source", required=True, help=MODEL_HELP)
    exporter.add_argument("--to", required=True, help="output directory")
    exporter.add_argument("--what", choices=("text", "clip", "finelip", "open_clip"), default="text",
                          help="text: CLIPTextModelWithProjection + tokenizer (for diffusers); clip: CLIPModel; "
                               "finelip: the kit's own checkpoint; open_clip: open_clip_config.json + weights "
                               "(open_clip.create_model_and_transforms('local-dir:<to>'))")
    exporter.set_defaults(run=export)
    gridder = commands.add_parser("grid", help="run an ablation grid: each point executes ablations/grid.ipynb with papermill",
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    gridder.add_argument("spec", help="grid spec (YAML): fixed parameters, points, product; or `status` / `cancel` "
                                      "followed by the spec (SLURM)")
    gridder.add_argument("target", nargs="?", help=argparse.SUPPRESS)
    slurm_arguments(gridder, "point", "local: points run here; slurm: one job-array task per pending point (submitit)")
    gridder.add_argument("--array-parallelism", type=number_in(1, None, int), help="slurm: points running at once")
    gridder.add_argument("--workers", type=number_in(1, None, int), default=1, help="points run at once")
    gridder.add_argument("--force", action="store_true", help="re-run points that already have a successful record")
    gridder.add_argument("--kernel", help="Jupyter kernel name (default: the notebook's, python3)")
    gridder.add_argument("--runs-dir", help="default: ablations/runs next to the spec's folder; points go to <runs-dir>/<grid>/")
    gridder.add_argument("--dry-run", action="store_true", help="list the points and exit")
    gridder.set_defaults(run=grid)
    return parser


MODEL_HELP = ("a model: preset:<name> or a bare preset name (tiny, clip-b16, clip-l14: fresh weights), a packaged name "
              "(tiny-synthetic-clip), a finelip-kit checkpoint dir, a transformers CLIP dir, hf:<hub id> or org/name, "
              "or an OpenAI / Long-CLIP .pt")


def slurm_arguments(parser: argparse.ArgumentParser, unit: str, executor_help: str) -> None:
    """The SLURM options ``finelip grid`` and ``finelip train`` share (``cluster.SlurmOptions``)."""
    parser.add_argument("--executor", choices=("local", "slurm"), default="local", help=executor_help)
    parser.add_argument("--wait", action="store_true", help="slurm: follow the job(s) until they end")
    parser.add_argument("--partition", help="slurm: partition (default: the cluster's)")
    parser.add_argument("--time", type=number_in(1, None, int), help=f"slurm: time limit of one {unit}, minutes")
    parser.add_argument("--cpus-per-task", type=number_in(1, None, int), help=f"slurm: CPUs per {unit}")
    parser.add_argument("--gpus-per-task", type=number_in(0, None, int), help=f"slurm: GPUs per {unit}")
    parser.add_argument("--mem-gb", type=number_in(0, None, float), help="slurm: memory per node, GB")
    parser.add_argument("--sbatch", nargs="*", metavar="KEY=VALUE", help="slurm: other sbatch options (qos=high account=lab)")


def slurm_options(args: argparse.Namespace, block: dict | None = None):
    """``SlurmOptions`` from the command line over a spec's ``slurm:`` block."""
    from .experiments.cluster import SlurmOptions

    given = {"partition": args.partition, "time_min": args.time, "cpus_per_task": args.cpus_per_task,
             "gpus_per_task": args.gpus_per_task, "mem_gb": args.mem_gb, "sbatch": dict(parse_settings(args.sbatch or []))}
    for name in ("array_parallelism", "nodes", "tasks_per_node"):
        if hasattr(args, name):
            given[name] = getattr(args, name)
    return SlurmOptions.merged(block, given)


def number_in(low: float, high: float | None, kind: type = float):
    """An argparse type: a ``kind`` number in ``[low, high]`` (no upper bound when None)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")
        if not (math.isfinite(value) and value >= low and (high is None or value <= high)):
            bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value
    return parse


def main(argv: list[str] | None = None) -> int:
    from .train.preemption import PREEMPTED_EXIT, Preempted

    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except Preempted as stopped:  # SIGTERM / SIGUSR1 / SIGUSR2: the step finished, its checkpoint saved
        where = f"; checkpoint {stopped.checkpoint}" if stopped.checkpoint else ""
        then = (f"SLURM job {stopped.requeued} is requeued and resumes from it when it starts again" if stopped.requeued
                else "resume: run the same command with --set train.resume=latest")
        print(f"finelip {args.command}: stopped by {stopped.signal_name} after step {stopped.step}{where}; {then} "
              f"(exit status {PREEMPTED_EXIT})", file=sys.stderr)
        return PREEMPTED_EXIT
    except BAD_INPUT as error:
        # Bad input (a setting, a path, a file, a missing package): the message says what and what to do;
        # no traceback (FINELIP_DEBUG=1 shows it).
        if os.environ.get("FINELIP_DEBUG") == "1":
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        if isinstance(error, ImportError) and error.name:
            message = f"{error} (the package is not installed: pip install {error.name}, or pip install 'finelip-kit[all]')"
        print(f"finelip {args.command}: error: {message}", file=sys.stderr)
        return 2


# What the kit raises for bad input: a value or setting (ValueError, SettingError, the archive and record
# refusals), a name (KeyError), a file or folder (OSError: missing, existing, a directory, no space, too
# large, CheckpointWriteError), a refused pickle, a package not installed. Anything else is a bug: traceback.
BAD_INPUT = (ValueError, KeyError, OSError, pickle.UnpicklingError, ImportError)


if __name__ == "__main__":
    sys.exit(main())
