"""Every axis at once: the settings table (metrics reduced over seeds), the parallel axes, brushing,
the static image — and the explorer's panels built on them (brushing through plotly's own message
path, reducers, log axes, only-what-differs, trade-off, run-vs-run diff, saved views, exports)."""

import contextlib
import io
import math

import pandas as pd
import pytest

from finelip_kit.experiments.parallel import Axis, axes_of, brushed, plot_parallel, setting_table, shown


def _frame(created=True):
    """3 settings (atrm_k 4 / 16 / 64 at pe_mode kps, and K=16 at pe_mode none) × seeds, known metrics."""
    rows = []
    values = {(4, "kps"): [60.0, 62.0, 64.0], (16, "kps"): [70.0, 71.0, 75.0], (64, "kps"): [66.0, 66.0],
              (16, "none"): [30.0, 34.0, 35.0]}
    order = 0
    for (k, pe), metric in values.items():
        for seed, value in enumerate(metric):
            order += 1
            rows.append({"run_name": f"k{k}_{pe}_s{seed}", "status": "ok", "preset": None, "path": f"/x/{order}.json",
                         "seed": seed, "atrm_k": k, "pe_mode": pe, "lr": 0.0002, "global/group/t2i": value,
                         "fine/group/t2i": value / 2, "total_s": 10.0 * k + seed,
                         # seed 0 written last for K=16 kps: 'last' follows the time, not the seed
                         "created": (f"2026-12-0{1 + (seed == 0 and k == 16)}T00:00:{order:02d}+00:00" if created
                                     else None)})
    return pd.DataFrame(rows)


def test_the_settings_table_reduces_each_setting_over_its_seeds_metrics_first():
    frame = _frame()
    mean = setting_table(frame, ["global/group/t2i", "fine/group/t2i"])
    assert list(mean.columns) == ["setting", "n", "seeds", "global/group/t2i", "fine/group/t2i", "atrm_k", "pe_mode", "lr"]
    assert list(mean["setting"]) == ["atrm_k=16, pe_mode=kps", "atrm_k=64, pe_mode=kps", "atrm_k=4, pe_mode=kps",
                                     "atrm_k=16, pe_mode=none"]  # best first
    assert list(mean["n"]) == [3, 2, 3, 3] and mean["seeds"][0] == "0, 1, 2"
    assert list(mean["global/group/t2i"]) == pytest.approx([72.0, 66.0, 62.0, 33.0])
    assert list(mean["fine/group/t2i"]) == pytest.approx([36.0, 33.0, 31.0, 16.5])
    assert mean.attrs["settings"] == ["atrm_k", "pe_mode"] and mean.attrs["constant"] == ["lr"]
    by = lambda table: dict(zip(table["setting"], table["global/group/t2i"]))  # noqa: E731
    assert by(setting_table(frame, ["global/group/t2i"], "min"))["atrm_k=16, pe_mode=kps"] == 70.0
    assert by(setting_table(frame, ["global/group/t2i"], "max"))["atrm_k=16, pe_mode=kps"] == 75.0
    last = setting_table(frame, ["global/group/t2i"], "last")
    assert by(last)["atrm_k=16, pe_mode=kps"] == 70.0 and last.attrs["note"] == ""  # seed 0 was written last
    untimed = setting_table(_frame(created=False), ["global/group/t2i"], "last")
    assert by(untimed)["atrm_k=16, pe_mode=kps"] == 75.0 and "seed order" in untimed.attrs["note"]
    with pytest.raises(ValueError, match="reduce must be one of"):
        setting_table(frame, ["global/group/t2i"], "median")
    with pytest.raises(KeyError, match="'nope'"):
        setting_table(frame, ["nope"])


def test_a_setting_with_a_missing_metric_reduces_what_it_has_and_failed_runs_are_left_out():
    frame = _frame()
    frame.loc[frame["run_name"] == "k4_kps_s0", "global/group/t2i"] = math.nan
    frame.loc[len(frame)] = {**frame.iloc[0].to_dict(), "run_name": "k4_kps_s9", "status": "failed", "seed": 9,
                             "global/group/t2i": 0.0}
    table = setting_table(frame, ["global/group/t2i"]).set_index("setting")
    assert table.loc["atrm_k=4, pe_mode=kps", "global/group/t2i"] == 63.0  # (62 + 64) / 2, NaN and the failure left out
    assert table.loc["atrm_k=4, pe_mode=kps", "n"] == 3


def test_axes_encode_numbers_categories_and_log_scales_and_refuse_what_cannot_be_logged():
    table = setting_table(_frame(), ["global/group/t2i"])
    k, pe, metric = axes_of(table, ["atrm_k", "pe_mode", "global/group/t2i"])
    assert (k.kind, k.values, k.ticks, k.labels) == ("numeric", (16.0, 64.0, 4.0, 16.0), (4.0, 16.0, 64.0), ("4", "16", "64"))
    assert (pe.kind, pe.values, pe.ticks, pe.labels) == ("category", (0.0, 0.0, 0.0, 1.0), (0.0, 1.0), ("kps", "none"))
    assert pe.span == (-0.5, 1.5) and metric.ticks == () and metric.span == (33.0, 72.0)
    (logged,) = axes_of(table, ["atrm_k"], log=["atrm_k"])
    assert logged.kind == "log" and logged.values == pytest.approx([math.log10(v) for v in (16, 64, 4, 16)])
    assert logged.ticks == pytest.approx([math.log10(4), math.log10(16), math.log10(64)]) and logged.labels == ("4", "16", "64")
    (decades,) = axes_of(table, ["global/group/t2i"], log=["global/group/t2i"])  # a metric: decades as ticks
    assert decades.labels == ("10", "100")
    with pytest.raises(ValueError, match="'pe_mode' is not numeric"):
        axes_of(table, ["pe_mode"], log=["pe_mode"])
    table.loc[0, "global/group/t2i"] = 0.0
    with pytest.raises(ValueError, match="'global/group/t2i' has value 0 ≤ 0"):
        axes_of(table, ["global/group/t2i"], log=["global/group/t2i"])
    with pytest.raises(KeyError, match="'nope'"):
        axes_of(table, ["nope"])


def test_brushing_keeps_the_rows_inside_every_brushed_range():
    a = Axis("a", "numeric", (1.0, 2.0, 3.0, 4.0))
    b = Axis("b", "category", (0.0, 1.0, 0.0, 1.0), (0.0, 1.0), ("x", "y"))
    assert brushed([a, b], {}) == [True] * 4
    assert brushed([a, b], {"a": [1.5, 3.0]}) == [False, True, True, False]  # ends included
    assert brushed([a, b], {"a": [3.0, 1.5]}) == [False, True, True, False]  # either order
    assert brushed([a, b], {"a": [[0, 1], [3.5, 9]]}) == [True, False, False, True]  # plotly's multi-range form
    assert brushed([a, b], {"a": [1.5, 4.0], "b": [0.5, 1.5]}) == [False, True, False, True]
    assert brushed([a, b], {"a": None}) == [True] * 4
    with pytest.raises(KeyError, match="'c'"):
        brushed([a, b], {"c": [0, 1]})


def test_only_what_differs_hides_the_settings_that_take_one_value_in_the_rows_shown():
    table = setting_table(_frame(), ["global/group/t2i"])
    assert list(shown(table).columns) == ["setting", "n", "seeds", "global/group/t2i", "atrm_k", "pe_mode"]
    kps = shown(table[table["pe_mode"] == "kps"])
    assert "pe_mode" not in kps and "atrm_k" in kps and set(kps.attrs["hidden"]) == {"pe_mode", "lr"}
    assert list(shown(table, only_differing=False).columns) == list(table.columns)


def test_the_static_parallel_image_draws_one_line_per_setting_brushed_out_ones_faint():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = setting_table(_frame(), ["global/group/t2i"])
    axes = axes_of(table, ["atrm_k", "pe_mode", "global/group/t2i"])
    keep = brushed(axes, {"pe_mode": [-0.2, 0.2]})
    figure = plot_parallel(axes, color="global/group/t2i", keep=keep)
    lines = [line for line in figure.axes[0].lines if len(line.get_xdata()) == 3]
    assert len(lines) == 4
    faint = [matplotlib.colors.to_hex(line.get_color()) == "#dadce0" for line in lines]
    assert faint == [not k for k in keep] == [False, False, False, True]
    assert lines[0].get_ydata()[2] == pytest.approx(1.0) and lines[3].get_ydata()[2] == pytest.approx(0.0)  # scaled
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["atrm_k", "pe_mode", "global/group/t2i"]
    plt.close(figure)


# ----------------------------------------------------------------------------- the explorer's panels
@pytest.fixture
def explorer(tmp_path):
    pytest.importorskip("ipywidgets")
    pytest.importorskip("plotly")
    from finelip_kit.experiments.explorer import AblationExplorer

    with contextlib.redirect_stdout(io.StringIO()):  # outside a kernel the widgets' outputs print
        yield AblationExplorer(_frame(), export_dir=tmp_path / "exports")


def _quiet(call, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return call(*args)


def test_brushing_an_axis_in_the_browser_filters_the_table(explorer):
    assert len(explorer.brushed_table) == 4 and "4 of 4 setting(s)" in explorer.brush_status.value
    labels = [d.label for d in explorer.parallel.data[0].dimensions]
    assert labels == ["atrm_k", "pe_mode", "global/group/t2i"]
    # the message plotly's front end sends when an axis is brushed (widgetbundle.js: plotly_restyle)
    message = {"style_data": {"dimensions[2].constraintrange": [[[60.0, 70.0]]]}, "style_traces": [0], "source_view_id": None}
    _quiet(explorer.parallel._handler_js2py_restyle, {"new": message})
    assert list(explorer.brushed_table["setting"]) == ["atrm_k=64, pe_mode=kps", "atrm_k=4, pe_mode=kps"]
    assert "pe_mode" not in explorer.brushed_table  # one value left: hidden (only settings that differ)
    assert "2 of 4 setting(s) pass the brushes on global/group/t2i" in explorer.brush_status.value
    _quiet(explorer.brush, {"pe_mode": [0.5, 1.5]})  # from Python: the other brush cleared
    assert list(explorer.brushed_table["setting"]) == ["atrm_k=16, pe_mode=none"]
    _quiet(explorer.brush, {})
    assert len(explorer.brushed_table) == 4
    with pytest.raises(KeyError, match="no parallel axis"):
        explorer.brush({"lr": [0, 1]})


def test_the_parallel_panel_follows_its_controls(explorer):
    _quiet(setattr, explorer.reduce, "value", "max")
    assert dict(zip(explorer.settings_table["setting"], explorer.settings_table["global/group/t2i"]))[
        "atrm_k=16, pe_mode=kps"] == 75.0
    _quiet(setattr, explorer.metrics, "value", ("global/group/t2i", "fine/group/t2i"))
    assert [d.label for d in explorer.parallel.data[0].dimensions][-2:] == ["global/group/t2i", "fine/group/t2i"]
    assert "atrm_k" in explorer.log_axes.options and "pe_mode" not in explorer.log_axes.options
    _quiet(setattr, explorer.log_axes, "value", ("atrm_k",))
    k = explorer.parallel.data[0].dimensions[0]
    assert list(k.values) == pytest.approx([math.log10(v) for v in (16, 64, 4, 16)]) and list(k.ticktext) == ["4", "16", "64"]
    _quiet(setattr, explorer.only_differing, "value", False)
    assert "lr" in explorer.brushed_table
    _quiet(setattr, explorer.filters["pe_mode"], "value", ("kps",))  # a filter reaches every panel
    assert len(explorer.settings_table) == 3 and [d.label for d in explorer.parallel.data[0].dimensions][0] == "atrm_k"


def test_trade_off_and_run_against_run_panels(explorer):
    assert explorer.against.value == "total_s"
    table = explorer.tradeoff_table.set_index("setting")
    assert table.loc["atrm_k=16, pe_mode=kps", "total_s"] == 161.0 and bool(table.loc["atrm_k=4, pe_mode=kps", "pareto"])
    assert not table.loc["atrm_k=16, pe_mode=none", "pareto"]  # slower and worse than K = 4
    assert (explorer.diff_a.value, explorer.diff_b.value) == ("atrm_k=16, pe_mode=kps", "atrm_k=64, pe_mode=kps")
    assert list(explorer.diff["settings"]["setting"]) == ["atrm_k"]
    row = explorer.diff["metrics"].set_index("metric").loc["global/group/t2i"]
    assert row["delta"] == pytest.approx(66.0 - 70.5) and row["test"] == "paired"  # seeds 0 and 1 pair
    _quiet(setattr, explorer.diff_b, "value", "atrm_k=16, pe_mode=none")
    assert list(explorer.diff["settings"]["setting"]) == ["pe_mode"]
    assert explorer.diff["metrics"].set_index("metric").loc["global/group/t2i", "delta"] == pytest.approx(33.0 - 72.0)


def test_a_saved_view_reopens_the_explorer_where_it_was(explorer, tmp_path):
    from finelip_kit.experiments.explorer import AblationExplorer

    _quiet(setattr, explorer.reduce, "value", "min")
    _quiet(setattr, explorer.filters["pe_mode"], "value", ("kps",))
    _quiet(explorer.brush, {"atrm_k": [10, 70]})
    path = _quiet(explorer.save_view, "k-sweep")
    assert path == tmp_path / "exports" / "views" / "k-sweep.json"
    again = _quiet(AblationExplorer, _frame(), tmp_path / "exports", None, "k-sweep")
    assert again.reduce.value == "min" and again.filters["pe_mode"].value == ("kps",)
    assert again.brushes == {"atrm_k": [10, 70]} and list(again.brushed_table["setting"]) == ["atrm_k=16", "atrm_k=64"]
    assert again.view() == explorer.view()
    with pytest.raises(ValueError, match="view name"):
        explorer.save_view("../outside")
    with pytest.raises(FileNotFoundError, match=r"saved views: \['k-sweep'\]"):
        explorer.read_view("other")
    other = {**explorer.view(), "filters": {"pe_mode": ["scratch"]}, "metric": "nope"}
    _quiet(explorer.apply_view, other)
    assert "metric='nope'" in explorer.status.value and "filter pe_mode" in explorer.status.value


def test_export_writes_every_panel_under_the_results_folder(explorer, tmp_path):
    _quiet(explorer.brush, {"pe_mode": [-0.5, 0.5]})
    _quiet(explorer.save)
    written = sorted(p.name for p in (tmp_path / "exports").iterdir())
    assert written == sorted(["global_group_t2i_by_atrm_k.png", "global_group_t2i_by_atrm_k.pdf",
                              "global_group_t2i_by_atrm_k.csv", "settings.csv", "parallel.png", "parallel.pdf",
                              "tradeoff_total_s.png", "tradeoff_total_s.pdf"])  # no preset default: no effects table
    settings = pd.read_csv(tmp_path / "exports" / "settings.csv")
    assert list(settings["setting"]) == ["atrm_k=16, pe_mode=kps", "atrm_k=64, pe_mode=kps", "atrm_k=4, pe_mode=kps"]
    assert (tmp_path / "exports" / "parallel.pdf").read_bytes()[:4] == b"%PDF"


@pytest.mark.parametrize("name", ["calibration", "capacity-map", "capacity-levers", "official-switches", "debias"])
def test_every_panel_opens_on_every_shipped_record_set_and_a_brush_narrows_it(name, tmp_path):
    pytest.importorskip("plotly")
    from finelip_kit.experiments.explorer import AblationExplorer
    from finelip_kit.experiments.analysis import as_text
    from finelip_kit.experiments.report import setting_columns

    explorer = _quiet(AblationExplorer, name, tmp_path)
    settings = len(as_text(explorer.frame[setting_columns(explorer.frame)]).drop_duplicates())  # None is a value here
    assert len(explorer.settings_table) == settings and explorer.effects is not None and explorer.diff is not None
    assert explorer.tradeoff_table is not None and explorer.tradeoff_table["pareto"].any()
    metric = explorer.axes[-1]
    low, high = metric.span
    _quiet(explorer.brush, {metric.name: [(low + high) / 2, high]})
    expected = sum(v >= (low + high) / 2 for v in metric.values)
    assert 0 < len(explorer.brushed_table) == expected < settings
