"""The ablation explorer: an interactive view of a results folder (ipywidgets + plotly), seeds understood.

It opens on "what mattered?": every setting's paired delta against a baseline (the preset's
default unless you pick one) over the seeds both share, with its 95 % confidence interval and a
mark where that interval excludes 0 (``report.effects``), largest effect first. Then four panels:

- **every axis at once**: parallel coordinates over the varied settings and the chosen metrics
  (plotly ``parcoords``; brushing any axis filters the table under it), one line per setting with
  its metrics reduced over seeds (mean, min, max or last: ``parallel.setting_table``), log axes,
  only the settings that still differ;
- **one setting**: one metric against one setting (``x axis``; optional ``group by``) with
  confidence intervals over seeds, a warning when that axis pools settings that differ in other
  columns, and the plot's table;
- **trade-off**: the metric against a cost (``total_s``) or another metric, the Pareto front marked;
- **run against run**: two settings → what differs, every metric's paired delta, both loss curves.

Filters narrow every panel; Reload picks up records written since (a grid running beside the
notebook or on SLURM) and lists failed points with their error; Export writes the tables (CSV,
Markdown, LaTeX) and the figures (PNG, PDF) under the results folder's ``exports/``; Save view
keeps the controls (and the brushes) under ``exports/views/<name>.json``, ``view=<name>`` opens on it.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from .analysis import (SHIPPED_RECORDS, _sort_key, ablation_table, as_text, load_records, metric_columns, parameter_columns,
                       plot_ablation, plot_tradeoff)
from .parallel import REDUCERS, axes_of, brushed, constraint_ranges, parcoords_dimensions, plot_parallel, setting_table, shown
from .paths import check_name
from .report import diff_runs, effects, effects_caption, export_effects, setting_columns, tradeoff
from .shipped import in_project

DEFAULT = "(preset default)"
SHOWN_ROWS = 100  # the brushed table shows this many settings (Export writes them all)


def export_folder(records, frame) -> Path:
    """Where a view of ``records`` exports: ``<results folder>/exports`` for a folder of the user's;
    the project's ``ablations/exports/<name>`` for a record set shipped with the kit (its folder is
    part of the kit) or a frame that names no folder."""
    if isinstance(records, (str, Path)) and str(records) in SHIPPED_RECORDS:
        return in_project("ablations/exports") / str(records)
    folder = frame.attrs.get("folder")
    if not folder:
        return in_project("ablations/exports")
    shipped = {Path(path).resolve(): name for name, path in SHIPPED_RECORDS.items() if name != "demo"}
    if Path(folder) in shipped:
        return in_project("ablations/exports") / shipped[Path(folder)]
    return Path(folder) / "exports"


def _heading(text: str):
    import ipywidgets as widgets

    return widgets.HTML(f"<h4 style='margin:12px 0 2px'>{html.escape(text)}</h4>")


def _figure_widget():
    """An empty plotly FigureWidget, or None with the reason when plotly / anywidget are missing."""
    try:
        import plotly.graph_objects as go

        return go.FigureWidget(data=[go.Parcoords(dimensions=[])], layout={"height": 460, "margin": {"l": 80, "r": 80, "t": 130}}), ""
    except ImportError as error:  # the notebooks extra holds both
        return None, f"the interactive parallel plot needs plotly and anywidget ({error}): pip install 'finelip-kit[notebooks]'"


class AblationExplorer:
    """Interactive view of a results folder (ipywidgets): the effects table against a baseline
    (``effects``), parallel coordinates with brushing (``parallel``), ``metric`` against ``x`` with
    a grouping, a trade-off scatter, a run-vs-run diff; filters, Reload, Export and saved views.

    ``AblationExplorer("ablations/runs/paper_ablations")``, ``AblationExplorer("calibration")`` or
    ``AblationExplorer(frame)``; ``export_dir`` overrides where Export writes (``export_folder``);
    ``baseline`` (``{"atrm_k": 16}``) is what *compare with* starts on (default: the preset's default);
    ``view`` a saved view's name (``exports/views/<name>.json``) or a dict (``explorer.view()``).
    """

    def __init__(self, records, export_dir: str | Path | None = None, baseline: dict | None = None,
                 view: str | dict | None = None):
        import ipywidgets as widgets

        self.source, self.default_baseline = records, baseline
        self.all_records = load_records(records) if isinstance(records, (str, Path)) else records
        self.frame = self._ok(self.all_records)
        if self.frame.empty:
            raise ValueError(f"no successful records in {records!r}; run a grid point first")
        self.export_dir = Path(export_dir) if export_dir is not None else export_folder(records, self.all_records)
        if export_dir is not None and not self.export_dir.is_absolute():
            self.export_dir = in_project(self.export_dir)  # from the project root wherever the kernel starts
        params = parameter_columns(self.frame) or ["seed"]
        metrics = metric_columns(self.frame)
        first = "global/group/t2i" if "global/group/t2i" in metrics else metrics[0]
        wide = widgets.Layout(width="auto")
        label = {"description_width": "initial"}
        # the top row: what every panel reads
        self.metric = widgets.Dropdown(options=metrics, value=first, description="metric")
        self.effects_baseline = widgets.Dropdown(options=[DEFAULT], value=DEFAULT, description="compare with", layout=wide)
        self.holm = widgets.Checkbox(value=False, description="Holm correction")
        self.filters = {
            name: widgets.SelectMultiple(options=sorted(as_text(self.frame[name]).unique(), key=_sort_key),
                                         description=name, rows=min(5, self.frame[name].nunique()), layout=wide, style=label)
            for name in params
        }
        self.reload = widgets.Button(description="Reload", icon="refresh", tooltip="read records written since")
        self.export = widgets.Button(description="Export", icon="download", tooltip=f"write under {self.export_dir}")
        self.view_name = widgets.Text(placeholder="view name", layout=widgets.Layout(width="140px"))
        self.save_view_button = widgets.Button(description="Save view", icon="bookmark",
                                               tooltip=f"keep the controls under {self.export_dir / 'views'}")
        self.status, self.failed = widgets.HTML(), widgets.HTML()
        self.effects_output = widgets.Output()
        # every axis at once
        self.metrics = widgets.SelectMultiple(options=metrics, value=[first], description="metrics", rows=min(6, len(metrics)),
                                              layout=wide, style=label)
        self.reduce = widgets.Dropdown(options=REDUCERS, value="mean", description="over seeds", style=label, layout=wide)
        self.log_axes = widgets.SelectMultiple(options=[], description="log axes", rows=4, layout=wide, style=label)
        self.only_differing = widgets.Checkbox(value=True, description="only settings that differ", style=label)
        self.parallel, self.parallel_note = _figure_widget()
        self.brush_status, self.brush_output = widgets.HTML(), widgets.Output()
        # one setting
        self.x = widgets.Dropdown(options=params, value=params[0], description="x axis")
        self.group = widgets.Dropdown(options=["(none)", *params], value="(none)", description="group by")
        self.baseline = widgets.Dropdown(options=["(none)"], value="(none)", description="baseline")
        self.warning, self.plot_output, self.table_output = widgets.HTML(), widgets.Output(), widgets.Output()
        # trade-off and run against run
        self.against = widgets.Dropdown(options=[], description="against", layout=wide)
        self.tradeoff_output = widgets.Output()
        self.diff_a = widgets.Dropdown(options=[], description="a", layout=wide)
        self.diff_b = widgets.Dropdown(options=[], description="b", layout=wide)
        self.diff_output = widgets.Output()

        self.figure = self.table = self.effects = self.tradeoff_figure = self.tradeoff_table = self.diff = None
        self.settings_table, self.axes, self.brushes, self.brushed_table = None, [], {}, None
        self._quiet = False  # True while the explorer itself sets controls (one refresh, not one per control)
        self._observe(list(self.filters.values()), self.refresh)
        self._observe([self.metric], self._metric_changed)
        self._observe([self.effects_baseline, self.holm], self._update_effects)
        self._observe([self.metrics, self.reduce, self.log_axes, self.only_differing], self._update_parallel)
        self._observe([self.x, self.group, self.baseline], self._update_plot)
        self._observe([self.against], self._update_tradeoff)
        self._observe([self.diff_a, self.diff_b], self._update_diff)
        if self.parallel is not None:
            self.parallel.data[0].on_change(self._brushed, "dimensions")
        self.reload.on_click(lambda _: self.reload_records())
        self.export.on_click(lambda _: self.save())
        self.save_view_button.on_click(lambda _: self.save_view(self.view_name.value))
        wrap = widgets.Layout(flex_flow="row wrap")
        self.widget = widgets.VBox([
            widgets.HBox([self.metric, self.effects_baseline, self.holm], layout=wrap),
            widgets.HBox(list(self.filters.values()), layout=wrap),
            widgets.HBox([self.reload, self.export, self.view_name, self.save_view_button, self.status], layout=wrap),
            self.failed, self.effects_output,
            _heading("Every axis at once — brush an axis to filter the table"),
            widgets.HBox([self.metrics, self.reduce, self.log_axes, self.only_differing], layout=wrap),
            self.parallel if self.parallel is not None else widgets.HTML(f"<i>{html.escape(self.parallel_note)}</i>"),
            self.brush_status, self.brush_output,
            _heading("One setting"),
            widgets.HBox([self.x, self.group, self.baseline], layout=wrap),
            self.warning, self.plot_output, self.table_output,
            _heading("Trade-off"), self.against, self.tradeoff_output,
            _heading("Run against run"), widgets.HBox([self.diff_a, self.diff_b], layout=wrap), self.diff_output,
        ])
        for control, name in ((self.effects_output, "effects"), (self.effects_baseline, "compare-with"),
                              (self.brush_status, "brush-status"), (self.brush_output, "settings-table"),
                              (self.status, "status")):
            control.add_class(f"finelip-{name}")  # what the browser test (and a user's CSS) finds them by
        if self.parallel is not None:
            self.parallel.add_class("finelip-parallel")
        self._update_failed()
        if isinstance(view, str):
            view = self.read_view(view)
        if view:
            self.apply_view(view)
        else:
            self.refresh()

    # ------------------------------------------------------------------ plumbing
    def _observe(self, controls, update) -> None:
        for control in controls:
            control.observe(lambda _: None if self._quiet else update(), names="value")

    def _set(self, control, options=None, value=None) -> None:
        """Set a control's options (keeping its value where it still is one) without a refresh."""
        quiet, self._quiet = self._quiet, True
        try:
            if options is not None and list(control.options) != list(options):
                current = control.value
                control.options = options
                if isinstance(current, tuple):
                    control.value = tuple(v for v in current if v in options)
                else:  # a dropdown keeps its value where it still is an option, else takes the first
                    control.value = current if current in options else (options[0] if len(options) else None)
            if value is not None:
                control.value = value
        finally:
            self._quiet = quiet

    @staticmethod
    def _ok(frame):
        return frame[frame["status"] == "ok"].reset_index(drop=True) if "status" in frame else frame

    def reload_records(self) -> int:
        """Read the results folder again (records a running grid wrote since); returns how many are new."""
        if not isinstance(self.source, (str, Path)):
            self.status.value = "<i>opened on a frame: nothing to reload</i>"
            return 0
        before = set(self.all_records["path"]) if "path" in self.all_records else set()
        self.all_records = load_records(self.source)
        self.frame = self._ok(self.all_records)
        for name, control in self.filters.items():
            if name in self.frame:
                self._set(control, sorted(as_text(self.frame[name]).unique(), key=_sort_key))
        self._update_failed()
        self.refresh()
        new = len(set(self.all_records["path"]) - before) if "path" in self.all_records else 0
        self.status.value += f"; {new} new since the last read"
        return new

    def _update_failed(self) -> None:
        frame = self.all_records
        failed = frame[frame["status"] != "ok"] if "status" in frame else frame.iloc[0:0]
        self.failed_points = {r.run_name: str(r.error).splitlines()[0] if r.error else "" for r in failed.itertuples()}
        self.failed.value = "" if not self.failed_points else (
            f"<b>{len(self.failed_points)} failed point(s)</b>: " + "; ".join(
                f"{html.escape(name)} (<code>{html.escape(error[:120])}</code>)" for name, error in self.failed_points.items()))

    def selection(self):
        """The records that pass the filters (an empty filter passes everything)."""
        frame = self.frame
        for name, control in self.filters.items():
            if control.value:
                frame = frame[as_text(frame[name]).isin(control.value)]
        return frame

    # ------------------------------------------------------------------ what mattered
    def _effects(self, frame):
        """The effects table of ``frame`` against the chosen setting (None when there is none to compare)."""
        try:
            table = effects(frame, self.metric.value, correction="holm" if self.holm.value else None,
                            baseline=self.default_baseline if self.effects_baseline.value == DEFAULT else self._chosen())
        except (ValueError, KeyError) as error:  # no preset default, or the chosen setting filtered out
            self.effects_note = str(error)
            return None
        names = table.attrs["settings"]
        columns = [(f"{n}=" + table[f"={n}"].astype(str)).tolist() for n in names]
        labels = [", ".join(parts) for parts in zip(*columns)]
        options = [DEFAULT, *sorted(labels)]
        current = self.effects_baseline.value
        self._set(self.effects_baseline, options, value=current if current in options else DEFAULT)
        self.effects_note = ""
        return table

    def _chosen(self) -> dict[str, str]:
        return dict(part.split("=", 1) for part in self.effects_baseline.value.split(", "))

    def refresh(self) -> None:
        """Every panel again (the records or the filters changed)."""
        frame = self.selection()
        for output in (self.effects_output, self.brush_output, self.plot_output, self.table_output,
                       self.tradeoff_output, self.diff_output):
            output.clear_output(wait=True)
        if frame.empty:
            self.status.value = "<i>no records pass the filters</i>"
            return
        self.status.value = f"{len(frame)} record(s)"
        self._update_effects()
        self._update_parallel()
        self._update_plot()
        self._update_tradeoff()
        self._update_diff()

    def _metric_changed(self) -> None:
        """What reads the metric (the diff shows every metric: it stays)."""
        self._update_effects()
        self._update_parallel()
        self._update_plot()
        self._update_tradeoff()

    def _update_effects(self) -> None:
        from IPython.display import HTML, display

        frame = self.selection()
        self.effects_output.clear_output(wait=True)
        if frame.empty:
            return
        self.effects = self._effects(frame)
        with self.effects_output:
            if self.effects is not None:
                against = ("the preset default" if self.effects_baseline.value == DEFAULT and self.default_baseline is None
                           else ", ".join(f"{k}={v}" for k, v in self.effects.attrs["baseline"].items()))
                display(HTML(f"<b>What mattered</b> against {html.escape(against)} — "
                             f"{html.escape(effects_caption(self.effects))}"))
                display(highlight_effects(self.effects))
            else:
                display(HTML(f"<i>no effects table: {html.escape(self.effects_note)}</i>"))

    # ------------------------------------------------------------------ every axis at once
    def _update_parallel(self) -> None:
        """The settings table (metrics reduced over seeds) and the parallel axes over it; brushes cleared."""
        frame = self.selection()
        if frame.empty:
            return
        metrics = list(self.metrics.value) or [self.metric.value]
        self.settings_table = setting_table(frame, metrics, self.reduce.value)
        names = self.settings_table.attrs["settings"] + metrics
        plain = axes_of(self.settings_table, names)
        positive = [a.name for a in plain if a.kind == "numeric" and all(v > 0 for v in a.values)]
        self._set(self.log_axes, positive)
        self.axes = axes_of(self.settings_table, names, log=self.log_axes.value)
        self.colour = self.metric.value if self.metric.value in metrics else metrics[0]
        self.brushes = {}
        if self.parallel is not None:
            quiet, self._quiet = self._quiet, True  # the new axes carry no brushes: no callback wanted
            try:
                with self.parallel.batch_update():
                    self.parallel.data[0].dimensions = parcoords_dimensions(self.axes)
                    self.parallel.data[0].labelangle = -25  # long setting names stay apart
                    self.parallel.layout.width = max(900, 80 * len(self.axes))  # plotly's own default is 700 px
                    colours = next(a for a in self.axes if a.name == self.colour).values
                    self.parallel.data[0].line = {"color": list(colours), "colorscale": "Viridis", "showscale": True,
                                                  "colorbar": {"title": {"text": self.colour}}}
            finally:
                self._quiet = quiet
        labels = list(self.settings_table["setting"])
        self._set(self.diff_a, labels)
        self._set(self.diff_b, labels)
        self._show_brushed()

    def _brushed(self, trace, dimensions) -> None:
        """plotly's callback when an axis is brushed in the browser (or a brush is set from Python)."""
        if self._quiet:
            return
        self.brushes = {name: list(r) if r is not None else None for name, r in constraint_ranges(dimensions).items()}
        self._show_brushed()

    def brush(self, ranges: dict) -> None:
        """Brush axes from Python (what dragging on them in the browser does): ``{"atrm_k": [4, 16]}``,
        in each axis's drawn units (log10 on a log axis); ``{}`` clears every brush."""
        unknown = [name for name in ranges if name not in {a.name for a in self.axes}]
        if unknown:
            raise KeyError(f"no parallel axis {unknown}; axes: {[a.name for a in self.axes]}")
        if self.parallel is None:
            self.brushes = dict(ranges)
            self._show_brushed()
            return
        with self.parallel.batch_update():
            for dimension in self.parallel.data[0].dimensions:
                dimension.constraintrange = ranges.get(dimension.label)

    def _show_brushed(self) -> None:
        from IPython.display import display

        keep = brushed(self.axes, self.brushes) if self.axes else []
        table = self.settings_table[keep] if len(keep) else self.settings_table
        self.brushed_table = shown(table, self.only_differing.value)
        total = len(self.settings_table)
        what = f"{len(table)} of {total} setting(s)" + (
            f" pass the brushes on {', '.join(self.brushes)}" if self.brushes else "")
        note = self.settings_table.attrs.get("note")
        hidden = self.brushed_table.attrs.get("hidden", [])
        self.brush_status.value = (f"<b>{html.escape(what)}</b>; metrics: {self.reduce.value} over seeds"
                                   + (f"; {html.escape(note)}" if note else "")
                                   + (f"; {len(hidden)} setting(s) that take one value here hidden" if hidden else "")
                                   + (f"; the first {SHOWN_ROWS} shown (Export writes all)" if len(table) > SHOWN_ROWS else ""))
        self.brush_output.clear_output(wait=True)
        with self.brush_output:
            display(highlight_settings(self.brushed_table.head(SHOWN_ROWS)))

    # ------------------------------------------------------------------ one setting
    def _update_plot(self) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import display

        frame = self.selection()
        if frame.empty:
            return
        by = [self.x.value] + ([self.group.value] if self.group.value != "(none)" else [])
        settings = ["(none)"] + [" | ".join(str(v) for v in key) for key in as_text(frame[by]).drop_duplicates().values]
        self._set(self.baseline, settings)
        baseline = None if self.baseline.value == "(none)" else dict(zip(by, self.baseline.value.split(" | ")))
        if self.figure is not None:
            plt.close(self.figure)
        self.figure = plot_ablation(frame, self.metric.value, self.x.value,
                                    None if self.group.value == "(none)" else self.group.value)
        self.table = ablation_table(frame, self.metric.value, by=by, baseline=baseline)
        pooled = self.table.attrs.get("pooled", [])
        self.warning.value = "" if not pooled else (
            f"<span style='color:#a50e0e'>⚠ {html.escape(', '.join(by))} pools settings that differ in "
            f"{html.escape(', '.join(pooled))}: a point's n counts runs of different settings, not seeds. Filter "
            f"them, group by one, or read the tables above (one row per setting).</span>")
        for output in (self.plot_output, self.table_output):
            output.clear_output(wait=True)
        with self.plot_output:
            display(self.figure)
        with self.table_output:
            display(highlight(self.table))
        plt.close(self.figure)

    # ------------------------------------------------------------------ trade-off
    def _update_tradeoff(self) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import HTML, display

        frame = self.selection()
        if frame.empty:
            return
        costs = [c for c in ("total_s",) if c in frame and frame[c].notna().all()]
        options = costs + [m for m in metric_columns(frame) if m != self.metric.value and frame[m].notna().all()]
        self._set(self.against, options)
        self.tradeoff_output.clear_output(wait=True)
        if self.against.value is None:
            self.tradeoff_table = None
            with self.tradeoff_output:
                display(HTML("<i>no cost or second metric that every record has</i>"))
            return
        x = self.against.value
        self.tradeoff_table = tradeoff(frame, x=x, y=self.metric.value, x_better="lower" if x in costs else "higher")
        if self.tradeoff_figure is not None:
            plt.close(self.tradeoff_figure)
        self.tradeoff_figure = plot_tradeoff(self.tradeoff_table, x=x, y=self.metric.value)
        with self.tradeoff_output:
            display(self.tradeoff_figure)
        plt.close(self.tradeoff_figure)

    # ------------------------------------------------------------------ run against run
    def _setting(self, label: str) -> dict[str, str]:
        row = self.settings_table[self.settings_table["setting"] == label].iloc[0]
        return {name: row[name] for name in self.settings_table.attrs["settings"]}

    def _update_diff(self) -> None:
        import matplotlib.pyplot as plt
        from IPython.display import HTML, display

        self.diff_output.clear_output(wait=True)
        if self.settings_table is None or len(self.settings_table) < 2 or not setting_columns(self.selection()):
            self.diff = None
            with self.diff_output:
                display(HTML("<i>one setting only: nothing to compare</i>"))
            return
        labels = list(self.settings_table["setting"])
        if self.diff_a.value is None or self.diff_a.value == self.diff_b.value:
            self._set(self.diff_a, value=labels[0])
            self._set(self.diff_b, value=labels[1])
        self.diff = diff_runs(self.selection(), self._setting(self.diff_a.value), self._setting(self.diff_b.value))
        metrics = self.diff["metrics"]
        if not metrics.empty:
            metrics = metrics.reindex(metrics["delta"].abs().sort_values(ascending=False).index)
        with self.diff_output:
            display(HTML("<b>b − a</b>: settings that differ"))
            display(self.diff["settings"].style.hide(axis="index"))
            display(HTML(f"every metric's paired delta (largest first; {len(metrics)} metric(s))"))
            display(metrics.style.format({c: "{:.2f}" for c in ("a", "b")} | {c: "{:+.2f}" for c in
                                         ("delta", "delta_low", "delta_high")} | {"p": "{:.3g}"}, na_rep="–")
                    .hide(axis="index"))
            if self.diff["curves"]:
                figure, ax = plt.subplots(figsize=(6, 3))
                for side, curve in self.diff["curves"].items():
                    steps, losses = zip(*curve)
                    ax.plot(steps, losses, label=f"{side}: {self.diff_a.value if side == 'a' else self.diff_b.value}"[:60])
                ax.set_xlabel("step")
                ax.set_ylabel("loss")
                ax.legend(fontsize=7)
                ax.grid(alpha=0.3)
                display(figure)
                plt.close(figure)
            display(HTML(f"<i>{html.escape(self.diff['curves_note'])}</i>"))

    # ------------------------------------------------------------------ export and views
    def save(self) -> tuple[Path, Path]:
        """Write the tables and the figures under ``export_dir``: the one-setting plot (PNG, PDF) and
        its table (CSV); the effects table (CSV, Markdown, LaTeX); the brushed settings table (CSV)
        and the parallel coordinates as an image (PNG, PDF; brushed-out settings faint); the
        trade-off figure (PNG, PDF). Returns the plot's PNG and its CSV."""
        import matplotlib.pyplot as plt

        self.export_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{self.metric.value.replace('/', '_')}_by_{self.x.value}"
        png, pdf, csv = (self.export_dir / f"{stem}.{suffix}" for suffix in ("png", "pdf", "csv"))
        self.figure.savefig(png, dpi=150, bbox_inches="tight")
        self.figure.savefig(pdf, bbox_inches="tight")
        self.table.to_csv(csv)
        written = [png, pdf, csv] + (export_effects(self.effects, self.export_dir) if self.effects is not None else [])
        if self.settings_table is not None:
            settings = self.export_dir / "settings.csv"
            self.brushed_table.to_csv(settings, index=False)
            figure = plot_parallel(self.axes, self.colour, keep=brushed(self.axes, self.brushes))
            for suffix in ("png", "pdf"):
                figure.savefig(self.export_dir / f"parallel.{suffix}", dpi=150, bbox_inches="tight")
            plt.close(figure)
            written += [settings, self.export_dir / "parallel.png", self.export_dir / "parallel.pdf"]
        if self.tradeoff_figure is not None:
            for suffix in ("png", "pdf"):
                path = self.export_dir / f"tradeoff_{self.against.value.replace('/', '_')}.{suffix}"
                self.tradeoff_figure.savefig(path, dpi=150, bbox_inches="tight")
                written.append(path)
        self.status.value = f"wrote {len(written)} files under {self.export_dir}"
        return png, csv

    def view(self) -> dict:
        """The controls as a dict (what Save view writes; ``apply_view`` / ``view=`` restore it)."""
        return {"metric": self.metric.value, "compare_with": self.effects_baseline.value, "holm": self.holm.value,
                "filters": {name: list(c.value) for name, c in self.filters.items() if c.value},
                "metrics": list(self.metrics.value), "reduce": self.reduce.value, "log_axes": list(self.log_axes.value),
                "only_differing": self.only_differing.value, "brushes": self.brushes, "x": self.x.value,
                "group": self.group.value, "against": self.against.value, "diff": [self.diff_a.value, self.diff_b.value]}

    def apply_view(self, view: dict) -> None:
        """Set the controls from ``view()``'s dict; a value these records do not have is left at its
        current value and said in the status line."""
        skipped = []

        def put(control, value, name):
            options = list(control.options)
            values = value if isinstance(value, (list, tuple)) else [value]
            if all(v in options for v in values):
                self._set(control, value=tuple(values) if isinstance(control.value, tuple) else value)
            elif value not in (None, [], ()):
                skipped.append(f"{name}={value!r}")

        self._quiet = True
        try:
            for name, control in (("metric", self.metric), ("x", self.x), ("group", self.group),
                                  ("metrics", self.metrics), ("reduce", self.reduce)):
                if name in view:
                    put(control, view[name], name)
            for name, values in view.get("filters", {}).items():
                if name in self.filters:
                    put(self.filters[name], [str(v) for v in values], f"filter {name}")
                else:
                    skipped.append(f"filter {name}")
            self.holm.value = bool(view.get("holm", False))
            self.only_differing.value = bool(view.get("only_differing", True))
        finally:
            self._quiet = False
        self.refresh()  # the option lists (baselines, log axes, diff sides) follow the records
        self._quiet = True
        try:
            put(self.effects_baseline, view.get("compare_with", DEFAULT), "compare_with")
            put(self.log_axes, view.get("log_axes", []), "log_axes")
            put(self.against, view.get("against"), "against")
            for control, value in zip((self.diff_a, self.diff_b), view.get("diff", [None, None])):
                put(control, value, "diff")
        finally:
            self._quiet = False
        self.refresh()
        brushes = {k: v for k, v in (view.get("brushes") or {}).items() if k in {a.name for a in self.axes}}
        skipped += [f"brush {k}" for k in view.get("brushes") or {} if k not in brushes]
        if brushes:
            self.brush(brushes)
        if skipped:
            self.status.value += f"; the view's {', '.join(skipped)} are not in these records (left as they were)"

    def _view_path(self, name: str) -> Path:
        return self.export_dir / "views" / f"{check_name(name, 'view name')}.json"

    def save_view(self, name: str) -> Path:
        """Keep the controls under ``<export_dir>/views/<name>.json`` (a single safe file name)."""
        if not name:
            self.status.value = "<i>name the view first (the box beside Save view)</i>"
            raise ValueError("a saved view needs a name: explorer.save_view('k-sweep')")
        path = self._view_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.view(), indent=2) + "\n")
        self.status.value = f"view saved: {path}"
        return path

    def read_view(self, name: str) -> dict:
        path = self._view_path(name)
        if not path.is_file():
            saved = sorted(p.stem for p in path.parent.glob("*.json")) if path.parent.is_dir() else []
            raise FileNotFoundError(f"no saved view {name!r} at {path}; saved views: {saved}")
        return json.loads(path.read_text())

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def highlight(table):
    """The ablation table styled: best mean in bold, deltas coloured."""
    style = table.style.format({"mean": "{:.1f}", "std": "{:.1f}", "delta": "{:+.1f}"}).highlight_max(
        subset=["mean"], props="font-weight: bold; background-color: #e6f4ea")
    if "delta" in table:
        style = style.map(lambda v: "color: #137333" if v > 0 else ("color: #a50e0e" if v < 0 else ""), subset=["delta"])
    return style


def highlight_settings(table):
    """The settings table (``parallel.setting_table``) styled: metrics to one decimal, each
    metric's best in bold."""
    metrics = [m for m in table.attrs.get("metrics", []) if m in table]
    style = table.style.format({m: "{:.1f}" for m in metrics}, na_rep="–").hide(axis="index")
    return style.highlight_max(subset=metrics, props="font-weight: bold; background-color: #e6f4ea") if metrics else style


def highlight_effects(table):
    """The effects table as shown: the setting first, then n, mean and its CI, the delta and its
    CI, p, the test and the mark; significant rows coloured by the sign of their delta."""
    shown = ["setting", "n", "mean", "ci_low", "ci_high", "delta", "delta_low", "delta_high",
             "p_holm" if "p_holm" in table else "p", "test", "mark"]
    numbers = {c: "{:.1f}" for c in ("mean", "ci_low", "ci_high")}
    numbers.update({c: "{:+.1f}" for c in ("delta", "delta_low", "delta_high")})
    numbers.update({"p": "{:.3g}", "p_holm": "{:.3g}"})
    style = table[shown].style.format(numbers, na_rep="–").hide(axis="index")

    def colour(row):
        tone = "" if row["mark"] != "*" else ("color: #137333" if row["delta"] > 0 else "color: #a50e0e")
        return [tone] * len(row)

    return style.apply(colour, axis=1)
