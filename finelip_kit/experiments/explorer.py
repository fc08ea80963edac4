"""The ablation explorer: an interactive view of a results folder (ipywidgets), seeds understood.

It opens on "what mattered?": every setting's paired delta against a baseline (the preset's
default unless you pick one) over the seeds both share, with its 95 % confidence interval and a
mark where that interval excludes 0 (``report.effects``), largest effect first. Below it, one
metric against one setting (``x axis``; optional ``group by``) with confidence intervals over
seeds, a warning when that axis pools settings that differ in other columns, and the plot's
table. Filters narrow both; Reload picks up records written since (a grid running beside the
notebook or on SLURM) and lists failed points with their error; Export writes the effects table
(CSV, Markdown, LaTeX) and the figure (PNG, PDF) under the results folder's ``exports/``.
"""

from __future__ import annotations

from pathlib import Path

from .analysis import SHIPPED_RECORDS, _sort_key, ablation_table, as_text, load_records, metric_columns, parameter_columns, plot_ablation
from .report import effects, export_effects, format_effects
from .shipped import in_project

DEFAULT = "(preset default)"


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


class AblationExplorer:
    """Interactive view of a results folder (ipywidgets): the effects table against a baseline
    (``effects``), then ``metric`` against ``x`` with a grouping and filters, the plot's table
    (best first, with deltas against a pinned setting), Reload, and Export.

    ``AblationExplorer("ablations/runs/paper_ablations")``, ``AblationExplorer("calibration")`` or
    ``AblationExplorer(frame)``; ``export_dir`` overrides where Export writes (``export_folder``);
    ``baseline`` (``{"atrm_k": 16}``) is what *compare with* starts on (default: the preset's default).
    """

    def __init__(self, records, export_dir: str | Path | None = None, baseline: dict | None = None):
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
        self.metric = widgets.Dropdown(options=metrics, value="global/group/t2i" if "global/group/t2i" in metrics else metrics[0],
                                       description="metric")
        self.effects_baseline = widgets.Dropdown(options=[DEFAULT], value=DEFAULT, description="compare with",
                                                 layout=widgets.Layout(width="auto"))
        self.holm = widgets.Checkbox(value=False, description="Holm correction")
        self.x = widgets.Dropdown(options=params, value=params[0], description="x axis")
        self.group = widgets.Dropdown(options=["(none)", *params], value="(none)", description="group by")
        self.filters = {
            name: widgets.SelectMultiple(options=sorted(as_text(self.frame[name]).unique(), key=_sort_key),
                                         description=name, rows=min(5, self.frame[name].nunique()),
                                         layout=widgets.Layout(width="auto"), style={"description_width": "initial"})
            for name in params
        }
        self.baseline = widgets.Dropdown(options=["(none)"], value="(none)", description="baseline")
        self.reload = widgets.Button(description="Reload", icon="refresh", tooltip="read records written since")
        self.export = widgets.Button(description="Export", icon="download", tooltip=f"write under {self.export_dir}")
        self.status, self.warning, self.failed = widgets.HTML(), widgets.HTML(), widgets.HTML()
        self.effects_output, self.plot_output, self.table_output = widgets.Output(), widgets.Output(), widgets.Output()
        for control in (self.metric, self.x, self.group, self.baseline, self.effects_baseline, self.holm,
                        *self.filters.values()):
            control.observe(lambda _: self.refresh(), names="value")
        self.reload.on_click(lambda _: self.reload_records())
        self.export.on_click(lambda _: self.save())
        wrap = widgets.Layout(flex_flow="row wrap")
        self.widget = widgets.VBox([
            widgets.HBox([self.metric, self.effects_baseline, self.holm], layout=wrap),
            widgets.HBox(list(self.filters.values()), layout=wrap),
            widgets.HBox([self.reload, self.export, self.status], layout=wrap),
            self.failed, self.effects_output,
            widgets.HBox([self.x, self.group, self.baseline], layout=wrap),
            self.warning, self.plot_output, self.table_output,
        ])
        self.figure, self.table, self.effects = None, None, None
        self._update_failed()
        self.refresh()

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
                control.options = sorted(as_text(self.frame[name]).unique(), key=_sort_key)
        self._update_failed()
        self.refresh()
        new = len(set(self.all_records["path"]) - before) if "path" in self.all_records else 0
        self.status.value += f"; {new} new since the last read"
        return new

    def _update_failed(self) -> None:
        import html

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

    def _effects(self, frame):
        """The effects table of ``frame`` against the chosen setting (None when there is none to compare)."""
        try:
            table = effects(frame, self.metric.value, correction="holm" if self.holm.value else None,
                            baseline=self.default_baseline if self.effects_baseline.value == DEFAULT else self._chosen())
        except (ValueError, KeyError) as error:  # no preset default, or the chosen setting filtered out
            self.effects_note = str(error)
            return None
        names = table.attrs["settings"]
        labels = [", ".join(f"{n}={row[f'={n}']}" for n in names) for _, row in table.iterrows()]
        options = [DEFAULT, *sorted(labels)]
        if list(self.effects_baseline.options) != options:
            current = self.effects_baseline.value
            with self.effects_baseline.hold_trait_notifications():
                self.effects_baseline.options = options
                self.effects_baseline.value = current if current in options else DEFAULT
        self.effects_note = ""
        return table

    def _chosen(self) -> dict[str, str]:
        return dict(part.split("=", 1) for part in self.effects_baseline.value.split(", "))

    def refresh(self) -> None:
        import html

        import matplotlib.pyplot as plt

        frame = self.selection()
        by = [self.x.value] + ([self.group.value] if self.group.value != "(none)" else [])
        settings = ["(none)"] + [" | ".join(str(v) for v in key) for key in as_text(frame[by]).drop_duplicates().values]
        if list(self.baseline.options) != settings:
            current = self.baseline.value
            self.baseline.options = settings
            self.baseline.value = current if current in settings else "(none)"
        baseline = None if self.baseline.value == "(none)" else dict(zip(by, self.baseline.value.split(" | ")))
        for output in (self.effects_output, self.plot_output, self.table_output):
            output.clear_output(wait=True)
        if frame.empty:
            self.status.value = "<i>no records pass the filters</i>"
            return
        if self.figure is not None:
            plt.close(self.figure)
        self.effects = self._effects(frame)
        self.figure = plot_ablation(frame, self.metric.value, self.x.value,
                                    None if self.group.value == "(none)" else self.group.value)
        self.table = ablation_table(frame, self.metric.value, by=by, baseline=baseline)
        pooled = self.table.attrs.get("pooled", [])
        self.warning.value = "" if not pooled else (
            f"<span style='color:#a50e0e'>⚠ {html.escape(', '.join(by))} pools settings that differ in "
            f"{html.escape(', '.join(pooled))}: a point's n counts runs of different settings, not seeds. Filter "
            f"them, group by one, or read the table above (one row per setting).</span>")
        self.status.value = f"{len(frame)} record(s)"
        from IPython.display import HTML, display

        with self.effects_output:
            if self.effects is not None:
                display(HTML(f"<b>What mattered</b> — {html.escape(format_effects(self.effects).splitlines()[0])}"))
                display(highlight_effects(self.effects))
            else:
                display(HTML(f"<i>no effects table: {html.escape(self.effects_note)}</i>"))
        with self.plot_output:
            display(self.figure)
        with self.table_output:
            display(highlight(self.table))
        plt.close(self.figure)

    def save(self) -> tuple[Path, Path]:
        """Write the current plot (PNG and PDF) and its table (CSV), and the effects table (CSV,
        Markdown, LaTeX) to ``export_dir``; returns the PNG and the plot's CSV."""
        self.export_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{self.metric.value.replace('/', '_')}_by_{self.x.value}"
        png, pdf, csv = (self.export_dir / f"{stem}.{suffix}" for suffix in ("png", "pdf", "csv"))
        self.figure.savefig(png, dpi=150, bbox_inches="tight")
        self.figure.savefig(pdf, bbox_inches="tight")
        self.table.to_csv(csv)
        written = [png, pdf, csv] + (export_effects(self.effects, self.export_dir) if self.effects is not None else [])
        self.status.value = f"wrote {len(written)} files under {self.export_dir}"
        return png, csv

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
