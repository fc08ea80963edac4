"""``finelip`` command line.

    finelip train --preset synthetic-tiny --out runs/x [--data synthetic|<name>|<path>] [--set key=value ...]
    finelip pretrain-tiny --out <dir>   (rebuilds the packaged tiny-synthetic-clip)
    finelip eval --model <dir> --data <name|path> [--data-root <dir>] [--modes ...] [--rerank-k 50] --out results.json
    finelip export --from <dir|.pt|.safetensors> --to <dir> [--what text|clip|finelip]

``torchrun --nproc_per_node=N -m finelip_kit.cli train ...`` trains on N processes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def load_any(source: str):
    """A FineLIP model from a kit checkpoint dir, a transformers CLIP dir / hub id, or an OpenAI-format file."""
    from .model import FineLIP
    from .pretrained import CONFIG_FILE, WEIGHTS_FILE

    path = Path(source)
    if path.is_dir() and (path / WEIGHTS_FILE).is_file() and '"finelip_kit_version"' in (path / CONFIG_FILE).read_text():
        return FineLIP.from_pretrained(path)
    if path.is_file():
        return FineLIP.from_openai_checkpoint(path)
    return FineLIP.from_clip(source)


def export(args: argparse.Namespace) -> int:
    from .pretrained import export_clip, export_text_encoder, save_pretrained

    model = load_any(args.source)
    writer = {"text": export_text_encoder, "clip": export_clip, "finelip": save_pretrained}[args.what]
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
        return text


def split_settings(settings: list[str]) -> tuple[dict, dict, dict]:
    """``key=value`` pairs → (training options, ``model.*`` overrides, ``data.*`` synthetic-data overrides)."""
    train, model, data = {}, {}, {}
    for setting in settings:
        if "=" not in setting:
            raise SystemExit(f"--set expects key=value, got {setting!r}")
        key, value = setting.split("=", 1)
        value = parse_value(value)
        if key.startswith("model."):
            model[key[len("model."):]] = value
        elif key.startswith("data."):
            data[key[len("data."):]] = value
        else:
            train[key] = value
    return train, model, data


def train(args: argparse.Namespace) -> int:
    from .data import SyntheticConfig, SyntheticScenes, load_pairs
    from .train import TRAIN_PRESETS, Trainer, build_model, train_config

    train_options, model_options, data_options = split_settings(args.set or [])
    preset = TRAIN_PRESETS[args.preset]
    config = train_config(args.preset, out_dir=args.out, **train_options)
    data = args.data or preset["data"]
    if data == "synthetic":
        synthetic = SyntheticConfig(**data_options)
        train_data = SyntheticScenes(synthetic, split="train")
        eval_data = SyntheticScenes(synthetic, split="val", size=args.eval_size)
    else:
        if data_options:
            raise SystemExit(f"data.* settings {sorted(data_options)} apply to the synthetic data only")
        train_data = load_pairs(data, split=args.train_split, root=args.data_root)
        eval_data = load_pairs(args.eval_data or data, split=args.eval_split, root=args.data_root) if args.eval_split else None
    import torch

    torch.manual_seed(config.seed)  # the fresh modules' initialisation is part of the run
    spec = args.model or preset["model"]
    overrides = {**(preset.get("model_overrides", {}) if spec == preset["model"] else {}), **model_options}
    model = build_model(spec, **overrides)
    history = Trainer(model, train_data, config, eval_data=eval_data).fit()
    print(f"trained {config.steps or config.epochs} {'steps' if config.steps else 'epochs'}; run folder: {args.out}")
    final = next((r for r in reversed(history) if r.get("final")), None)
    if final:
        print(summary_table(final))
        if spec == preset["model"] and preset["model"] == "tiny-synthetic-clip":
            from .assets import asset_metrics

            base = asset_metrics("tiny-synthetic-clip")
            print(f"reference, the packaged base at 77 tokens: within-group {base['long/group/t2i']:.1f}% "
                  f"(chance {100 / 4:.0f}%), R@1 {base['long/t2i/R@1']:.1f}% (validation, long captions)")
    return 0


def summary_table(record: dict) -> str:
    """A compact text table of a final evaluation record (``eval/<mode>/<metric>`` keys)."""
    modes = list(dict.fromkeys(key.split("/")[1] for key in record if key.startswith("eval/")))
    columns = ("i2t/R@1", "t2i/R@1", "i2t/R@5", "t2i/R@5", "group/i2t", "group/t2i")
    lines = [f"{'mode':<8}" + "".join(f"{c:>11}" for c in columns)]
    for mode in modes:
        lines.append(f"{mode:<8}" + "".join(f"{record.get(f'eval/{mode}/{c}', float('nan')):>11.1f}" for c in columns))
    return "\n".join(lines)


def evaluate(args: argparse.Namespace) -> int:
    import json

    from .data import SyntheticScenes, load_pairs
    from .evaluate import evaluate_retrieval, paper_table

    model = load_any(args.model)
    if args.data == "synthetic":
        data = SyntheticScenes(split=args.split if args.split in ("train", "val", "test") else "test", size=args.size)
    else:
        data = load_pairs(args.data, split=args.split, root=args.data_root, on_error=args.on_error)
        if data.report.skipped:
            print(data.report)
    result = evaluate_retrieval(model, data, modes=args.modes, fuse_weight=args.fuse_weight, rerank_k=args.rerank_k,
                                batch_size=args.batch_size, progress=True)
    print(result.table.to_string())
    name = args.data if args.data == "synthetic" else args.data.rsplit("/", 1)[-1]
    print(paper_table({name: result}, mode=args.modes[0]).to_string())
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"model": args.model, "data": args.data, "split": args.split,
                                              "metrics": result.metrics}, indent=2))
        print(f"wrote {args.out}")
    return 0


def pretrain_tiny(args: argparse.Namespace) -> int:
    import json

    from .pretrain import pretrain_tiny as run

    metrics = run(args.out, steps=args.steps, seed=args.seed)
    print(json.dumps({k: v for k, v in metrics.items() if k != "loss"}, indent=2))
    print(f"wrote the tiny base to {args.out}; load it with FineLIP.from_pretrained({args.out!r})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    import dataclasses

    from .pretrain import PRETRAIN

    from .train import TRAIN_PRESETS, TrainConfig

    parser = argparse.ArgumentParser(prog="finelip", description="finelip-kit command line")
    commands = parser.add_subparsers(dest="command", required=True)
    options = "\n".join(f"  {f.name} = {f.default if f.default is not dataclasses.MISSING else f.default_factory()!r}"
                         for f in dataclasses.fields(TrainConfig))
    trainer = commands.add_parser(
        "train",
        help="train a model (CPU or GPU; torchrun for several processes)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="training options for --set key=value (defaults; a preset changes some):\n" + options
        + "\n\nmodel.<key>=value overrides the model config (model.atrm_k=8, model.text.context_length=77);"
        "\ndata.<key>=value the synthetic data config (data.grid_size=4).",
    )
    trainer.add_argument("--preset", choices=sorted(TRAIN_PRESETS), default="synthetic-tiny", help="default: synthetic-tiny")
    trainer.add_argument("--out", required=True, help="run folder: metrics.jsonl, checkpoints/")
    trainer.add_argument("--data", help="synthetic, a known dataset name (with --data-root) or a path; default: the preset's")
    trainer.add_argument("--data-root", help="where a known dataset lies")
    trainer.add_argument("--train-split", default="train", help="default: train")
    trainer.add_argument("--eval-data", help="evaluation data (default: --data)")
    trainer.add_argument("--eval-split", help="evaluation split of real data (none: no periodic evaluation)")
    trainer.add_argument("--eval-size", type=int, default=400, help="synthetic validation pairs (default: 400)")
    trainer.add_argument("--model", help="model preset, clip:<hub id or dir>, or a checkpoint dir; default: the preset's")
    trainer.add_argument("--set", nargs="*", metavar="KEY=VALUE", help="override options (see below)")
    trainer.set_defaults(run=train)
    pretrainer = commands.add_parser("pretrain-tiny", help="rebuild the packaged tiny-synthetic-clip base model",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    pretrainer.add_argument("--out", required=True, help="output folder (config.json, model.safetensors, metrics.json)")
    pretrainer.add_argument("--steps", type=int, default=PRETRAIN["steps"])
    pretrainer.add_argument("--seed", type=int, default=PRETRAIN["seed"])
    pretrainer.set_defaults(run=pretrain_tiny)
    evaluator = commands.add_parser("eval", help="retrieval evaluation (R@1/5/10 both ways, every scoring mode)",
                                    formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    evaluator.add_argument("--model", required=True, help="finelip-kit checkpoint dir, transformers CLIP dir or hub id, or .pt")
    evaluator.add_argument("--data", required=True, help="synthetic, a known dataset name (with --data-root) or a path")
    evaluator.add_argument("--data-root", help="where a known dataset lies")
    evaluator.add_argument("--split", default="test")
    evaluator.add_argument("--size", type=int, default=2000, help="synthetic test pairs")
    evaluator.add_argument("--modes", nargs="+", default=["global", "fine", "fused"], choices=["global", "fine", "fused"])
    evaluator.add_argument("--fuse-weight", type=float, default=0.2)
    evaluator.add_argument("--rerank-k", type=int, help="two-stage scoring: global top-k, then CLIM")
    evaluator.add_argument("--batch-size", type=int, default=64)
    evaluator.add_argument("--on-error", choices=["raise", "skip"], default="raise")
    evaluator.add_argument("--out", help="results.json")
    evaluator.set_defaults(run=evaluate)
    exporter = commands.add_parser(
        "export",
        help="convert weights: to a transformers text encoder, a transformers CLIPModel, or a finelip-kit checkpoint",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    exporter.add_argument("--from", dest="source", required=True,
                          help="finelip-kit checkpoint dir, transformers CLIP dir or hub id, or OpenAI/Long-CLIP .pt")
    exporter.add_argument("--to", required=True, help="output directory")
    exporter.add_argument("--what", choices=("text", "clip", "finelip"), default="text",
                          help="text: CLIPTextModelWithProjection + tokenizer (for diffusers); clip: CLIPModel; "
                               "finelip: the kit's own checkpoint")
    exporter.set_defaults(run=export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
