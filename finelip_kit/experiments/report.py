"""What mattered in a record set: one row per setting (every setting but the seed), its paired
delta against a baseline over the seeds both share, with its confidence interval, sorted by
effect size; as a DataFrame, text, Markdown or LaTeX (booktabs), and exported under the results
folder. The explorer's default view and ``finelip report`` print the same table.

    table = effects(load_records("calibration"), "global/group/t2i")   # baseline: the preset's default
    print(format_effects(table, "latex"))
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from .analysis import _preset_settings, as_text, column, load_records, metric_columns, parameter_columns
from .settings import short_name
from .stats import LEVEL, compare, holm, summarize

FORMATS = ("text", "md", "latex")


def setting_columns(frame) -> list[str]:
    """The settings that vary in ``frame``, the seed left out: a group of rows equal in all of
    them is one setting, its rows are that setting's seeds."""
    return [c for c in parameter_columns(frame) if c != "seed"]


def _runs(frame, metric: str) -> list[tuple[tuple[str, ...], dict[int, float]]]:
    """(setting values as text, {seed: metric}) per setting, in the frame's order."""
    names = setting_columns(frame)
    keys = as_text(frame[names]).itertuples(index=False, name=None) if names else (() for _ in range(len(frame)))
    seeds = frame["seed"] if "seed" in frame else range(len(frame))
    out: dict[tuple[str, ...], dict[int, float]] = {}
    for key, seed, value in zip(keys, seeds, frame[metric]):
        runs = out.setdefault(tuple(key), {})
        seed = int(seed)
        if seed in runs:
            raise ValueError(f"two records of one setting have seed {seed} ({dict(zip(names, key))}): a grid point "
                             f"was run twice into one results folder; remove one record")
        runs[seed] = float(value)
    return list(out.items())


def default_setting(frame) -> dict[str, str] | None:
    """The setting equal to the records' preset in every varied column (the preset's default,
    e.g. the calibration's ``default``), or None when no record has it."""
    names = setting_columns(frame)
    presets = frame["preset"].dropna().unique() if "preset" in frame else []
    if len(presets) != 1:
        return None
    defaults = {short_name(k): v for k, v in _preset_settings(str(presets[0])).items()}
    if any(name not in defaults for name in names):
        return None
    import pandas as pd

    wanted = as_text(pd.Series([defaults[n] for n in names], index=names, dtype=object))
    keys = as_text(frame[names])
    return dict(wanted) if (keys == wanted).all(axis=1).any() else None


def effects(frame, metric: str = "global/group/t2i", baseline: dict[str, Any] | None = None,
            correction: str | None = None, level: float = LEVEL):
    """One row per setting of ``frame`` (its ``ok`` records): ``setting`` (what differs from the
    baseline), ``n`` seeds, ``mean``, ``std``, the mean's ``ci_low`` / ``ci_high``, and against the
    baseline ``delta``, ``delta_low``, ``delta_high``, ``p``, ``test`` (paired / welch / none,
    ``stats.compare``), ``mark`` (``*`` where the delta's interval excludes 0 — with
    ``correction="holm"``, where Holm's adjusted ``p_holm`` is below ``1 - level``) and ``note``.
    The baseline row comes first, the others by the size of their delta.

    ``baseline``: settings naming one setting of the frame (``{"atrm_k": 16}``; unnamed columns
    take the preset's default, else must be unambiguous); None: the preset's default."""
    import pandas as pd

    if metric not in frame:
        raise KeyError(f"metric {metric!r} is not in the records; choose one of {metric_columns(frame)}")
    if correction not in (None, "holm"):
        raise ValueError(f"correction must be None or 'holm', got {correction!r}")
    ok = frame[frame["status"] == "ok"] if "status" in frame else frame
    ok = ok[ok[metric].notna()]
    if ok.empty:
        raise ValueError(f"no successful record has {metric!r}")
    names = setting_columns(ok)
    runs = _runs(ok, metric)
    chosen = _baseline_key(ok, names, runs, baseline)
    base = dict(runs)[chosen]
    rows = []
    for key, values in runs:
        summary = summarize(list(values.values()), level)
        row = {"setting": _label(names, key, chosen), "n": summary.n, "mean": summary.mean, "std": summary.std,
               "ci_low": summary.low, "ci_high": summary.high}
        if key == chosen:
            row.update(delta=0.0, delta_low=None, delta_high=None, p=None, test="baseline", mark="", note="the baseline")
        else:
            d = compare(values, base, level)
            row.update(delta=d.delta, delta_low=d.low, delta_high=d.high, p=d.p, test=d.test,
                       mark="*" if d.significant else "", note=d.note)
        row.update({f"={n}": v for n, v in zip(names, key)})  # the full setting, for filters and diffs
        rows.append(row)
    table = pd.DataFrame(rows)
    if correction == "holm":
        table["p_holm"] = holm([None if p is None or (isinstance(p, float) and math.isnan(p)) else p for p in table["p"]])
        table["mark"] = ["*" if q is not None and not math.isnan(q) and q < 1 - level else "" for q in table["p_holm"]]
    order = sorted(range(len(table)), key=lambda i: (table["test"][i] != "baseline", -abs(table["delta"][i])))
    table = table.iloc[order].reset_index(drop=True)
    table.attrs.update(metric=metric, level=level, correction=correction, settings=names,
                       baseline=dict(zip(names, chosen)))
    return table


def _baseline_key(frame, names, runs, baseline) -> tuple[str, ...]:
    keys = [key for key, _ in runs]
    if baseline is None:
        default = default_setting(frame)
        if default is None:
            raise ValueError("these records have no preset default to compare with (no record equals its preset in "
                             f"every varied setting {names}); name a baseline, e.g. baseline={{{names[0]!r}: ...}}"
                             if names else "these records hold one setting only: there is nothing to compare")
        return tuple(default[n] for n in names)
    wanted = {column(frame, k): str(v) if not isinstance(v, float) or not v.is_integer() else str(int(v))
              for k, v in baseline.items()}
    matches = [key for key in keys if all(dict(zip(names, key)).get(k, "None") == v for k, v in wanted.items())]
    if len(matches) > 1:
        default = default_setting(frame)
        if default is not None:  # the unnamed columns at the preset's default
            matches = [key for key in matches if all(v == default[n] for n, v in zip(names, key) if n not in wanted)]
    if len(matches) != 1:
        shown = "; ".join(_label(names, key, None) for key in (matches or keys)[:3])
        raise ValueError(f"baseline {baseline} names {len(matches)} settings of the records, not one; settings: {shown}"
                         f"{' ...' if len(matches or keys) > 3 else ''} ({len(matches or keys)} in all); name more of "
                         f"the settings that vary: {names}")
    return matches[0]


def _label(names: list[str], key: tuple[str, ...], baseline: tuple[str, ...] | None) -> str:
    if baseline is None:
        return ", ".join(f"{n}={v}" for n, v in zip(names, key)) or "all"
    differing = [f"{n}={v}" for n, v, b in zip(names, key, baseline) if v != b]
    return ", ".join(differing) if differing else "baseline"


# ----------------------------------------------------------------------------- text, Markdown, LaTeX
def _number(value, decimals: int, sign: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+.{decimals}f}" if sign else f"{value:.{decimals}f}"


def _cells(table, decimals: int) -> tuple[list[str], list[list[str]]]:
    percent = round(100 * table.attrs.get("level", LEVEL))
    header = ["setting", "n", "mean", f"{percent}% CI", "delta", f"delta {percent}% CI", "p", "test", ""]
    body = []
    for _, row in table.iterrows():
        ci = "–" if row["ci_low"] is None or math.isnan(row["ci_low"]) else \
            f"[{_number(row['ci_low'], decimals)}, {_number(row['ci_high'], decimals)}]"
        dci = "–" if row["delta_low"] is None or math.isnan(row["delta_low"]) else \
            f"[{_number(row['delta_low'], decimals, True)}, {_number(row['delta_high'], decimals, True)}]"
        p = row.get("p_holm", row["p"])
        body.append([row["setting"], str(row["n"]), _number(row["mean"], decimals), ci,
                     _number(row["delta"], decimals, True) if row["test"] != "baseline" else "", dci,
                     "–" if p is None or (isinstance(p, float) and math.isnan(p)) else f"{p:.3g}",
                     row["test"], row["mark"]])
    return header, body


def effects_caption(table) -> str:
    """What ``effects``'s numbers are, in one line (the first line of every format)."""
    metric, level = table.attrs.get("metric", "metric"), round(100 * table.attrs.get("level", LEVEL))
    mark = (f"Holm-adjusted p; * where it is below {1 - level / 100:.2g}" if table.attrs.get("correction") == "holm"
            else "* where the delta's interval excludes 0")
    return (f"{metric}: mean over seeds with its {level}% CI (Student t); delta against the baseline, paired "
            f"over shared seeds; {mark}")


def format_effects(table, fmt: str = "text", decimals: int = 1) -> str:
    """``effects``'s table as ``text`` (aligned columns), ``md`` (a Markdown table) or ``latex``
    (a booktabs ``tabular``: the best mean in bold, ``$^{*}$`` where the delta is significant)."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    header, body = _cells(table, decimals)
    caption = effects_caption(table)
    if fmt == "text":
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        lines = [caption, "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
        lines += ["  ".join(c.ljust(w) if i == 0 or i == 7 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
                  for r in body]
        return "\n".join(lines)
    if fmt == "md":
        lines = [f"_{caption}_", "", "| " + " | ".join(header[:-1]) + " | |",
                 "|" + "|".join(["---", *["---:"] * 6, "---", ":-:"]) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    best = max(range(len(body)), key=lambda i: table["mean"][i])
    lines = [f"% {caption}", r"\begin{tabular}{lrrrrrrl}", r"\toprule",
             " & ".join(_latex(h) for h in header[:-1]) + r" \\", r"\midrule"]
    for i, r in enumerate(body):
        cells = [_latex(c) for c in r[:-1]]
        if i == best:
            cells[2] = rf"\textbf{{{cells[2]}}}"
        if r[-1]:
            cells[4] = rf"{cells[4]}$^{{*}}$"
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


def _latex(text: str) -> str:
    """``text`` safe in a LaTeX cell (backslash, ``_``, ``%``, ``&``, ``#`` escaped; an en dash as ``--``)."""
    return (text.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")
            .replace("#", r"\#").replace("–", "--"))


def export_effects(table, folder: str | Path, stem: str | None = None) -> list[Path]:
    """Write the table as ``<stem>.csv``, ``.md`` and ``.tex`` under ``folder`` (the results
    folder's ``exports/``); returns the paths."""
    from ..files import atomic_file
    from .paths import check_name

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = check_name(stem or f"effects_{table.attrs.get('metric', 'metric').replace('/', '_').replace('@', '')}")
    written = []
    for suffix, text in (("csv", table.to_csv(index=False)), ("md", format_effects(table, "md") + "\n"),
                         ("tex", format_effects(table, "latex") + "\n")):
        path = folder / f"{stem}.{suffix}"
        with atomic_file(path) as file:
            file.write(text)
        written.append(path)
    return written


def report(results, metric: str = "global/group/t2i", baseline: dict[str, Any] | None = None,
           fmt: str = "text", correction: str | None = None, table=None) -> str:
    """``finelip report``: the effects table of ``results`` (a results folder, a shipped record set,
    or a frame from ``load_records``), with the failed points and skipped files counted under it.
    ``table``: that frame's ``effects`` table when the caller has it already."""
    frame = results if hasattr(results, "attrs") else load_records(results)
    table = table if table is not None else effects(frame, metric, baseline=baseline, correction=correction)
    text = format_effects(table, fmt)
    failed = frame[frame["status"] != "ok"] if "status" in frame and not frame.empty else frame.iloc[0:0]
    notes = [f"{len(frame) - len(failed)} ok record(s) in {len(table)} setting(s)"]
    if len(failed):
        notes.append(f"{len(failed)} failed: " + "; ".join(f"{r.run_name} ({str(r.error).splitlines()[0][:80]})"
                                                        for r in failed.itertuples()))
    if frame.attrs.get("skipped"):
        notes.append(f"{len(frame.attrs['skipped'])} file(s) skipped (not records or malformed)")
    comment = {"text": "", "md": "", "latex": "% "}[fmt]
    return text + "\n" + "\n".join(comment + n for n in notes)


# ----------------------------------------------------------------------------- run against run, trade-offs
def _select(frame, which, what: str):
    """The rows of one run (``which``: its run name) or one setting (a mapping of settings)."""
    if isinstance(which, str):
        rows = frame[frame["run_name"] == which]
        if rows.empty:
            raise KeyError(f"{what} {which!r} is not a run of these records; runs: {sorted(frame['run_name'])[:8]} ...")
        return rows
    names = {column(frame, k): str(v) for k, v in dict(which).items()}
    keys = as_text(frame[list(names)])
    rows = frame[(keys == list(names.values())).all(axis=1)]
    if rows.empty:
        raise KeyError(f"{what} {dict(which)} matches no record")
    return rows


def diff_runs(frame, a, b, metrics: list[str] | None = None) -> dict[str, Any]:
    """Two runs (by run name) or two settings (mappings, their seeds averaged and paired): the
    settings that differ (``settings``: setting, a, b), every metric's delta b − a (``metrics``:
    metric, a, b, delta, and for two settings the paired interval and p), and each side's logged
    loss curve where the record or its run folder holds one (``curves``: {"a": [(step, loss)], ...};
    ``curves_note`` says where they came from, or why there are none)."""
    import pandas as pd

    ok = frame[frame["status"] == "ok"] if "status" in frame else frame
    rows = {"a": _select(ok, a, "a"), "b": _select(ok, b, "b")}
    names = setting_columns(ok)
    text = {side: as_text(part[names]).drop_duplicates() for side, part in rows.items()}
    settings = []
    for name in names:
        va, vb = sorted(set(text["a"][name])), sorted(set(text["b"][name]))
        if va != vb:
            settings.append({"setting": name, "a": ", ".join(va), "b": ", ".join(vb)})
    metrics = metrics or metric_columns(ok)
    table = []
    for metric in metrics:
        runs = {side: {int(s): float(v) for s, v in zip(part["seed"], part[metric]) if v == v}
                for side, part in rows.items()}
        if not runs["a"] or not runs["b"]:
            continue
        d = compare(runs["b"], runs["a"])
        table.append({"metric": metric, "a": summarize(list(runs["a"].values())).mean,
                      "b": summarize(list(runs["b"].values())).mean, "delta": d.delta, "delta_low": d.low,
                      "delta_high": d.high, "p": d.p, "test": d.test})
    curves, sources = {}, []
    for side, part in rows.items():
        curve, source = _loss_curve(part.iloc[0])
        if curve:
            curves[side] = curve
            sources.append(f"{side}: {source}")
    note = "; ".join(sources) if sources else ("no loss curves: the records hold no history and their run folders "
                                               "no metrics.jsonl (keep_model / the run folder was removed)")
    return {"settings": pd.DataFrame(settings, columns=["setting", "a", "b"]), "metrics": pd.DataFrame(table),
            "curves": curves, "curves_note": note}


def _loss_curve(row) -> tuple[list[tuple[int, float]], str]:
    """(step, loss) from the record's history, else from the run folder's ``metrics.jsonl``."""
    import json

    from .records import read_record

    record = read_record(row["path"]) if isinstance(row.get("path"), str) else None
    history = [(h["step"], h["loss"]) for h in (record or {}).get("history") or []
               if isinstance(h, dict) and "loss" in h and h["loss"] is not None]
    if history:
        return history, f"the record {row['path']}"
    log = Path(row["path"]).parent / str(row["run_name"]) / "metrics.jsonl" if isinstance(row.get("path"), str) else None
    if log is not None and log.is_file():
        curve = []
        for line in log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a torn last line
            if isinstance(entry, dict) and entry.get("loss") is not None and "step" in entry:
                curve.append((entry["step"], entry["loss"]))
        return curve, str(log)
    return [], ""


def pareto_front(points: list[tuple[float, float]], x_better: str = "lower", y_better: str = "higher") -> list[bool]:
    """Which ``(x, y)`` points no other point beats on both (``x_better`` / ``y_better``: ``"lower"``
    or ``"higher"``; an equal point does not beat one)."""
    for better in (x_better, y_better):
        if better not in ("lower", "higher"):
            raise ValueError(f"better must be 'lower' or 'higher', got {better!r}")
    sx, sy = (1 if x_better == "higher" else -1), (1 if y_better == "higher" else -1)
    flags = []
    for i, (x, y) in enumerate(points):
        beaten = any(sx * (u - x) >= 0 and sy * (v - y) >= 0 and (u, v) != (x, y) for j, (u, v) in enumerate(points) if j != i)
        flags.append(not beaten)
    return flags


def tradeoff(frame, x: str = "total_s", y: str = "global/group/t2i", x_better: str = "lower", y_better: str = "higher"):
    """Each setting's mean ``x`` and ``y`` over its seeds (a metric against another, or against a
    cost such as ``total_s``), with ``pareto``: the settings no other beats on both. A setting is
    named by what differs from the preset default where the records have one."""
    import pandas as pd

    ok = frame[frame["status"] == "ok"] if "status" in frame else frame
    for name in (x, y):
        if name not in ok:
            raise KeyError(f"column {name!r} is not in the records; choose one of {metric_columns(ok) + ['total_s']}")
    names = setting_columns(ok)
    default = default_setting(ok)
    reference = tuple(default[n] for n in names) if default else None  # labels say what differs from the default
    labels = [_label(names, tuple(key), reference) for key in as_text(ok[names]).values] if names else ["all"] * len(ok)
    grouped = ok.assign(_key=labels).groupby("_key", sort=False)
    table = pd.DataFrame({"n": grouped[y].count(), x: grouped[x].mean(), y: grouped[y].mean()}).reset_index(
        names="setting")
    table["pareto"] = pareto_front(list(zip(table[x], table[y])), x_better, y_better)
    return table
