"""The tables of docs/debias.md, from the DeBias-CLIP grid's records (issue 32):

    finelip grid ablations/grids/debias.yaml --runs-dir runs/debias
    python benchmarks/debias_report.py --records runs/debias          # or --records debias (the shipped set)

Each arm (the ``synthetic-tiny`` recipe, ``loss = global+fine``; its global-only twin, ``loss =
global``) is compared with itself without augmentation. One row per augmentation setting; per column
the mean ± sample std over seeds, then Δ, the mean paired difference from the arm's unaugmented row
(``report.effects``: seeds paired). Marks: ``†`` where |Δ| > 2σ, σ the larger of the two rows' seed
std (the issue's criterion), ``*`` where the paired 95 % interval of Δ excludes 0. Choices are read
on the 2000 validation pairs (``val/...``), results on the 2000 test pairs. Every score here is the
global one (cosine of the two embeddings), the score a probe or HiMo@K is defined on; the recipe's
CLIM and fused scores are in the records (``fine/...``, ``fused/...``).
"""

from __future__ import annotations

import argparse
import math

from finelip_kit.ablation import as_text, load_records
from finelip_kit.experiments.report import effects

AUGMENTATIONS = {  # a row's name from its caption settings
    (): "none",
    ("train.caption_drop_summary",): "summary removed",
    ("train.caption_keep_sentences",): "half the sentences",
    ("train.caption_pad_sentences",): "0-3 filler sentences first",
    ("train.caption_drop_summary", "train.caption_keep_sentences", "train.caption_pad_sentences",
     "train.caption_shuffle_sentences"): "all (+ shuffled)",
}
ARMS = {"global+fine": "recipe (ATRM + CLIM, InfoNCE + triplet)", "global": "global-only (InfoNCE)"}
# (column title, metric)
RESULTS = (("within-group t2i", "global/group/t2i"), ("t2i R@1", "global/t2i/R@1"), ("i2t R@1", "global/i2t/R@1"),
           ("short-caption t2i R@1", "alt/global/t2i/R@1"))
PROBES = (("first sentence at 3rd", "probe/move_first/global/t2i/R@1"), ("first dropped", "probe/drop_first/global/t2i/R@1"),
          ("2 fillers first", "probe/prepend_filler/global/t2i/R@1"), ("shuffled", "probe/shuffle/global/t2i/R@1"),
          ("HiMo@5", "prefix/global/himo@5"))
PREFIX = tuple((f"k = {k}", f"prefix/k{k}/global/t2i/R@1") for k in range(1, 6))
OFF = {"train.caption_drop_summary": 0.0, "train.caption_keep_sentences": None, "train.caption_pad_sentences": 0,
       "train.caption_shuffle_sentences": False}  # each augmentation's "off" value


def augmentation(row) -> str:
    """A record's augmentation setting by name (the records carry every setting, defaults included)."""
    on = tuple(key for key, off in OFF.items() if _on(row[key], off))
    return AUGMENTATIONS.get(on, ", ".join(on))


def _on(value, off) -> bool:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return off is not None
    return value != off


def arm_frame(frame, loss: str):
    """One arm's ok records, with an ``augmentation`` column naming each one's setting."""
    part = frame[(frame["status"] == "ok") & (frame["loss"] == loss)].copy()
    part["augmentation"] = [augmentation(row) for _, row in part.iterrows()]
    return part


def table(part, columns) -> str:
    """Markdown: a row per augmentation, per column mean ± std and Δ with its marks (HiMo@K to two
    decimals, percentages to one)."""
    baseline = part[part["augmentation"] == "none"]
    order = [name for name in AUGMENTATIONS.values() if name in set(part["augmentation"])]
    deltas = {}
    for title, metric in columns:
        if metric not in part or part[metric].isna().all():
            continue
        deltas[metric] = {}
        if len(order) > 1:  # the unaugmented setting is the arm's one with a single text input
            found = effects(part, metric, baseline={"train.caption_inputs": "augmented"})
            names = found.attrs["settings"]
            named = dict(zip(as_text(part[names]).itertuples(index=False, name=None), part["augmentation"]))
            deltas[metric] = {named[tuple(row[f"={n}"] for n in names)]: row for _, row in found.iterrows()}
    shown = [(t, m) for t, m in columns if m in deltas]
    lines = ["| augmentation | " + " | ".join(t for t, _ in shown) + " | seeds | s / point |",
             "|---|" + "---|" * (len(shown) + 2)]
    for name in order:
        rows = part[part["augmentation"] == name]
        cells = []
        for _, metric in shown:
            decimals = 2 if "himo" in metric else 1
            values, base = rows[metric].dropna(), baseline[metric].dropna()
            spread = f" ± {values.std():.{decimals}f}" if len(values) > 1 else " (one seed)"
            cell = f"{values.mean():.{decimals}f}{spread}"
            if name != "none":
                effect = deltas[metric][name]
                sigma = max(values.std(), base.std())
                marks = ("†" if abs(effect["delta"]) > 2 * sigma else "") + effect["mark"]
                cell += f" ({effect['delta']:+.{decimals}f}{marks})"
            cells.append(cell)
        seeds = ", ".join(str(int(s)) for s in sorted(rows["seed"]))
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {seeds} | {rows['total_s'].median():.0f} |")
    return "\n".join(lines) + "\n"


def chosen_on_validation(part, metric: str = "global/group/t2i") -> str:
    """The augmentation with the best mean validation score, and its test result against none."""
    means = part.groupby("augmentation")[f"val/{metric}"].mean()
    best = str(means.idxmax())
    test = part.groupby("augmentation")[metric].mean()
    return (f"chosen on validation ({metric}): **{best}** (val {means[best]:.1f} vs none {means['none']:.1f}); "
            f"on test {test[best]:.1f} vs none {test['none']:.1f}")


def report_text(frame) -> str:
    """Every table of docs/debias.md for the records in ``frame``, one section per regime and arm."""
    out = []
    failed = frame[frame["status"] != "ok"]
    if len(failed):
        out.append(f"{len(failed)} failed point(s): {sorted(failed['run_name'])}\n")
    regimes = frame["data.summary_objects"].fillna(0).astype(int) if "data.summary_objects" in frame else None
    for objects in sorted(set(regimes)) if regimes is not None else [0]:
        regime = frame[regimes == objects] if regimes is not None else frame
        for loss, label in ARMS.items():
            part = arm_frame(regime, loss)
            if part.empty:
                continue
            out.append(f"### {label}, {REGIMES.get(objects, f'summary naming {objects} objects')}\n")
            out.append("Results (test, percent; in brackets Δ against no augmentation, paired over seeds):\n")
            out.append(table(part, RESULTS))
            out.append("Probes (test, t2i R@1 with the captions changed; HiMo@5 in [-1, 1]):\n")
            out.append(table(part, PROBES))
            out.append("First k sentences only (test, t2i R@1):\n")
            out.append(table(part, PREFIX))
            out.append(chosen_on_validation(part) + "\n")
    return "\n".join(out)


REGIMES = {0: "the default scenes (summary: 'A grey canvas with nine shapes on a 4 by 4 grid.')",
           3: "the shortcut regime (data.summary_objects = 3: the summary names three shared objects)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="debias", help="a results folder, or the shipped set 'debias'")
    args = parser.parse_args()
    frame = load_records(args.records)
    if frame.attrs.get("skipped"):
        print(f"skipped {len(frame.attrs['skipped'])} file(s) that are not records: {frame.attrs['skipped_reasons']}")
    print(report_text(frame), end="")


if __name__ == "__main__":
    main()
