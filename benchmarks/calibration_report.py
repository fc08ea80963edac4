"""Tables and curves for docs/synthetic_benchmark.md, from the calibration grid's records
(``finelip grid ablations/grids/calibration.yaml``; the published records are in docs/calibration):

    python benchmarks/calibration_report.py --records docs/calibration --tables docs/calibration \
        --model "recipe (make demo)=ablations/results/default/model" --out docs/calibration/curves.png

1. one markdown table per axis (``<tables>/<axis>.md``): mean ± sample std over seeds of each
   column, the seeds, and seconds per run;
2. within-group accuracy against ATRM K (global, CLIM and fused scores; mean ± std over seeds);
3. within-group accuracy against the caption length kept (Long-CLIP's probe): the packaged
   77-token base and each ``--model`` (validation pairs);
4. the InfoNCE term during training, for every seed-0 run whose record kept its history.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from finelip_kit.ablation import ablation_table, along, as_text, load_records
from finelip_kit.records import read_record

LENGTHS = (10, 20, 40, 60, 77, 90, 120, 160, 248)
# An axis is the settings its rows vary (everything else at the grid's most common value).
AXES = {
    "context": ["context_length", "pe_mode"],
    "stretch": ["pe_mode"],
    "loss": ["loss"],
    "atrm": ["use_atrm", "rerank_k"],
    "negatives": ["hardest_after_steps", "train.hardest_after_epochs"],
    "lever": ["fine_weight", "train.fine_ramp_epochs"],
    "k": ["atrm_k"],
    "batches": ["group_batches", "loss"],
    "scenes": ["data.differing_objects", "loss"],
}
COLUMNS = ("global/t2i/R@1", "global/i2t/R@1", "alt/global/t2i/R@1", "global/group/t2i", "fine/group/t2i",
           "fused/group/t2i", "val/global/group/t2i", "val/fused/group/t2i")


def axis_table(frame, axis: str) -> str:
    """The markdown table of one axis: a row per setting, mean ± std over seeds per column."""
    names = [n for n in AXES[axis] if n in frame]
    rows = along(frame, *names)
    order = ablation_table(rows, "global/group/t2i", by=names)
    lines = [f"| {' · '.join(names)} | " + " | ".join(COLUMNS) + " | seeds | s / run |", "|" + "---|" * (len(COLUMNS) + 3)]
    for key in order.index:
        key = key if isinstance(key, tuple) else (key,)
        part = rows[(as_text(rows[names]) == list(key)).all(axis=1)]
        cells = []
        for column in COLUMNS:
            values = part[column].dropna() if column in part else []
            cells.append("–" if len(values) == 0 else f"{values.mean():.1f}" if len(values) == 1
                         else f"{values.mean():.1f} ± {values.std():.1f}")
        seeds = ", ".join(str(int(s)) for s in sorted(part["seed"]))
        lines.append(f"| {' · '.join(key)} | " + " | ".join(cells) + f" | {seeds} | {part['total_s'].mean():.0f} |")
    return "\n".join(lines) + "\n"


def k_curve(ax, frame) -> None:
    rows = along(frame, "atrm_k")
    for mode, style in (("global", "o-"), ("fine", "s--"), ("fused", "^:")):
        table = ablation_table(rows, f"{mode}/group/t2i", by=["atrm_k"])
        ks = sorted(table.index, key=float)
        ax.errorbar([int(k) for k in ks], table.loc[ks, "mean"], yerr=table.loc[ks, "std"], fmt=style, capsize=3,
                    label=mode if mode != "fine" else "fine (CLIM)")
    ax.set(xlabel="ATRM K (refined tokens)", ylabel="within-group T2I accuracy, test (%)", title="ATRM K")
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


def training_curves(ax, frame) -> None:
    varied = [c for c in frame.columns if c in {n for names in AXES.values() for n in names}]
    for _, row in frame[frame["seed"] == 0].iterrows():
        record = read_record(row["path"])
        history = [h for h in (record or {}).get("history", []) if h.get("global") is not None]
        if history:
            label = ", ".join(f"{c}={row[c]}" for c in varied if str(row[c]) != str(frame[c].mode().iloc[0])) or "preset"
            ax.plot([h["step"] for h in history], [h["global"] for h in history], label=label)
    ax.set(xlabel="step", ylabel="InfoNCE term", title="training (seed 0)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="docs/calibration")
    parser.add_argument("--tables", help="write <axis>.md here (default: print them)")
    parser.add_argument("--model", action="append", default=[], metavar="LABEL=DIR", help="a trained model for the length probe")
    parser.add_argument("--pairs", type=int, default=1000, help="validation pairs for the length probe")
    parser.add_argument("--out", help="the curves' PNG (default: no curves)")
    args = parser.parse_args()
    frame = load_records(args.records, status="ok")
    print(f"{len(frame)} records from {args.records} (skipped {len(frame.attrs['skipped'])} files that are not records)")
    for axis in AXES:
        table = axis_table(frame, axis)
        if args.tables:
            Path(args.tables, f"{axis}.md").write_text(table)
        print(f"\n{axis}\n{table}")
    if not args.out:
        return
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
    k_curve(axes[0], frame)
    length_curve(axes[1], models, args.pairs)
    training_curves(axes[2], frame)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
