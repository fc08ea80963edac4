"""The explorer's update time at scale: records × settings × metrics built in memory (the shapes a
large grid gives), each update the explorer does timed over several repeats.

    python benchmarks/bench_explorer.py [--records 1000] [--settings 30] [--metrics 40] [--seeds 3]

Prints one table (min / median / max seconds per update). The issue's target is < 0.5 s per
update on 2 cores. The settings vary one at a time around a default (an ablation grid's shape:
``records / seeds`` settings), the metrics are noise around a per-setting mean.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import time


def frame_of(records: int, settings: int, metrics: int, seeds: int):
    import numpy as np
    import pandas as pd

    from finelip_kit.experiments.settings import all_keys, short_name

    rng = np.random.default_rng(0)
    names = [short_name(k) for k in all_keys() if short_name(k) != "seed"][:settings]  # real setting columns
    rows = []
    for r in range(records):
        point, seed = divmod(r, seeds)
        row = {"run_name": f"p{point}_s{seed}", "status": "ok", "preset": None, "seed": seed, "path": f"/x/{r}.json"}
        row.update({n: 0 for n in names})
        if point:
            row[names[point % len(names)]] = 1 + point // len(names)  # one setting moved per point
        base = 60 + (point % 7)
        row.update({f"m/{j}": base + j * 0.1 + rng.normal(0, 0.5) for j in range(metrics)})
        rows.append(row)
    return pd.DataFrame(rows), names


def timed(call, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--settings", type=int, default=30)
    parser.add_argument("--metrics", type=int, default=40)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from finelip_kit.experiments.analysis import ablation_table, plot_ablation
    from finelip_kit.experiments.parallel import axes_of, brushed, setting_table
    from finelip_kit.experiments.report import effects

    frame, names = frame_of(args.records, args.settings, args.metrics, args.seeds)
    baseline = {n: 0 for n in names}
    x = names[0]
    rows = [("effects table (paired deltas, CI)", lambda: effects(frame, "m/0", baseline=baseline)),
            ("effects table, Holm", lambda: effects(frame, "m/0", baseline=baseline, correction="holm")),
            ("plot's table (by x)", lambda: ablation_table(frame, "m/0", by=[x])),
            ("plot (CI bars)", lambda: plt.close(plot_ablation(frame, "m/0", x=x))),
            ("settings table (3 metrics, mean over seeds)", lambda: setting_table(frame, ["m/0", "m/1", "m/2"])),
            ("parallel axes + a brush", lambda: brushed(axes_of(table, names + ["m/0"]), {"m/0": [60, 63]}))]
    table = setting_table(frame, ["m/0"])
    try:
        from finelip_kit.experiments.explorer import AblationExplorer

        with contextlib.redirect_stdout(io.StringIO()):  # outside a kernel the widgets' outputs print
            explorer = AblationExplorer(frame, baseline=baseline)
        assert explorer.effects is not None and len(explorer.effects) == -(-args.records // args.seeds)
        metrics = [f"m/{j}" for j in range(1, 1 + args.repeats)]
        def change_metric():
            with contextlib.redirect_stdout(io.StringIO()):
                explorer.metric.value = metrics.pop(0) if metrics else "m/0"

        rows.append(("explorer: change the metric (4 panels)", change_metric))
        reducers = ["min", "max", "last", "mean"] * args.repeats

        def change_reducer():
            with contextlib.redirect_stdout(io.StringIO()):
                explorer.reduce.value = reducers.pop(0)

        rows.append(("explorer: over seeds mean/min/max/last", change_reducer))
        seeds = [("0", "1"), ("0", "1", "2"), ()] * args.repeats

        def filter_seeds():
            with contextlib.redirect_stdout(io.StringIO()):
                explorer.filters["seed"].value = seeds.pop(0)

        rows.append(("explorer: a filter (every panel, the diff too)", filter_seeds))
        spans = [[60 + i * 0.1, 64] for i in range(2 * args.repeats + 2)]

        def brush():
            if explorer.parallel is None:
                raise SystemExit("plotly is not installed: the brush cannot be timed")
            message = {"style_data": {f"dimensions[{len(explorer.axes) - 1}].constraintrange": [[spans.pop(0)]]},
                       "style_traces": [0], "source_view_id": None}
            with contextlib.redirect_stdout(io.StringIO()):
                explorer.parallel._handler_js2py_restyle({"new": message})  # what the browser sends on a brush

        rows.append(("explorer: brush the metric's axis", brush))
    except ImportError:  # ipywidgets is the notebooks extra
        pass
    print(f"explorer updates on {args.records} records x {len(names)} settings x {args.metrics} metrics "
          f"({args.records // args.seeds} settings of {args.seeds} seeds), {args.repeats} repeats, seconds")
    print(f"{'update':<46} {'min':>7} {'median':>7} {'max':>7}")
    for label, call in rows:
        call()  # warm (imports, caches)
        times = timed(call, args.repeats)
        print(f"{label:<46} {min(times):7.3f} {statistics.median(times):7.3f} {max(times):7.3f}")


if __name__ == "__main__":
    main()
