"""The ablation explorer: an interactive view of a results folder (ipywidgets)."""

from __future__ import annotations

from pathlib import Path

from .shipped import in_project
from .analysis import _sort_key, as_text, ablation_table, load_records, metric_columns, parameter_columns, plot_ablation


class AblationExplorer:
    """Interactive view of a results folder (ipywidgets): choose the metric, the x-axis
    parameter, a grouping parameter and filters; the plot and the table (best first, with
    deltas against a pinned baseline) update live; Export writes PNG and CSV.

    ``AblationExplorer("ablations/runs/paper_ablations")`` or ``AblationExplorer(frame)``.
    """

    def __init__(self, records, export_dir: str | Path = "ablations/exports"):
        import ipywidgets as widgets

        self.frame = load_records(records, status="ok") if isinstance(records, (str, Path)) else records
        if self.frame.empty:
            raise ValueError(f"no successful records in {records!r}; run a grid point first")
        self.export_dir = in_project(export_dir)  # the project's ablations/exports wherever the kernel starts
        params = parameter_columns(self.frame) or ["seed"]
        metrics = metric_columns(self.frame)
        self.metric = widgets.Dropdown(options=metrics, value="global/group/t2i" if "global/group/t2i" in metrics else metrics[0],
                                       description="metric")
        self.x = widgets.Dropdown(options=params, value=params[0], description="x axis")
        self.group = widgets.Dropdown(options=["(none)", *params], value="(none)", description="group by")
        self.filters = {
            name: widgets.SelectMultiple(options=sorted(as_text(self.frame[name]).unique(), key=_sort_key),
                                         description=name, rows=min(5, self.frame[name].nunique()))
            for name in params
        }
        self.baseline = widgets.Dropdown(options=["(none)"], value="(none)", description="baseline")
        self.export = widgets.Button(description="Export PNG + CSV", icon="download")
        self.status = widgets.HTML()
        self.plot_output, self.table_output = widgets.Output(), widgets.Output()
        for control in (self.metric, self.x, self.group, self.baseline, *self.filters.values()):
            control.observe(lambda _: self.refresh(), names="value")
        self.export.on_click(lambda _: self.save())
        self.widget = widgets.VBox([
            widgets.HBox([self.metric, self.x, self.group, self.baseline]),
            widgets.HBox(list(self.filters.values())),
            widgets.HBox([self.export, self.status]),
            self.plot_output, self.table_output,
        ])
        self.figure, self.table = None, None
        self.refresh()

    def selection(self):
        """The records that pass the filters (an empty filter passes everything)."""
        frame = self.frame
        for name, control in self.filters.items():
            if control.value:
                frame = frame[as_text(frame[name]).isin(control.value)]
        return frame

    def refresh(self) -> None:
        import matplotlib.pyplot as plt

        frame = self.selection()
        by = [self.x.value] + ([self.group.value] if self.group.value != "(none)" else [])
        settings = ["(none)"] + [" | ".join(str(v) for v in key) for key in as_text(frame[by]).drop_duplicates().values]
        if list(self.baseline.options) != settings:
            current = self.baseline.value
            self.baseline.options = settings
            self.baseline.value = current if current in settings else "(none)"
        baseline = None if self.baseline.value == "(none)" else dict(zip(by, self.baseline.value.split(" | ")))
        self.plot_output.clear_output(wait=True)
        self.table_output.clear_output(wait=True)
        if frame.empty:
            self.status.value = "<i>no records pass the filters</i>"
            return
        if self.figure is not None:
            plt.close(self.figure)
        self.figure = plot_ablation(frame, self.metric.value, self.x.value,
                                    None if self.group.value == "(none)" else self.group.value)
        self.table = ablation_table(frame, self.metric.value, by=by, baseline=baseline)
        self.status.value = f"{len(frame)} record(s)"
        with self.plot_output:
            from IPython.display import display

            display(self.figure)
        with self.table_output:
            from IPython.display import display

            display(highlight(self.table))
        plt.close(self.figure)

    def save(self) -> tuple[Path, Path]:
        """Write the current plot (PNG) and table (CSV) to ``export_dir``."""
        self.export_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{self.metric.value.replace('/', '_')}_by_{self.x.value}"
        png, csv = self.export_dir / f"{stem}.png", self.export_dir / f"{stem}.csv"
        self.figure.savefig(png, dpi=150, bbox_inches="tight")
        self.table.to_csv(csv)
        self.status.value = f"wrote {png} and {csv}"
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

