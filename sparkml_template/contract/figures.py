"""The figure every chart is drawn on: matplotlib's object API, no pyplot global state (charts
are drawn in threads and in long-lived processes)."""

from __future__ import annotations

from typing import Any


def preload() -> None:
    """Import matplotlib's figure and Agg canvas ahead of the first chart: train calls it in a
    thread while Spark fits, so the import is off the critical path."""
    import matplotlib.backends.backend_agg
    import matplotlib.figure  # noqa: F401


def new_figure(width: float, height: float) -> Any:
    """A figure of ``width`` x ``height`` inches at 100 dpi, with an Agg canvas for ``savefig``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig
