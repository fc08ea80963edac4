"""The one builder of tables of retrieval metrics (``<mode>/<direction>/R@k`` and
``<mode>/group/<direction>`` keys, in percent): the evaluation's ``result.table``, a record's
``summary_frame``, the CLI's text summaries and the trackers' tables are all ``metrics_table``.

    metrics_table(metrics)                       # rows: scoring modes; columns: R@1/5/10 both ways, group accuracy
    metrics_table(metrics, by="direction")       # rows: (mode, direction); columns: R@1, R@5, R@10, group acc
    metrics_text(metrics, chance=chance)         # the same, as fixed-width text (the CLI)
"""

from __future__ import annotations

import math
from typing import Any

from ..model.config import SCORE_MODES

COLUMNS = ("t2i/R@1", "i2t/R@1", "t2i/R@5", "i2t/R@5", "t2i/R@10", "i2t/R@10", "group/t2i", "group/i2t")
TEXT_COLUMNS = ("i2t/R@1", "t2i/R@1", "i2t/R@5", "t2i/R@5", "group/i2t", "group/t2i")  # what fits a terminal line
CHANCE_ROW = "chance"


def table_modes(metrics: dict[str, Any]) -> list[str]:
    """The scoring modes ``metrics`` holds, in order (``global``, ``fine@rerank20``, ...); prefixed
    families (``alt/global/...``, ``binding/...``) are other tables."""
    return [m for m in dict.fromkeys(key.split("/")[0] for key in metrics) if m.split("@")[0] in SCORE_MODES]


def metrics_table(metrics: dict[str, float], *, by: str = "mode", chance: dict[str, float] | None = None,
                  reference: dict[str, Any] | None = None, columns=COLUMNS, decimals: int = 1):
    """A DataFrame of ``metrics``.

    ``by="mode"``: a row per scoring mode, a column per metric in ``columns``; ``reference`` (a
    record's ``{"name", "metrics"}``) adds its global row, ``chance`` (``group_chance``) a last row
    with the within-group accuracy a random scorer gets. ``by="direction"``: a row per (mode,
    direction), columns R@k and, where there are groups, ``group acc`` and ``group chance``."""
    import pandas as pd

    modes = table_modes(metrics)
    if by == "direction":
        rows = []
        for mode in modes:
            for direction in ("i2t", "t2i"):
                prefix = f"{mode}/{direction}/"
                row = {"mode": mode, "direction": direction,
                       **{k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}}
                if f"{mode}/group/{direction}" in metrics:
                    row["group acc"] = metrics[f"{mode}/group/{direction}"]
                    row["group chance"] = (chance or {}).get(f"group/{direction}")
                rows.append(row)
        return pd.DataFrame(rows).set_index(["mode", "direction"]).round(decimals)
    if by != "mode":
        raise ValueError(f"by must be 'mode' or 'direction', got {by!r}")
    rows = {mode: [metrics.get(f"{mode}/{c}") for c in columns] for mode in modes}
    if reference:
        rows["reference: " + reference["name"]] = [reference["metrics"].get(f"global/{c}") for c in columns]
    if chance:
        rows[CHANCE_ROW] = [chance.get(c) for c in columns]
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(columns)).round(decimals)


def metrics_text(metrics: dict[str, float], chance: dict[str, float] | None = None, columns=TEXT_COLUMNS) -> str:
    """``metrics_table`` (by mode, with the chance row) as fixed-width text; a missing value is blank."""
    frame = metrics_table(metrics, chance=chance, columns=columns)

    def cell(value) -> str:
        return f"{'':>11}" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:>11.1f}"

    lines = [f"{'mode':<8}" + "".join(f"{c:>11}" for c in columns)]
    lines += [f"{name:<8}" + "".join(cell(v) for v in row).rstrip() for name, row in frame.iterrows()]
    return "\n".join(lines)
