"""Issue 31: seed-aware statistics (against scipy.stats) and the effects table — what mattered in
a record set, each setting's paired delta against a baseline — as the explorer's default view and
``finelip report`` print it."""

import math
import subprocess
import sys

import pytest
from scipy import stats as scipy_stats

from finelip_kit.experiments.analysis import load_records
from finelip_kit.experiments.report import effects, export_effects, format_effects
from finelip_kit.experiments.stats import compare, holm, summarize, t_ppf, t_sf


# ----------------------------------------------------------------------------- the statistics, against scipy
@pytest.mark.parametrize("df", [1, 2, 3, 4, 7, 29, 200])
def test_students_t_equals_scipys(df):
    for q in (0.51, 0.8, 0.95, 0.975, 0.995, 0.9999):
        assert t_ppf(q, df) == pytest.approx(scipy_stats.t.ppf(q, df), rel=1e-10)
        assert t_ppf(1 - q, df) == pytest.approx(scipy_stats.t.ppf(1 - q, df), rel=1e-10)
    for t in (-8.0, -1.3, 0.0, 0.4, 2.1, 35.0):
        assert t_sf(t, df) == pytest.approx(scipy_stats.t.sf(t, df), rel=1e-9, abs=1e-300)


def test_a_settings_summary_is_mean_std_and_the_student_t_interval():
    values = [66.0, 66.7, 67.4, 65.1]
    summary = summarize(values)
    low, high = scipy_stats.t.interval(0.95, 3, loc=sum(values) / 4, scale=scipy_stats.sem(values))
    assert (summary.n, summary.mean) == (4, pytest.approx(66.3))
    assert summary.std == pytest.approx(scipy_stats.tstd(values), rel=1e-12)
    assert (summary.low, summary.high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
    one = summarize([3.0])
    assert (one.n, one.mean, one.std, one.low, one.high) == (1, 3.0, None, None, None)
    with pytest.raises(ValueError, match=r"non-finite values \[nan\]"):
        summarize([1.0, float("nan")])


def test_paired_delta_uses_the_shared_seeds_and_equals_ttest_rel():
    a = {0: 61.0, 1: 62.5, 2: 60.0, 3: 63.0, 9: 70.0}  # seed 9 has no partner: left out, and said so
    b = {0: 60.0, 1: 61.0, 2: 60.5, 3: 61.0, 7: 50.0}
    d = compare(a, b)
    reference = scipy_stats.ttest_rel([a[s] for s in range(4)], [b[s] for s in range(4)])
    interval = reference.confidence_interval(0.95)
    assert d.test == "paired" and d.n == 4 and d.delta == pytest.approx(1.0)
    assert d.p == pytest.approx(reference.pvalue, rel=1e-9)
    assert (d.low, d.high) == (pytest.approx(interval.low, rel=1e-9), pytest.approx(interval.high, rel=1e-9))
    assert d.significant == (not interval.low <= 0 <= interval.high)
    assert d.note == "paired over 4 shared seeds (2 unpaired run(s) left out)"


def test_unpaired_seeds_fall_back_to_welch_and_say_so():
    a, b = {0: 1.0, 1: 2.0, 2: 2.5}, {5: 0.5, 6: 1.0, 7: 2.6, 8: 3.3}
    d = compare(a, b)
    reference = scipy_stats.ttest_ind(list(a.values()), list(b.values()), equal_var=False)
    interval = reference.confidence_interval(0.95)
    assert d.test == "welch" and d.note == "seeds do not pair (0 shared): Welch's test on 3 and 4 runs"
    assert d.p == pytest.approx(reference.pvalue, rel=1e-9)
    assert (d.low, d.high) == (pytest.approx(interval.low, rel=1e-9), pytest.approx(interval.high, rel=1e-9))
    # one shared seed does not pair either: still Welch, over every run
    assert compare({0: 1.0, 1: 2.0}, {1: 1.5, 3: 0.2}).test == "welch"


def test_too_few_runs_give_no_test_and_no_mark_and_exact_agreement_is_certain():
    for a, b in (({0: 5.0}, {0: 4.0, 1: 4.2}), ({0: 5.0}, {1: 4.0})):
        d = compare(a, b)
        assert (d.test, d.significant, d.p, d.low, d.high) == ("none", False, None, None, None)
        assert "too few for a test, nothing marked" in d.note
    same = compare({0: 25.0, 1: 25.0, 2: 25.0}, {0: 25.0, 1: 25.0, 2: 25.0})  # chance, every seed
    assert (same.delta, same.low, same.high, same.p, same.significant) == (0.0, 0.0, 0.0, 1.0, False)
    shifted = compare({0: 26.0, 1: 27.0}, {0: 25.0, 1: 26.0})  # every pair differs by exactly 1
    assert (shifted.delta, shifted.low, shifted.high, shifted.p, shifted.significant) == (1.0, 1.0, 1.0, 0.0, True)


def test_holm_equals_its_definition():
    p = [0.01, 0.04, None, 0.30, 0.02]
    # sorted 0.01, 0.02, 0.04, 0.30 (m = 4): 0.04, max(0.04, 0.06), max(0.06, 0.08), max(0.08, 0.30)
    assert holm(p) == [pytest.approx(0.04), pytest.approx(0.08), None, pytest.approx(0.30), pytest.approx(0.06)]
    assert holm([0.5, 0.9]) == [1.0, 1.0]


# ----------------------------------------------------------------------------- the effects table on the calibration
def test_the_calibrations_default_view_marks_exactly_what_its_paired_intervals_say():
    frame = load_records("calibration")
    table = effects(frame, "global/group/t2i")
    assert table["setting"][0] == "baseline" and table["test"][0] == "baseline" and table["n"][0] == 3
    assert table["setting"][1] == "context_length=77, pe_mode=none"  # by far the largest effect
    assert abs(table["delta"][1]) > 1.4 * abs(table["delta"][2])
    # independently: each setting's seeds against the default's, by scipy
    names = table.attrs["settings"]
    ok = frame[frame["status"] == "ok"]
    base = ok[[all(str(_text(row[n])) == table.attrs["baseline"][n] for n in names) for _, row in ok.iterrows()]]
    base = dict(zip(base["seed"], base["global/group/t2i"]))
    assert len(base) == 3 and sorted(base) == [0, 1, 2]
    checked = 0
    for _, row in table.iloc[1:].iterrows():
        mine = ok[[all(str(_text(r[n])) == row[f"={n}"] for n in names) for _, r in ok.iterrows()]]
        values = dict(zip(mine["seed"], mine["global/group/t2i"]))
        seeds = sorted(set(values) & set(base))
        reference = scipy_stats.ttest_rel([values[s] for s in seeds], [base[s] for s in seeds])
        interval = reference.confidence_interval(0.95)
        if math.isnan(reference.pvalue):  # every difference equal: scipy has no interval; the kit's is the point
            assert row["delta_low"] == row["delta_high"] == row["delta"]
        else:
            assert row["p"] == pytest.approx(reference.pvalue, rel=1e-8)
            assert (row["mark"] == "*") == (not interval.low <= 0 <= interval.high)
        checked += 1
    assert checked == 17 and set(table["test"][1:]) == {"paired"}
    marked = set(table.loc[table["mark"] == "*", "setting"])
    assert {"context_length=77, pe_mode=none", "loss=fine", "data.differing_objects=3"} <= marked
    assert not {"atrm_k=24", "pe_mode=linear", "pe_mode=scratch"} & marked  # within seed noise
    holm_table = effects(frame, "global/group/t2i", correction="holm")
    # docs/explorer.md: with Holm (17 comparisons) only the context length and the two scene settings stay marked
    assert set(holm_table.loc[holm_table["mark"] == "*", "setting"]) == {
        "context_length=77, pe_mode=none", "loss=global, data.differing_objects=3", "data.differing_objects=3"}


def _text(value):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "None"
    return int(value) if isinstance(value, float) and value.is_integer() else value


def test_a_named_baseline_and_refusals():
    frame = load_records("calibration")
    table = effects(frame, "global/t2i/R@1", baseline={"atrm_k": 4})
    assert table["setting"][0] == "baseline" and table.attrs["baseline"]["atrm_k"] == "4"
    assert "atrm_k=16" in set(table["setting"])  # the preset default is now one row among the others
    with pytest.raises(ValueError, match=r"baseline \{'loss': 'nonsense'\} names 0 settings of the records, not one; "
                                         r"settings: use_atrm=False, .* \(18 in all\)"):
        effects(frame, baseline={"loss": "nonsense"})
    with pytest.raises(KeyError, match="metric 'global/t2i/R@2' is not in the records"):
        effects(frame, "global/t2i/R@2")
    with pytest.raises(ValueError, match="correction must be None or 'holm'"):
        effects(frame, correction="bonferroni")


def test_text_markdown_and_latex_forms(tmp_path):
    table = effects(load_records("calibration"), "global/group/t2i")
    text = format_effects(table, "text").splitlines()
    assert text[1].split()[:4] == ["setting", "n", "mean", "95%"] and len(text) == 2 + 18
    assert text[3].startswith("context_length=77, pe_mode=none") and text[3].rstrip().endswith("*")
    md = format_effects(table, "md").splitlines()
    assert md[2].startswith("| setting | n | mean |") and md[3].startswith("|---|---:|") and len(md) == 4 + 18
    assert all(line.count("|") == md[2].count("|") for line in md[4:])
    latex = format_effects(table, "latex").splitlines()
    assert latex[1] == r"\begin{tabular}{lrrrrrrl}" and latex[2] == r"\toprule" and latex[4] == r"\midrule"
    assert latex[-2:] == [r"\bottomrule", r"\end{tabular}"]
    body = latex[5:-2]
    assert len(body) == 18 and all(line.endswith(r"\\") and line.count(" & ") == 7 for line in body)
    assert sum(r"\textbf{" in line for line in body) == 1 and r"\textbf{94.4}" in body[2]  # the best mean
    assert r"context\_length=77, pe\_mode=none & 3 & 25.0" in body[1] and "-41.7$^{*}$" in body[1]
    assert all("_" not in line.replace(r"\_", "") for line in body)  # every underscore escaped
    written = export_effects(table, tmp_path / "exports")
    assert [p.name for p in written] == ["effects_global_group_t2i.csv", "effects_global_group_t2i.md",
                                         "effects_global_group_t2i.tex"]
    assert written[2].read_text() == format_effects(table, "latex") + "\n"
    with pytest.raises(ValueError, match="format must be one of"):
        format_effects(table, "html")


def test_finelip_report_prints_the_table_counts_failures_and_exports_under_the_results_folder(tmp_path):
    import shutil

    from finelip_kit.experiments.records import new_record, read_record, write_record
    from finelip_kit.experiments.shipped import RECORD_SETS, shipped

    results = tmp_path / "grid"
    shutil.copytree(shipped(RECORD_SETS["calibration"]), results)
    ok = read_record(results / "k_4_s0.json")
    write_record(new_record("k_4_s9", "failed", preset=ok["preset"], settings={**ok["settings"], "train.seed": 9},
                            parameters=ok["parameters"], with_provenance=False, error="RuntimeError: out of memory\nmore"),
                 results)
    (results / "notes.json").write_text("[1, 2]")
    done = subprocess.run([sys.executable, "-m", "finelip_kit.cli", "report", str(results), "--format", "md",
                           "--export"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[2].startswith("| setting |") and "| context_length=77, pe_mode=none | 3 | 25.0 |" in done.stdout
    assert "54 ok record(s) in 18 setting(s)" in done.stdout
    assert "1 failed: k_4_s9 (RuntimeError: out of memory)" in done.stdout
    assert "file(s) skipped (not records or malformed)" in done.stdout
    assert f"wrote {results / 'exports' / 'effects_global_group_t2i.tex'}" in done.stdout
    assert not (tmp_path / "exports").exists() and not (tmp_path / "ablations").exists()  # never the working directory
    bad = subprocess.run([sys.executable, "-m", "finelip_kit.cli", "report", "calibration", "--baseline", "atrm_k=5"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "baseline {'atrm_k': 5} names 0 settings of the records, not one" in bad.stderr


# ----------------------------------------------------------------------------- the explorer's default view
def test_the_explorer_opens_on_what_mattered_warns_when_an_axis_pools_settings_reloads_and_exports(tmp_path):
    import shutil

    pytest.importorskip("ipywidgets")
    from finelip_kit.experiments.explorer import DEFAULT, AblationExplorer
    from finelip_kit.experiments.records import new_record, read_record, write_record
    from finelip_kit.experiments.shipped import RECORD_SETS, shipped

    results = tmp_path / "grid"
    shutil.copytree(shipped(RECORD_SETS["calibration"]), results)
    explorer = AblationExplorer(str(results))
    assert explorer.export_dir == results / "exports"
    table = explorer.effects
    assert list(table["setting"][:2]) == ["baseline", "context_length=77, pe_mode=none"] and len(table) == 18
    assert explorer.effects_baseline.value == DEFAULT and len(explorer.effects_baseline.options) == 19
    # the example: x = pe_mode pools 15 settings into "kps": warned, and the table says it
    explorer.x.value = "pe_mode"
    assert explorer.table.loc["kps", "n"] == 45 and "context_length" not in explorer.table.attrs["pooled"]
    assert "pools settings that differ in" in explorer.warning.value and "atrm_k" in explorer.warning.value
    assert explorer.figure.pooled == explorer.table.attrs["pooled"]
    explorer.filters["data.differing_objects"].value = ("1",)
    assert explorer.status.value == "48 record(s)" and len(explorer.effects) == 16
    explorer.filters["data.differing_objects"].value = ()
    # another baseline: K = 4's row first, the preset default now one row among the others
    k4 = next(o for o in explorer.effects_baseline.options if "atrm_k=4," in o)
    explorer.effects_baseline.value = k4
    assert explorer.effects["setting"][0] == "baseline" and explorer.effects.attrs["baseline"]["atrm_k"] == "4"
    assert "atrm_k=16" in set(explorer.effects["setting"])
    marked = (explorer.effects["mark"] == "*").sum()
    explorer.holm.value = True
    assert (explorer.effects["mark"] == "*").sum() < marked and "p_holm" in explorer.effects
    explorer.filters["atrm_k"].value = ("16",)  # the chosen baseline filtered out: said, not a traceback
    assert explorer.effects is None and "names 0 settings of the records" in explorer.effects_note
    explorer.filters["atrm_k"].value = ()
    # live: a record written since, and a failed point with its error
    ok = read_record(results / "k_4_s0.json")
    write_record(new_record("k_4_s7", "ok", preset=ok["preset"], settings={**ok["settings"], "train.seed": 7},
                            parameters=ok["parameters"], with_provenance=False, metrics=ok["metrics"]), results)
    write_record(new_record("k_8_s7", "failed", preset=ok["preset"], settings={**ok["settings"], "train.seed": 7},
                            parameters=ok["parameters"], with_provenance=False, error="RuntimeError: CUDA out of memory"),
                 results)
    assert explorer.reload_records() == 2 and explorer.status.value.endswith("2 new since the last read")
    assert explorer.failed_points == {"k_8_s7": "RuntimeError: CUDA out of memory"} and "k_8_s7" in explorer.failed.value
    assert explorer.effects.set_index("setting").loc["baseline", "n"] == 4  # K = 4 now has seeds 0, 1, 2, 7
    png, csv = explorer.save()
    written = sorted(p.name for p in (results / "exports").iterdir())
    assert written == sorted(["global_group_t2i_by_pe_mode.png", "global_group_t2i_by_pe_mode.pdf",
                              "global_group_t2i_by_pe_mode.csv", "effects_global_group_t2i.csv",
                              "effects_global_group_t2i.md", "effects_global_group_t2i.tex",
                              "settings.csv", "parallel.png", "parallel.pdf",  # the new records carry no total_s: against a metric
                              "tradeoff_global_i2t_R@1.png", "tradeoff_global_i2t_R@1.pdf"])
    assert (results / "exports" / "global_group_t2i_by_pe_mode.pdf").read_bytes()[:4] == b"%PDF"


def test_plots_sort_numbers_numerically_draw_categories_as_points_and_bars_are_confidence_intervals():
    from finelip_kit.experiments.analysis import plot_ablation
    from finelip_kit.experiments.report import effects

    frame = load_records("calibration")
    along_k = frame[frame["run_name"].str.match(r"^(k_\d+|default)_s\d$")]
    figure = plot_ablation(along_k, "global/group/t2i", x="atrm_k")
    line = figure.axes[0].lines[0]
    assert list(line.get_xdata()) == ["4", "8", "16", "24", "39"] and line.get_linestyle() == "-"
    table = effects(along_k, "global/group/t2i")
    k4 = table.set_index("setting").loc["atrm_k=4"]
    bars = figure.axes[0].collections[0].get_segments()  # the error bars, in x order
    assert bars[0][1][1] - bars[0][0][1] == pytest.approx(k4["ci_high"] - k4["ci_low"])  # the CI, not the std
    assert figure.pooled == []
    categorical = plot_ablation(frame[frame["run_name"].str.match(r"^(loss_\w+|default)_s\d$")], "global/group/t2i",
                                x="loss")
    assert categorical.axes[0].lines[0].get_linestyle() == "None"


def test_the_docs_show_the_calibrations_table_as_finelip_report_prints_it():
    import re
    from pathlib import Path

    from finelip_kit.experiments.report import report

    page = (Path(__file__).resolve().parents[1] / "docs" / "explorer.md").read_text()
    shown = re.search(r"measured on 2000 test pairs; the numbers are the records' own\):\n\n```\n(.*?)```", page,
                      flags=re.S).group(1)
    assert shown == report("calibration") + "\n"


# ----------------------------------------------------------------------------- run against run, trade-offs
def test_pareto_front_on_known_points():
    from finelip_kit.experiments.report import pareto_front

    points = [(1.0, 1.0), (2.0, 3.0), (3.0, 2.0), (4.0, 4.0), (2.0, 3.0), (5.0, 3.5)]
    # lower x and higher y win: (1,1) cheapest; (2,3) twice, neither beats the other; (4,4) best y
    assert pareto_front(points) == [True, True, False, True, True, False]
    assert pareto_front(points, x_better="higher") == [False, False, False, True, False, True]
    with pytest.raises(ValueError, match="better must be 'lower' or 'higher', got 'more'"):
        pareto_front(points, y_better="more")


def test_tradeoff_names_settings_by_what_differs_and_marks_the_front():
    from finelip_kit.experiments.report import pareto_front, tradeoff

    table = tradeoff(load_records("calibration"), x="total_s", y="global/group/t2i")
    assert len(table) == 18 and set(table["n"]) == {3} and "atrm_k=8" in set(table["setting"])
    assert list(table["pareto"]) == pareto_front(list(zip(table["total_s"], table["global/group/t2i"])))
    best = table.loc[table["global/group/t2i"].idxmax()]
    cheapest = table.loc[table["total_s"].idxmin()]
    assert best["pareto"] and cheapest["pareto"]  # the best and the cheapest are always on the front
    with pytest.raises(KeyError, match="column 'train_hours' is not in the records"):
        tradeoff(load_records("calibration"), x="train_hours")


def test_run_against_run_names_what_differs_every_metrics_delta_and_overlays_the_logged_losses(tmp_path):
    from finelip_kit.experiments.records import new_record, write_record
    from finelip_kit.experiments.report import diff_runs

    def record(name, k, seed, history=()):
        return new_record(name, "ok", preset="synthetic-tiny", settings={"model.atrm_k": k, "train.seed": seed},
                          parameters={}, with_provenance=False, history=list(history),
                          metrics={"global/group/t2i": 60.0 + k + seed, "global/t2i/R@1": 20.0 + seed})

    results = tmp_path / "results"
    write_record(record("k4_s0", 4, 0, history=[{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.5}]), results)
    write_record(record("k8_s0", 8, 0), results)  # no history in the record: its run folder's log is read
    (results / "k8_s0").mkdir()
    (results / "k8_s0" / "metrics.jsonl").write_text('{"step": 1, "loss": 1.9}\n{"step": 2, "loss": 1.2}\n{"ste')
    write_record(record("k4_s1", 4, 1), results)
    write_record(record("k8_s1", 8, 1), results)
    frame = load_records(results)
    found = diff_runs(frame, "k4_s0", "k8_s0")
    assert found["settings"].to_dict("records") == [{"setting": "atrm_k", "a": "4", "b": "8"}]
    deltas = found["metrics"].set_index("metric")
    assert deltas.loc["global/group/t2i", "delta"] == 4.0 and deltas.loc["global/t2i/R@1", "delta"] == 0.0
    assert set(deltas["test"]) == {"none"}  # one run a side: no test
    assert found["curves"] == {"a": [(1, 2.0), (2, 1.5)], "b": [(1, 1.9), (2, 1.2)]}  # the torn last line dropped
    assert "the record" in found["curves_note"] and "k8_s0/metrics.jsonl" in found["curves_note"]
    groups = diff_runs(frame, {"atrm_k": 4}, {"atrm_k": 8})  # two settings: seeds paired
    row = groups["metrics"].set_index("metric").loc["global/group/t2i"]
    assert (row["a"], row["b"], row["delta"], row["test"]) == (64.5, 68.5, 4.0, "paired")
    with pytest.raises(KeyError, match="a 'k5_s0' is not a run of these records"):
        diff_runs(frame, "k5_s0", "k8_s0")
    done = subprocess.run([sys.executable, "-m", "finelip_kit.cli", "report", str(results), "--diff", "k4_s0", "k8_s0"],
                          capture_output=True, text=True)
    assert done.returncode == 0 and "k4_s0 (a) against k8_s0 (b)" in done.stdout and "atrm_k 4 8" in done.stdout
