"""Reading records back: one row per run, tables of mean ± std over seeds, plots."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from .records import BadRecord, read_record, summary_frame  # noqa: F401  (summary_frame: re-exported)
from .settings import all_keys, canonical, short_name
from .shipped import DEMO_RESULTS, RECORD_SETS, in_project, shipped


# ----------------------------------------------------------------------------- reading records
# Record folders that ship with the kit (multi-seed results), by name: load_records("calibration");
# "demo" is what `make demo` wrote, in the project the working directory lies in (shipped.py).
SHIPPED_RECORDS: dict[str, Path] = {name: shipped(folder) for name, folder in RECORD_SETS.items()}
SHIPPED_RECORDS["demo"] = in_project(DEMO_RESULTS)


def records_folder(results_dir: str | Path) -> Path:
    """``results_dir`` as a folder: an existing path (from the working directory, or absolute), a
    shipped record set's name (``SHIPPED_RECORDS``), or a path from the project root
    (``ablations/runs/<grid>`` from a notebook in ``ablations/``: ``shipped.in_project``)."""
    path = Path(results_dir).expanduser()
    if path.is_dir():
        return path
    name = str(results_dir)
    if name in RECORD_SETS:
        return shipped(RECORD_SETS[name])
    if name == "demo":
        return in_project(DEMO_RESULTS)
    return in_project(path)


def load_records(results_dir: str | Path, status: str | None = None):
    """Every record under ``results_dir`` (recursively; any version the kit has written, see
    ``finelip_kit.records``) as a DataFrame: one row per record, a column per setting (named by
    its short alias where it has one — ``atrm_k``, ``pe_mode`` — else by its dotted key —
    ``data.differing_objects``), metric columns (``global/t2i/R@1``, ...), ``val/<metric>``,
    ``reference/<metric>``, ``status``, ``run_name``, ``preset``, ``path``, ``created``. Files that are not
    records, and records whose fields are malformed (a non-finite number, a metric that is not a
    number, settings that are not a mapping: ``records.check_record``), are skipped and counted by
    file in ``frame.attrs["skipped"]``, with the reason in ``frame.attrs["skipped_reasons"]``
    (``{path: reason}``) — never shown as numbers. ``results_dir`` may also name a
    record set shipped with the kit: ``"calibration"``, ``"capacity-map"``, ... (``SHIPPED_RECORDS``)."""
    import pandas as pd

    rows, skipped, reasons = [], [], {}
    folder = records_folder(results_dir)
    if not folder.is_dir():
        tried = list(dict.fromkeys(str(p) for p in (Path(results_dir).expanduser().absolute(), folder.absolute())))
        raise FileNotFoundError(
            f"results folder {str(results_dir)!r} does not exist; run a grid point first (papermill "
            f"ablations/grid.ipynb out.ipynb), name the folder by its absolute path or by its path from the project "
            f"root (found from any folder inside it), or name a shipped record set: {sorted(SHIPPED_RECORDS)}. "
            f"Tried {' and '.join(tried)}")
    for path in sorted(folder.rglob("*.json")):
        if (path.parent / "model.safetensors").is_file() or path.parent.name.startswith("step_"):
            continue  # a saved model's or checkpoint's own config, not a record
        try:
            record = read_record(path)
        except BadRecord as error:
            record, reasons[str(path)] = None, str(error).split(": ", 1)[-1]
        if record is None:
            skipped.append(str(path))
            reasons.setdefault(str(path), "not a finelip-kit record")
            continue
        row = {"run_name": record["run_name"], "status": record["status"], "preset": record.get("preset"),
               "path": str(path)}
        row.update({short_name(k): _cell(v) for k, v in complete_settings(record).items()})
        row.update(record.get("metrics") or {})
        row.update({f"val/{k}": v for k, v in (record.get("val_metrics") or {}).items()})
        if record.get("reference"):
            row.update({f"reference/{k}": v for k, v in record["reference"]["metrics"].items()})
        row["total_s"] = (record.get("timings") or {}).get("total_s")
        row["created"] = record.get("created")  # when it was written (provenance; None in the oldest records)
        row["error"] = record.get("error")
        rows.append(row)
    frame = pd.DataFrame(rows)
    if status is not None and not frame.empty:
        frame = frame[frame["status"] == status].reset_index(drop=True)
    frame.attrs["skipped"] = skipped
    frame.attrs["skipped_reasons"] = reasons
    frame.attrs["folder"] = str(folder.resolve())
    return frame


def complete_settings(record: dict[str, Any]) -> dict[str, Any]:
    """A record's settings with what it left implicit filled in from its preset (records of
    earlier versions named only what differed from the preset), so that rows of every version
    compare setting by setting."""
    settings = dict(record.get("settings") or {})
    preset = record.get("preset") or "synthetic-tiny"
    if record.get("record_version", 1) >= 2 and "model.source" in settings:
        # the recipe's own records hold every setting of their version; a setting added since
        # (its default is what that version did) comes from the preset's full settings
        return {**_preset_settings(preset), **settings}
    return {**(_full_settings(settings, preset) or {}), **settings}


def _full_settings(settings: dict[str, Any], preset: str) -> dict[str, Any] | None:
    """Every setting of a run of ``preset`` with ``settings`` (None when they no longer resolve)."""
    from ..model.pretrained import model_config
    from .recipe import RunSpec, resolve

    try:
        resolved = resolve(RunSpec(settings=settings, preset=preset))
        return resolved.settings(model_config(resolved.model_source, **resolved.model_overrides))
    except (ValueError, TypeError):
        return None


@lru_cache(maxsize=8)
def _preset_settings(preset: str) -> dict[str, Any]:
    return _full_settings({}, preset) or {}


def along(frame, *columns: str):
    """The rows that differ from the frame's most common setting only in ``columns`` (and the
    seed): one axis of an ablation grid, e.g. ``along(records, "atrm_k")`` for the K curve."""
    names = [column(frame, c) for c in columns]
    fixed = [c for c in parameter_columns(frame) if c not in names and c != "seed"]
    import pandas as pd

    keep = pd.Series(True, index=frame.index)
    for name in fixed:  # each compared with its most common value over the whole frame
        values = as_text(frame[name])
        keep &= values == values.mode().iloc[0]
    return frame[keep]


def setting_names(frame) -> list[str]:
    """The frame's setting columns, model settings first, then training, data and evaluation
    (the order of the vocabulary)."""
    order = {short_name(key): i for i, key in enumerate(all_keys())}
    return sorted((c for c in frame.columns if c in order), key=order.get)


def parameter_columns(frame) -> list[str]:
    """The setting columns that take more than one value in ``frame`` (``setting_names`` order)."""
    # a column with one raw value has one text too (the text is only needed where raw values differ:
    # 20 and 20.0, None and NaN read alike)
    return [n for n in setting_names(frame) if frame[n].nunique(dropna=False) > 1 and as_text(frame[n]).nunique() > 1]


def column(frame, name: str) -> str:
    """The frame's column for a setting named any way the vocabulary allows (``atrm_k``,
    ``model.atrm_k``) or a metric; KeyError naming the columns when there is none."""
    if name in frame:
        return name
    try:
        shown = short_name(canonical(name))
    except ValueError:
        shown = None
    if shown in frame:
        return shown
    raise KeyError(f"column {name!r} is not in the records; settings that vary: {parameter_columns(frame)}")


def as_text(values):
    """A column (or frame) as the text the tables group by: ``None`` and NaN both read
    ``None``, and a whole float reads as an integer (``20.0`` → ``20``: a column with a
    missing value is a float column in pandas)."""
    import math

    import pandas as pd

    def text(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "None"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)

    if isinstance(values, pd.DataFrame):
        return values.apply(as_text) if len(values.columns) else values.astype(object)
    if type(values.dtype).__module__ == "numpy" and values.dtype.kind in "biu":  # numpy bools and ints: vectorised
        return values.astype(str).astype(object)
    return pd.Series([text(v) for v in values.tolist()], index=values.index, dtype=object)


def _cell(value: Any) -> Any:
    return str(value) if isinstance(value, (list, dict)) else value


def metric_columns(frame) -> list[str]:
    return [c for c in frame.columns if "/" in c and not c.startswith("reference/")]


def ablation_table(frame, metric: str = "global/group/t2i", by: list[str] | None = None,
                   baseline: dict[str, Any] | None = None):
    """Mean ± std of ``metric`` over seeds for each setting of ``by`` (default: every varied
    parameter but the seed), sorted best first; with ``baseline`` (a setting), a ``delta`` column.
    ``table.attrs["pooled"]``: the varied settings a ``by`` narrower than every setting pools
    (``pooled_columns``; then a row's ``n`` counts runs of different settings, not seeds). For
    seed-paired deltas with confidence intervals use ``report.effects``."""
    import pandas as pd

    if metric not in frame:
        raise KeyError(f"metric {metric!r} is not in the records; choose one of {metric_columns(frame)}")
    ok = frame[frame["status"] == "ok"] if "status" in frame else frame
    by = [column(ok, c) for c in by] if by is not None else [c for c in parameter_columns(ok) if c != "seed"]
    baseline = {column(ok, k): v for k, v in baseline.items()} if baseline is not None else None
    if not by:
        ok = ok.assign(setting="all")
        by = ["setting"]
    keys = as_text(ok[by])
    grouped = ok.assign(**{c: keys[c] for c in by}).groupby(by, sort=False)[metric]
    table = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std().fillna(0.0), "n": grouped.count()})
    table = table.sort_values("mean", ascending=False)
    if baseline is not None:
        index = tuple(str(baseline[c]) for c in by) if len(by) > 1 else str(baseline[by[0]])
        if index not in table.index:
            raise KeyError(f"baseline {baseline} is not a setting in the table; settings: {list(table.index)}")
        table["delta"] = table["mean"] - table.loc[index, "mean"]
    table.attrs["pooled"] = pooled_columns(ok, by) if by != ["setting"] else []
    return table


def pooled_columns(frame, by: list[str]) -> list[str]:
    """The varied settings (the seed aside) that differ *within* a group of ``by``: grouping by
    ``by`` alone would pool different settings as if they were seeds (the explorer warns)."""
    by = [column(frame, c) for c in by]
    others = [c for c in parameter_columns(frame) if c != "seed" and c not in by]
    if not others or frame.empty:
        return []
    text = as_text(frame[by + others])
    return [c for c in others if (text.groupby(by)[c].nunique() > 1).any()]


def plot_ablation(frame, metric: str = "global/group/t2i", x: str = "atrm_k", group: str | None = None, ax=None,
                  level: float = 0.95):
    """``metric`` against setting ``x``: the mean over seeds with its ``level`` confidence interval
    (Student t; no bar with one seed), one series per value of ``group`` (settings named by their
    short alias or dotted key: ``atrm_k``, ``data.differing_objects``). A numeric ``x`` is sorted
    numerically and joined by lines; a categorical one is drawn as points. The reference row's
    value, where records carry one, is a dashed line. Returns the figure; its ``pooled`` attribute
    lists the varied settings the points pool (``pooled_columns``), also said in the title."""
    import matplotlib.pyplot as plt

    from .stats import summarize

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    ok = frame[frame["status"] == "ok"] if "status" in frame else frame
    if metric not in ok:
        raise KeyError(f"column {metric!r} is not in the records")
    x, group = column(ok, x), (column(ok, group) if group else None)
    numeric = all(_sort_key(v)[0] == 0 for v in as_text(ok[x]).unique())
    groups = ok.groupby(as_text(ok[group])) if group else [(None, ok)]
    percent = round(100 * level)
    for label, part in groups:
        values = part[metric].groupby(as_text(part[x]), sort=False).apply(list)
        values = values.loc[sorted(values.index, key=_sort_key)]
        stats = [summarize(v, level) for v in values]
        half = [0.0 if s.high is None else s.high - s.mean for s in stats]
        ax.errorbar(list(values.index), [s.mean for s in stats], yerr=half, marker="o", capsize=3,
                    linestyle="-" if numeric else "none",
                    label=(f"{group}={label}" if group else metric) + f" ({percent}% CI over seeds)")
    reference = f"reference/{metric}"
    if reference in ok and ok[reference].notna().any():
        ax.axhline(ok[reference].mean(), color="grey", linestyle="--", label="reference (before fine-tuning)")
    pooled = pooled_columns(ok, [x] + ([group] if group else []))
    if pooled:
        ax.set_title(f"pools settings that differ in {', '.join(pooled)}", fontsize=8, color="#a50e0e")
    ax.figure.pooled = pooled
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax.figure


def _sort_key(value: str):
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)




def plot_tradeoff(table, x: str = "total_s", y: str = "global/group/t2i", ax=None):
    """``report.tradeoff``'s table as a scatter: every setting's mean ``x`` against its mean ``y``,
    the Pareto front joined and labelled. Returns the figure."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    rest, front = table[~table["pareto"]], table[table["pareto"]].sort_values(x)
    ax.scatter(rest[x], rest[y], color="#9aa0a6", label="settings (mean over seeds)")
    ax.plot(front[x], front[y], marker="o", color="#1a73e8", label="Pareto front")
    for _, row in front.iterrows():
        ax.annotate(row["setting"][:40], (row[x], row[y]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return ax.figure
