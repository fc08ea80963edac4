"""Calibrate the embedded synthetic benchmark: train settings x seeds, report mean ± std.

    python benchmarks/calibrate_synthetic.py --axis context --seeds 0 1 2 --out docs/calibration

Each run is the ``synthetic-tiny`` preset (the packaged 77-token base, fine-tuned on long
captions) with one axis changed; models are chosen on nothing — the table reports the test
split (2000 pairs) for the final model of each run (without ATRM, fine and fused R@k are
two-stage over the global top 20; within-group accuracy is exact in every run). Records go to
``<out>/<setting>_s<seed>.json`` (runs already recorded are reused), the table to ``<out>/<axis>.md``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path

import torch

from finelip_kit.ablation import plain_mode_names
from finelip_kit.data import SyntheticConfig, SyntheticScenes
from finelip_kit.evaluate import evaluate_retrieval
from finelip_kit.pretrain import CaptionView
from finelip_kit.pretrained import load_model
from finelip_kit.train import TRAIN_PRESETS, Trainer, train_config

# Settings are overrides of the synthetic-tiny preset: model config keys, ``train.<key>`` for
# the training config, ``data.<key>`` for the scenes (SyntheticConfig; train, val and test
# alike). ``{}`` is the preset itself; its runs are shared by every axis.
AXES = {
    "context": {
        "248 (kps)": {},
        "77 (truncate)": {"text.context_length": 77, "text.stretch": "none"},
    },
    "stretch": {
        "kps": {},
        "linear": {"text.stretch": "linear"},
        "scratch": {"text.stretch": "scratch"},
    },
    "loss": {
        "global+fine": {},
        "global": {"loss": "global"},
        "fine": {"loss": "fine"},
    },
    "atrm": {
        "on": {},
        "off": {"use_atrm": False},
    },
    "negatives": {
        "sum": {},
        "hardest": {"negatives": "sum", "train.hardest_after_epochs": 0.064},  # hardest after 60 steps
    },
    # Levers for the full recipe: a lighter fine loss, or the fine loss ramped in (FineLIP ramps it over an epoch).
    "lever": {
        "global+fine": {},
        "fine_weight 0.25": {"fine_weight": 0.25},
        "fine ramp 150 steps": {"train.fine_ramp_epochs": 0.16},
    },
    "k": {f"{k}": ({} if k == 16 else {"atrm_k": k}) for k in (4, 8, 16, 24, 39)},
    # Batches of whole hard-negative groups: every caption meets its one-detail negatives in the batch.
    "batches": {
        "groups, recipe": {"train.group_batches": True},
        "groups, global-only": {"loss": "global", "train.group_batches": True},
        "random, recipe": {},
        "random, global-only": {"loss": "global"},
    },
    # Harder groups: three objects differ inside a group (all described late), not one.
    "scenes": {
        "3 differing, recipe": {"data.differing_objects": 3},
        "3 differing, global-only": {"loss": "global", "data.differing_objects": 3},
        "1 differing, recipe": {},
        "1 differing, global-only": {"loss": "global"},
    },
}
RERANK_K = 20
COLUMNS = ("global/t2i/R@1", "global/i2t/R@1", "short/t2i/R@1", "global/group/t2i", "fine/group/t2i", "fused/group/t2i",
           "val/global/group/t2i", "val/fused/group/t2i")


def run(setting: dict, seed: int, test_pairs: int) -> dict:
    preset = TRAIN_PRESETS["synthetic-tiny"]
    model_setting = {k: v for k, v in setting.items() if not k.startswith(("train.", "data."))}
    train_setting = {k[len("train."):]: v for k, v in setting.items() if k.startswith("train.")}
    scenes = SyntheticConfig(**{k[len("data."):]: v for k, v in setting.items() if k.startswith("data.")})
    torch.manual_seed(seed)
    model = load_model(preset["model"], **{**preset["model_overrides"], **model_setting})
    config = train_config("synthetic-tiny", out_dir=f"/tmp/calibration/{time.time_ns()}", seed=seed,
                          progress=False, **train_setting)
    started = time.perf_counter()
    history = Trainer(model, SyntheticScenes(scenes, split="train"), config).fit()
    seconds = time.perf_counter() - started
    # Validation (what a default is chosen on) and test (what is reported). Without ATRM, CLIM
    # over every local token is too slow for the full 2000 x 2000 matrix: fine and fused R@k
    # become two-stage (global top RERANK_K); within-group accuracy stays exact either way.
    rerank_k = RERANK_K if not model.config.use_atrm else None
    val = plain_mode_names(evaluate_retrieval(model, SyntheticScenes(scenes, split="val", size=test_pairs), rerank_k=rerank_k).metrics)
    test = SyntheticScenes(scenes, split="test", size=test_pairs)
    long = plain_mode_names(evaluate_retrieval(model, test, rerank_k=rerank_k).metrics)
    short = evaluate_retrieval(model, CaptionView(test, "alt_caption"), modes=("global",)).metrics
    return {**long, **{f"val/{k}": v for k, v in val.items()}, "rerank_k": rerank_k,
            "short/t2i/R@1": short["global/t2i/R@1"], "short/i2t/R@1": short["global/i2t/R@1"], "seconds": seconds,
            "history": [{k: h[k] for k in ("step", "loss", "global", "fine") if k in h} for h in history if "loss" in h]}


def record_path(out: Path, axis: str, name: str, setting: dict, seed: int) -> Path:
    """Where a run's record lives. A run is its overrides and seed: a record of the same run made
    for another axis is reused (the preset's own runs are shared by every axis)."""
    for path in sorted(out.glob(f"*_s{seed}.json")):
        record = json.loads(path.read_text())
        if record.get("overrides") == setting and record.get("seed") == seed:
            return path
    stem = "default" if not setting else f"{axis}_" + re.sub(r"[^A-Za-z0-9.]+", "-", name).strip("-")
    return out / f"{stem}_s{seed}.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--axis", choices=sorted(AXES), required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--test-pairs", type=int, default=2000)
    parser.add_argument("--out", default="docs/calibration")
    parser.add_argument("--report-only", action="store_true", help="tabulate the records there are; run nothing")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = []
    settings = AXES[args.axis]
    records: dict[str, list[dict]] = {name: [] for name in settings}
    # Seed-major: every setting gets its first seed before any gets its second.
    for seed in args.seeds:
        for name, setting in settings.items():
            path = record_path(out, args.axis, name, setting, seed)
            if path.is_file():
                records[name].append(json.loads(path.read_text()))
                continue
            if args.report_only:
                continue
            record = {"axis": args.axis, "setting": name, "overrides": setting, "seed": seed, **run(setting, seed, args.test_pairs)}
            path.write_text(json.dumps(record, indent=2))
            records[name].append(record)
            print(f"{name} seed {seed}: " + ", ".join(f"{c} {record[c]:.1f}" for c in COLUMNS if c in record), flush=True)
    for name, runs in records.items():
        if not runs:
            continue
        cells = []
        for column in COLUMNS:
            values = [r[column] for r in runs if column in r]
            if not values:
                cells.append("–")
                continue
            if len(values) == 1:
                cells.append(f"{values[0]:.1f}")  # one seed: no spread to report
                continue
            cells.append(f"{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}")
        table.append((name, cells, ", ".join(str(r["seed"]) for r in runs), statistics.mean(r["seconds"] for r in runs)))
    lines = [f"| {args.axis} | " + " | ".join(COLUMNS) + " | seeds | s / run |", "|" + "---|" * (len(COLUMNS) + 3)]
    for name, cells, n, seconds in table:
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {n} | {seconds:.0f} |")
    (out / f"{args.axis}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
