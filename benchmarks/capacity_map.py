"""Tables and heatmaps of the capacity map (issue 18, step 3) from its grid's records:

    finelip grid ablations/grids/capacity_map.yaml --runs-dir runs/capacity/map
    python benchmarks/capacity_map.py --records docs/capacity/map --out docs/capacity/map.png

A cell is one regime: the global width d (``model.embed_dim``) x the scene load (``data.grid_size``,
objects per scene). In each cell the recipe (``loss = global+fine``) meets global-only (``loss =
global``), 3 seeds each. The recipe's score (global, fine or fused) is chosen per cell on validation
within-group accuracy and reported on test; global-only is scored with its global vector.
Δ = recipe − global-only (means over seeds); σ = the larger of the two arms' seed std; a cell is
marked when |Δ| > 2σ (either way). Seconds per point: the median over the cell's points. Binding groups (``eval.binding``: two late objects swap attributes) are scored
with the same chosen mode; they have no validation split of their own.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from finelip_kit.ablation import load_records

MODES = ("global", "fine", "fused")
RECIPE, GLOBAL_ONLY = "global+fine", "global"


def load_label(grid_size: int) -> str:
    return {4: "7–10 objects, 4×4", 8: "14–20 objects, 8×8"}.get(int(grid_size), f"{int(grid_size)}×{int(grid_size)} grid")


def cells(frame) -> list[dict]:
    """One summary per (width, load): per arm and metric, mean and std over seeds; the recipe's
    mode chosen on validation; Δ and σ on test for plain and binding groups."""
    frame = frame[frame["status"] == "ok"]
    out = []
    for (width, grid), part in frame.groupby(["model.embed_dim", "data.grid_size"]):
        arms = {loss: rows for loss, rows in part.groupby("loss")}
        if RECIPE not in arms or GLOBAL_ONLY not in arms:
            continue
        recipe, single = arms[RECIPE], arms[GLOBAL_ONLY]
        val = {m: recipe[f"val/{m}/group/t2i"].mean() for m in MODES if f"val/{m}/group/t2i" in recipe}
        mode = max(val, key=val.get)
        cell = {"width": int(width), "grid": int(grid), "mode": mode, "seeds": (len(recipe), len(single)),
                "seconds": float(part["total_s"].median()) if "total_s" in part else float("nan")}
        for arm, rows in (("recipe", recipe), ("global-only", single)):
            for key in [f"{p}{m}/group/t2i" for p in ("", "val/", "binding/") for m in MODES] + \
                       ["global/t2i/R@1", f"{mode}/t2i/R@1"]:
                if key in rows:
                    cell[(arm, key)] = (float(rows[key].mean()), float(rows[key].std(ddof=1)))
        for probe in ("", "binding/"):
            r_mean, r_std = cell[("recipe", f"{probe}{mode}/group/t2i")]
            g_mean, g_std = cell[("global-only", f"{probe}global/group/t2i")]
            cell[f"{probe}delta"] = r_mean - g_mean
            cell[f"{probe}sigma"] = max(r_std, g_std)
        out.append(cell)
    return out


def pm(value: tuple[float, float]) -> str:
    return f"{value[0]:.1f} ± {value[1]:.1f}"


def markdown(summary: list[dict]) -> str:
    lines = ["| d | scenes | recipe mode (on val) | val within-group: recipe · global-only | test within-group: recipe · global-only | Δ (2σ) | binding: recipe · global-only | Δ binding (2σ) | R@1 t2i: recipe · global-only | s / point |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for c in summary:
        m = c["mode"]

        def mark(probe: str) -> str:
            delta, sigma = c[f"{probe}delta"], c[f"{probe}sigma"]
            return f"{delta:+.1f} ({2 * sigma:.1f}){' **' if abs(delta) > 2 * sigma else ''}"

        lines.append(
            f"| {c['width']} | {load_label(c['grid'])} | {m} | {pm(c[('recipe', f'val/{m}/group/t2i')])} · "
            f"{pm(c[('global-only', 'val/global/group/t2i')])} | {pm(c[('recipe', f'{m}/group/t2i')])} · "
            f"{pm(c[('global-only', 'global/group/t2i')])} | {mark('')} | {pm(c[('recipe', f'binding/{m}/group/t2i')])} · "
            f"{pm(c[('global-only', 'binding/global/group/t2i')])} | {mark('binding/')} | "
            f"{pm(c[('recipe', f'{m}/t2i/R@1')])} · {pm(c[('global-only', 'global/t2i/R@1')])} | {c['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def modes_table(summary: list[dict]) -> str:
    """Every score mode of each arm on test, plain and binding (mean ± std over seeds)."""
    lines = ["| d | scenes | arm | global · fine · fused (plain) | global · fine · fused (binding) |", "|---|---|---|---|---|"]
    for c in summary:
        for arm in ("recipe", "global-only"):
            plain = " · ".join(pm(c[(arm, f"{m}/group/t2i")]) for m in MODES if (arm, f"{m}/group/t2i") in c)
            binding = " · ".join(pm(c[(arm, f"binding/{m}/group/t2i")]) for m in MODES if (arm, f"binding/{m}/group/t2i") in c)
            lines.append(f"| {c['width']} | {load_label(c['grid'])} | {arm} | {plain} | {binding} |")
    return "\n".join(lines) + "\n"


def heatmaps(summary: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widths = sorted({c["width"] for c in summary})
    grids = sorted({c["grid"] for c in summary})
    fig, axes = plt.subplots(1, 2, figsize=(10, 1.2 + 1.1 * len(widths)), constrained_layout=True)
    bound = max(abs(c[f"{p}delta"]) for c in summary for p in ("", "binding/")) or 1.0
    for ax, probe, title in ((axes[0], "", "plain groups (one object redrawn)"),
                             (axes[1], "binding/", "binding groups (attributes swapped)")):
        grid = np.full((len(widths), len(grids)), np.nan)
        for c in summary:
            grid[widths.index(c["width"]), grids.index(c["grid"])] = c[f"{probe}delta"]
        image = ax.imshow(grid, cmap="RdBu", vmin=-bound, vmax=bound)
        for c in summary:
            delta, sigma = c[f"{probe}delta"], c[f"{probe}sigma"]
            marked = abs(delta) > 2 * sigma
            ax.text(grids.index(c["grid"]), widths.index(c["width"]),
                    f"{delta:+.1f}{'*' if marked else ''}\n2σ {2 * sigma:.1f}\n({c['mode']})", ha="center", va="center",
                    fontsize=9, fontweight="bold" if marked else "normal",
                    color="white" if abs(delta) > 0.6 * bound else "black")
        ax.set_xticks(range(len(grids)), [load_label(g).replace(", ", "\n") for g in grids])
        ax.set_yticks(range(len(widths)), [f"d = {w}" for w in widths])
        ax.set_title(f"Δ within-group t2i, {title}", fontsize=9)
    fig.colorbar(image, ax=axes, label="recipe − global-only (points, test)")
    fig.suptitle("When does FineLIP's fine path pay? (* : |Δ| > 2σ, 3 seeds)", fontsize=10)
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="docs/capacity/map")
    parser.add_argument("--out", help="the heatmap PNG")
    args = parser.parse_args()
    summary = cells(load_records(args.records))
    if not summary:
        raise SystemExit(f"no complete cell (both arms) in {args.records}")
    print(markdown(summary))
    print(modes_table(summary))
    if args.out:
        heatmaps(summary, Path(args.out))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
