"""Curves for docs/synthetic_benchmark.md, from the calibration records (and, for the length
probe, from trained models):

    python benchmarks/plot_calibration.py --records docs/calibration \
        --model "recipe (make demo)=ablations/results/default/model" --out docs/calibration/curves.png

1. within-group accuracy against ATRM K (global, CLIM and fused scores; mean ± std over seeds);
2. within-group accuracy against the caption length kept (Long-CLIP's probe): the packaged
   77-token base and each ``--model`` (validation pairs);
3. the InfoNCE term during training, for every run whose record kept its history (seed 0).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from calibrate_synthetic import AXES, record_path  # noqa: E402

LENGTHS = (10, 20, 40, 60, 77, 90, 120, 160, 248)


def seed_records(out: Path, axis: str, name: str) -> list[dict]:
    setting = AXES[axis][name]
    paths = (record_path(out, axis, name, setting, seed) for seed in range(10))
    return [json.loads(p.read_text()) for p in paths if p.is_file()]


def k_curve(ax, out: Path) -> None:
    for mode, style in (("global", "o-"), ("fine", "s--"), ("fused", "^:")):
        ks, means, stds = [], [], []
        for name in AXES["k"]:
            values = [r[f"{mode}/group/t2i"] for r in seed_records(out, "k", name)]
            if values:
                ks.append(int(name))
                means.append(statistics.mean(values))
                stds.append(statistics.stdev(values) if len(values) > 1 else 0.0)
        ax.errorbar(ks, means, yerr=stds, fmt=style, capsize=3, label=mode if mode != "fine" else "fine (CLIM)")
    ax.set(xlabel="ATRM K (refined tokens)", ylabel="within-group T2I accuracy, test (%)", title="ATRM K")
    ax.set_xticks([int(k) for k in AXES["k"]])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def length_curve(ax, models: dict[str, str], pairs: int) -> None:
    from finelip_kit import FineLIP
    from finelip_kit.data import SyntheticScenes
    from finelip_kit.evaluate import effective_length_curve

    data = SyntheticScenes(split="val", size=pairs)
    for label, source in {"tiny-synthetic-clip (77-token base)": "tiny-synthetic-clip", **models}.items():
        curve = effective_length_curve(FineLIP.from_pretrained(source), data, lengths=LENGTHS)
        ax.plot(curve.index, curve["group/t2i"], "o-", label=label)
        print(f"{label}: " + ", ".join(f"{n} {v:.1f}" for n, v in curve["group/t2i"].items()), flush=True)
    ax.axvline(75, color="grey", linestyle=":", linewidth=1)
    ax.text(76, 27, "details differ\nfrom token 75", fontsize=7, color="grey")
    ax.axhline(25, color="grey", linewidth=0.8)
    ax.set(xlabel="caption tokens kept", ylabel=f"within-group T2I accuracy, val {pairs} (%)", title="caption length")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def training_curves(ax, out: Path) -> None:
    for axis, settings in AXES.items():
        for name in settings:
            for record in seed_records(out, axis, name):
                if record["seed"] == 0 and record.get("history") and settings[name]:
                    steps = [h["step"] for h in record["history"] if "global" in h]
                    ax.plot(steps, [h["global"] for h in record["history"] if "global" in h], label=f"{axis}: {name}")
    ax.set(xlabel="step", ylabel="InfoNCE term", title="training (seed 0)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="docs/calibration")
    parser.add_argument("--model", action="append", default=[], metavar="LABEL=DIR", help="a trained model for the length probe")
    parser.add_argument("--pairs", type=int, default=1000, help="validation pairs for the length probe")
    parser.add_argument("--out", default="docs/calibration/curves.png")
    args = parser.parse_args()
    models = {}
    for item in args.model:
        label, sep, source = item.partition("=")
        if not sep or not Path(source).is_dir():
            raise SystemExit(f"--model expects LABEL=DIR with an existing model folder, got {item!r}")
        models[label] = source

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    out = Path(args.records)
    k_curve(axes[0], out)
    length_curve(axes[1], models, args.pairs)
    training_curves(axes[2], out)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
