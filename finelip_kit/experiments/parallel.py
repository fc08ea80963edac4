"""Every axis at once: one row per setting with its metrics reduced over seeds, parallel
coordinates over the varied settings and the chosen metrics (plotly's ``parcoords`` in JupyterLab,
a matplotlib image for nbviewer and GitHub), and the brushing that filters the table.

    table = setting_table(load_records("calibration"), ["global/group/t2i", "fine/group/t2i"])
    axes = axes_of(table, ["atrm_k", "pe_mode", "global/group/t2i"], log=["atrm_k"])
    keep = brushed(axes, {"atrm_k": [(0.5, 1.3)]})   # a range in the axis's drawn units (log10 here)
    shown(table[keep])                                # only the settings that still differ

Pure functions (plotly and matplotlib are imported only by ``parcoords_trace`` / ``plot_parallel``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .analysis import _sort_key, as_text, setting_names
from .report import _label, default_setting, setting_columns

REDUCERS = ("mean", "min", "max", "last")
MAX_TICKS = 12  # a numeric setting with more values than this is labelled by plotly's own ticks


def setting_table(frame, metrics: Sequence[str], reduce: str = "mean"):
    """One row per setting (records equal in every varied setting but the seed): ``setting`` (what
    differs from the preset default where the records have one, else every varied setting),
    ``n`` (its seeds), ``seeds``, each of ``metrics`` reduced over its seeds by ``reduce`` — ``mean``,
    ``min``, ``max``, or ``last`` (the value of the setting's newest record, by the record's
    ``created`` time; records without one count in seed order, said in ``attrs["note"]``) — then
    one column per setting the records hold (the varied ones first), as the tables print them.
    Metric columns come before the setting columns, so that a wide table shows its numbers first."""
    import pandas as pd

    if reduce not in REDUCERS:
        raise ValueError(f"reduce must be one of {REDUCERS}, got {reduce!r}")
    ok = frame[frame["status"] == "ok"] if "status" in frame else frame
    missing = [m for m in metrics if m not in ok]
    if missing:
        raise KeyError(f"metric(s) {missing} are not in the records; choose from "
                       f"{[c for c in ok.columns if '/' in c and not c.startswith('reference/')]}")
    varied = setting_columns(ok)
    constant = [c for c in setting_names(ok) if c not in varied and c != "seed"]
    default = default_setting(ok)
    reference = tuple(default[n] for n in varied) if default else None
    timed = "created" in ok and ok["created"].notna().all()
    order = ["created", "seed"] if timed else (["seed"] if "seed" in ok else [])
    ok = ok.sort_values(order, kind="stable") if order else ok
    keys = as_text(ok[varied]) if varied else pd.DataFrame({"_all": ["all"] * len(ok)}, index=ok.index)
    grouped = ok.assign(**{f"_key{i}": keys[c] for i, c in enumerate(keys.columns)}).groupby(
        [f"_key{i}" for i in range(keys.shape[1])], sort=False)
    table = grouped[list(metrics)].agg(reduce) if metrics else grouped.size().to_frame("n")[[]]
    index = table.index.to_frame(index=False).astype(str)
    table = table.reset_index(drop=True)
    table.insert(0, "setting", [_label(varied, tuple(key), reference) for key in index.values] if varied else "all")
    seeds = grouped["seed"].agg(lambda s: ", ".join(str(int(v)) for v in sorted(s))) if "seed" in ok else None
    table.insert(1, "n", grouped.size().to_numpy())
    table.insert(2, "seeds", seeds.to_numpy() if seeds is not None else "")
    columns = {name: index.iloc[:, i].to_numpy() for i, name in enumerate(varied)}
    if constant:
        first = as_text(grouped[constant].first())
        columns.update({name: first[name].to_numpy() for name in constant})
    table = pd.concat([table, pd.DataFrame(columns, index=table.index)], axis=1)
    if metrics:  # best first on the first metric
        table = table.sort_values(metrics[0], ascending=False, kind="stable", na_position="last").reset_index(drop=True)
    table.attrs.update(settings=varied, constant=constant, metrics=list(metrics), reduce=reduce,
                       note="" if reduce != "last" or timed else
                       "'last' in seed order: some records carry no creation time (written before the kit recorded it)")
    return table


def shown(table, only_differing: bool = True):
    """``table`` as the explorer shows it: with ``only_differing``, the setting columns that take
    one value in these rows are left out (after brushing, what still differs)."""
    if not only_differing:
        return table
    names = table.attrs.get("settings", []) + table.attrs.get("constant", [])
    same = [c for c in names if c in table and table[c].nunique() <= 1]
    out = table.drop(columns=same)
    out.attrs = {**table.attrs, "hidden": same}
    return out


@dataclass(frozen=True)
class Axis:
    """One parallel axis: ``values`` as drawn (a category's code, the log10 of a log axis) per
    table row, and where its ticks sit with their labels (empty: the plot's own ticks)."""

    name: str
    kind: str  # "numeric", "log" or "category"
    values: tuple[float, ...]
    ticks: tuple[float, ...] = ()
    labels: tuple[str, ...] = ()

    @property
    def span(self) -> tuple[float, float]:
        finite = [v for v in self.values if math.isfinite(v)]
        low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
        if self.kind == "category" or low == high:
            return low - 0.5, high + 0.5
        return low, high


def _number(text: str) -> float | None:
    key = _sort_key(text)
    return key[1] if key[0] == 0 else None


def _short(value: float) -> str:
    return f"{value:g}"


def axes_of(table, names: Sequence[str], log: Sequence[str] = ()) -> list[Axis]:
    """The parallel axes of ``table``'s columns ``names``: a column whose every value is a number is
    a numeric axis (a setting's values as its ticks when it has at most ``MAX_TICKS``); any other is a
    category axis (its values in sorted order, coded 0, 1, ...). ``log`` names numeric axes drawn
    as log10 with ticks in their own units; a log axis with a value ≤ 0 is refused, naming it."""
    unknown = [n for n in list(names) + list(log) if n not in table]
    if unknown:
        raise KeyError(f"column(s) {unknown} are not in the table; columns: {list(table.columns)}")
    settings = set(table.attrs.get("settings", [])) | set(table.attrs.get("constant", []))
    axes = []
    for name in names:
        column = table[name]
        text = as_text(column) if name in settings else None
        numbers = [_number(t) for t in text] if text is not None else [float(v) for v in column]
        if any(v is None for v in numbers):
            if name in log:
                raise ValueError(f"axis {name!r} is not numeric (values {sorted(set(text), key=_sort_key)}); "
                                 f"only a numeric axis can be drawn on a log scale")
            levels = sorted(set(text), key=_sort_key)
            code = {level: float(i) for i, level in enumerate(levels)}
            axes.append(Axis(name, "category", tuple(code[t] for t in text), tuple(code.values()), tuple(levels)))
            continue
        distinct = sorted({v for v in numbers if math.isfinite(v)})
        if name in log:
            bad = [v for v in distinct if v <= 0]
            if bad:
                raise ValueError(f"axis {name!r} has value {bad[0]:g} ≤ 0: it cannot be drawn on a log scale; "
                                 f"take it out of the log axes")
            values = tuple(math.log10(v) if math.isfinite(v) else math.nan for v in numbers)
            if name in settings and len(distinct) <= MAX_TICKS:
                ticks = distinct
            else:
                ticks = [10.0 ** e for e in range(math.floor(math.log10(distinct[0])),
                                                   math.ceil(math.log10(distinct[-1])) + 1)] if distinct else []
            axes.append(Axis(name, "log", values, tuple(math.log10(t) for t in ticks), tuple(_short(t) for t in ticks)))
        elif name in settings and len(distinct) <= MAX_TICKS:
            axes.append(Axis(name, "numeric", tuple(numbers), tuple(distinct), tuple(_short(t) for t in distinct)))
        else:
            axes.append(Axis(name, "numeric", tuple(numbers)))
    return axes


def _ranges(constraint) -> list[tuple[float, float]]:
    """A plotly ``constraintrange`` — None, ``[lo, hi]`` or ``[[lo, hi], ...]`` — as a list of ranges."""
    if constraint is None or len(constraint) == 0:
        return []
    if isinstance(constraint[0], (int, float)):
        constraint = [constraint]
    return [(float(min(r)), float(max(r))) for r in constraint]


def brushed(axes: Sequence[Axis], ranges: Mapping[str, object]) -> list[bool]:
    """Which rows pass the brushes: ``ranges`` maps an axis name to its brushed range(s) in the
    axis's drawn units (plotly's ``constraintrange``: ``[lo, hi]``, a list of them, or None). A row
    passes when, on every brushed axis, its value lies in one of the ranges (ends included)."""
    by_name = {axis.name: axis for axis in axes}
    unknown = [n for n in ranges if n not in by_name]
    if unknown:
        raise KeyError(f"brushed axis {unknown} is not an axis of the plot; axes: {list(by_name)}")
    keep = [True] * (len(axes[0].values) if axes else 0)
    for name, constraint in ranges.items():
        spans = _ranges(constraint)
        if not spans:
            continue
        for i, value in enumerate(by_name[name].values):
            keep[i] = keep[i] and any(low <= value <= high for low, high in spans)
    return keep


def constraint_ranges(dimensions) -> dict[str, object]:
    """The brushes of a plotly parcoords trace's ``dimensions``: {label: constraintrange} for the
    brushed ones."""
    return {d.label: d.constraintrange for d in dimensions if d.constraintrange}


def parcoords_dimensions(axes: Sequence[Axis]) -> list[dict]:
    """plotly ``parcoords`` dimensions for ``axes`` (a log axis is labelled ``name (log)``: brushes
    on it are in log10 units, ``brushed`` reads them as such)."""
    out = []
    for axis in axes:
        dimension = {"label": axis.name, "values": list(axis.values), "range": list(axis.span)}
        if axis.ticks:
            dimension.update(tickvals=list(axis.ticks), ticktext=list(axis.labels))
        out.append(dimension)
    return out


def parcoords_trace(axes: Sequence[Axis], color: str | None = None):
    """A ``plotly.graph_objects.Parcoords`` of ``axes``, lines coloured by the axis ``color``."""
    import plotly.graph_objects as go

    line = {}
    if color is not None:
        values = next(a for a in axes if a.name == color).values
        line = {"color": list(values), "colorscale": "Viridis", "showscale": True, "colorbar": {"title": {"text": color}}}
    return go.Parcoords(dimensions=parcoords_dimensions(axes), line=line)


def plot_parallel(axes: Sequence[Axis], color: str | None = None, ax=None, keep: Sequence[bool] | None = None):
    """The parallel coordinates as a matplotlib figure (the static twin of the interactive plot, for
    nbviewer, GitHub and exports): one polyline per row over the axes scaled to their spans,
    coloured by ``color``; rows outside ``keep`` (a brush) drawn faint. Returns the figure."""
    import matplotlib.pyplot as plt
    from matplotlib import cm, colors

    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(axes)), 4))
    rows = len(axes[0].values) if axes else 0
    keep = list(keep) if keep is not None else [True] * rows
    scaled = []
    for axis in axes:
        low, high = axis.span
        scaled.append([(v - low) / (high - low) if math.isfinite(v) else math.nan for v in axis.values])
    shade = None
    if color is not None:
        values = next(a for a in axes if a.name == color).values
        finite = [v for v in values if math.isfinite(v)] or [0.0]
        norm = colors.Normalize(min(finite), max(finite))
        shade = [cm.viridis(norm(v)) for v in values]
        ax.figure.colorbar(cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label=color, pad=0.08)
    xs = list(range(len(axes)))
    for i in range(rows):
        ys = [s[i] for s in scaled]
        ax.plot(xs, ys, color=(shade[i] if shade else "#1a73e8") if keep[i] else "#dadce0",
                alpha=0.9 if keep[i] else 0.5, linewidth=1.2 if keep[i] else 0.8, zorder=2 if keep[i] else 1)
    for x, axis in zip(xs, axes):
        ax.axvline(x, color="#5f6368", linewidth=0.8, zorder=0)
        low, high = axis.span
        if axis.ticks:
            for tick, label in zip(axis.ticks, axis.labels):
                ax.annotate(label[:14], (x, (tick - low) / (high - low)), fontsize=7, xytext=(3, 0),
                            textcoords="offset points", va="center")
        else:
            for value in (low, high):
                ax.annotate(_short(round(value, 3)), (x, (value - low) / (high - low)), fontsize=7, xytext=(3, 0),
                            textcoords="offset points", va="center")
    ax.set_xticks(xs, [a.name + (" (log)" if a.kind == "log" else "") for a in axes], rotation=20, ha="right", fontsize=8)
    ax.set_yticks([])
    ax.set_xlim(-0.2, len(axes) - 0.6 if len(axes) > 1 else 0.8)
    ax.set_ylim(-0.05, 1.05)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    return ax.figure
