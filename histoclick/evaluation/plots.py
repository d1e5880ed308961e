"""mIoU-vs-clicks figure, one panel per dataset and one line per method (like the study's figure).

Drawn with matplotlib's object API on an Agg canvas: no pyplot state, no backend switch, so it
is safe inside Jupyter.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from histoclick.files import atomic_path


def plot_miou(curves: pd.DataFrame, path: str | os.PathLike, title: str | None = None) -> Path:
    """Write a PNG of mIoU against the number of clicks.

    Args:
        curves: index = click number (1..K); columns = (dataset, method) MultiIndex; values =
            mean IoU after that many clicks (see ``runner.miou_curves``).
        path: where to write the PNG (written atomically).
        title: figure title.
    """
    datasets = list(dict.fromkeys(curves.columns.get_level_values(0)))
    if not datasets:
        raise ValueError("no curves to plot: evaluate at least one sample first")
    figure = Figure(figsize=(5.0 * len(datasets), 4.0), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(datasets), squeeze=False)[0]
    clicks = curves.index.to_numpy()
    for ax, dataset in zip(axes, datasets):
        for method, values in curves[dataset].items():
            ax.plot(clicks, values.to_numpy(), marker="o", markersize=3, label=method)
        ax.set_title(dataset)
        ax.set_xlabel("Number of clicks")
        ax.set_ylabel("mIoU")
        ax.set_xlim(clicks.min() - 0.5, clicks.max() + 0.5)
        ax.set_ylim(0.0, 1.0)
        ax.set_xticks(clicks[:: max(1, len(clicks) // 10)])
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    if title:
        figure.suptitle(title)
    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path
