"""Issue 18, step 1: why does the fine path not use its capacity? Tables for docs/capacity_map.md.

    # slot diversity, within-group margins and the loss's gradients, for trained models
    python benchmarks/diagnose_capacity.py models "recipe=ablations/results/default/model" "global-only=runs/g/model"
    # the budget curve: the recipe and global-only trained to --steps, every --every steps scored
    python benchmarks/diagnose_capacity.py budget --steps 1200 --every 150 --seed 0 --out runs/budget

Validation pairs only (nothing here chooses a setting on the test split).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from finelip_kit import load_model
from finelip_kit.data import Collate, PairDataset, SyntheticScenes, clip_transform
from finelip_kit.diagnose import group_margins, loss_diagnostics, slot_statistics
from finelip_kit.evaluate import evaluate_retrieval
from finelip_kit.recipe import RunSpec, run
from finelip_kit.tokenizer import get_tokenizer
from finelip_kit.train import latest_checkpoint

ARMS = {"recipe": {}, "global-only": {"loss": "global"}}


def fixed_batch(model, size: int = 64, seed: int = 0):
    data = SyntheticScenes(split="train", size=size)
    dataset = PairDataset(data, clip_transform(model.config.vision))
    collate = Collate(get_tokenizer(context_length=model.context_length), model.context_length)
    return collate([dataset[i] for i in range(size)])


def diagnose(model, val_pairs: int) -> dict[str, float]:
    out = {}
    if model.image_atrm is not None:
        out.update(slot_statistics(model, SyntheticScenes(split="val", size=min(256, val_pairs))))
    out.update(group_margins(model, SyntheticScenes(split="val", size=val_pairs)))
    if model.config.use_clim:
        probe = model if model.config.loss == "global+fine" else load_model_as_recipe(model)
        out.update(loss_diagnostics(probe, fixed_batch(probe)))
    return out


def load_model_as_recipe(model):
    """The same weights under the recipe's loss (global + fine), so a global-only model's fine
    gradients and hinges can be measured too."""
    from finelip_kit import FineLIP

    twin = FineLIP(model.config.replace(loss="global+fine"))
    twin.load_state_dict(model.state_dict())
    return twin


def table(rows: dict[str, dict[str, float]], keys: list[str]) -> str:
    lines = ["| | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 1)]
    for name, values in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{values[k]:.3g}" if k in values else "–" for k in keys) + " |")
    return "\n".join(lines)


KEYS = ["image/entropy", "image/token_cosine", "image/slot_cosine", "image/effective_slots", "text/entropy",
        "text/token_cosine", "text/slot_cosine", "text/effective_slots", "image/slots_on_objects", "image/slots_on_objects_chance", "image/objects_found"]
MARGINS = ["global/margin_in_spread", "fine/margin_in_spread", "fused/margin_in_spread", "global/correct",
           "fine/correct", "fused/correct"]
LOSS = ["fine/tower_share", "fine/grad_towers", "fine/grad_new", "global/grad_towers", "global/grad_new",
        "hinge/i2t_active", "hinge/t2i_active"]


def models(args) -> None:
    rows = {}
    for item in args.models:
        label, _, source = item.partition("=")
        torch.manual_seed(0)
        rows[label] = diagnose(load_model(source), args.val_pairs)
        print(label, json.dumps({k: round(v, 4) for k, v in rows[label].items()}), flush=True)
    for keys in (KEYS, MARGINS, LOSS):
        print(table(rows, keys) + "\n")


def budget(args) -> None:
    out = Path(args.out)
    rows = {}
    for arm, settings in ARMS.items():
        name = f"{arm}_s{args.seed}"
        if not latest_checkpoint(out / name):
            run(RunSpec(settings={**settings, "train.steps": args.steps, "train.seed": args.seed,
                                  "train.save_every": args.every, "train.keep_last": 1000, "eval.size": 0,
                                  "eval.reference": False},
                        name=name, results_dir=str(out), keep_model=False))
        for checkpoint in sorted((out / name / "checkpoints").glob("step_*")):
            step = int(checkpoint.name.split("_")[1])
            model = load_model(str(checkpoint))
            metrics = evaluate_retrieval(model, SyntheticScenes(split="val", size=args.val_pairs)).metrics
            values = {k: metrics[k] for k in ("global/group/t2i", "fine/group/t2i", "fused/group/t2i", "global/t2i/R@1")}
            values.update(diagnose(model, min(args.val_pairs, 400)) if args.full else {})
            rows[f"{arm} @ {step}"] = values
            print(f"{arm} @ {step}", json.dumps({k: round(v, 3) for k, v in values.items()}), flush=True)
    keys = ["global/group/t2i", "fine/group/t2i", "fused/group/t2i", "global/t2i/R@1"]
    print(table(rows, keys + (["fine/tower_share", "hinge/i2t_active", "hinge/t2i_active", "image/effective_slots"]
                              if args.full else [])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    m = commands.add_parser("models")
    m.add_argument("models", nargs="+", metavar="LABEL=MODEL")
    m.add_argument("--val-pairs", type=int, default=1000)
    b = commands.add_parser("budget")
    b.add_argument("--steps", type=int, default=1200)
    b.add_argument("--every", type=int, default=150)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--val-pairs", type=int, default=1000)
    b.add_argument("--full", action="store_true", help="also the slot, margin and loss diagnostics at each checkpoint")
    b.add_argument("--out", default="runs/budget")
    args = parser.parse_args()
    {"models": models, "budget": budget}[args.command](args)


if __name__ == "__main__":
    main()
