"""Training and result plots for notebooks (matplotlib): loss curves, live progress, a run's summary.

Every function returns its figure, so ``fig.savefig("x.pdf")`` works for papers.
"""

from __future__ import annotations

from typing import Any

LOSS_KEYS = ("loss", "global", "fine", "pcm")


def plot_history(history: list[dict[str, Any]], ax=None, keys: tuple[str, ...] = LOSS_KEYS):
    """Loss terms against the step, from ``Trainer.fit()``'s records (or ``metrics.jsonl`` rows)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    rows = [h for h in history if "loss" in h]
    for key in keys:
        points = [(h["step"], h[key]) for h in rows if key in h]
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, label=key, linewidth=1.5 if key == "loss" else 1.0)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    if rows:
        ax.legend(fontsize=8)
    return ax.figure


class LiveLoss:
    """``Trainer(..., on_log=LiveLoss())``: redraws the loss curve in the notebook as training logs.

    Outside a notebook it collects the records silently; ``.figure()`` draws them at any time.
    """

    def __init__(self, every: int = 1):
        self.history: list[dict[str, Any]] = []
        self.every = every
        self._handle = None
        self._calls = 0

    def __call__(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        self._calls += 1
        if "loss" in record and self._calls % self.every == 0:
            self._redraw()

    def figure(self):
        return plot_history(self.history)

    def _redraw(self) -> None:
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:
            return
        if get_ipython() is None:
            return
        import matplotlib.pyplot as plt

        figure = self.figure()
        if self._handle is None:
            self._handle = display(figure, display_id=True)
        else:
            self._handle.update(figure)
        plt.close(figure)


def plot_scores(record: dict[str, Any], metric: str = "group/t2i", ax=None):
    """Bars of ``metric`` for each scoring mode of a record, the same on the probes it was scored
    on (``binding/<mode>``, ``alt/<mode>``), its reference row (the starting model) and chance
    where the metric is a within-group accuracy."""
    import matplotlib.pyplot as plt

    from ..model.config import SCORE_MODES

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    metrics = record["metrics"]
    labels = [m for m in SCORE_MODES if f"{m}/{metric}" in metrics]
    colours = ["C0"] * len(labels)
    for probe, colour in (("binding", "C1"), ("alt", "C2")):
        found = [f"{probe}/{m}" for m in SCORE_MODES if f"{probe}/{m}/{metric}" in metrics]
        labels += found
        colours += [colour] * len(found)
    values = [metrics[f"{label}/{metric}"] for label in labels]
    reference = (record.get("reference") or {}).get("metrics", {}).get(f"global/{metric}")
    if reference is not None:
        labels.append("reference")
        values.append(reference)
        colours.append("grey")
    bars = ax.bar(labels, values, color=colours)
    ax.tick_params(axis="x", labelsize=7)
    ax.bar_label(bars, fmt="%.1f", fontsize=8)
    if metric.startswith("group/"):
        ax.axhline(25.0, color="black", linestyle=":", linewidth=1, label="chance (groups of 4)")
        ax.legend(fontsize=8)
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(record.get("run_name", ""), fontsize=9)
    return ax.figure


def plot_run(record: dict[str, Any]):
    """A grid point at a glance: loss curve and within-group accuracy per scoring mode."""
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    plot_history(record.get("history", []), ax=left)
    plot_scores(record, ax=right)
    figure.tight_layout()
    return figure
