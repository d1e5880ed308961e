"""Figures of a comparison: score-vs-clicks curves (mIoU, boundary F), one panel per dataset and
one line per method (like the study's figure), and NoC@90 with its slide-level interval.

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


def plot_miou(
    curves: pd.DataFrame, path: str | os.PathLike, title: str | None = None, ylabel: str = "mIoU"
) -> Path:
    """Write a PNG of a mean score (mIoU by default) against the number of clicks.

    Args:
        curves: index = click number (1..K); columns = (dataset, method) MultiIndex; values =
            mean score after that many clicks (see ``summary.miou_curves`` and
            ``summary.boundary_f_curves``).
        path: where to write the PNG (written atomically).
        title: figure title.
        ylabel: what the values are (their axis runs from 0 to 1).
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
        ax.set_ylabel(ylabel)
        ax.set_xlim(clicks.min() - 0.5, clicks.max() + 0.5)
        ax.set_ylim(0.0, 1.0)
        ax.set_xticks(clicks[:: max(1, len(clicks) // 10)])
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    return _save(figure, path, title)


def plot_noc_intervals(summary: pd.DataFrame, path: str | os.PathLike, title: str | None = None) -> Path:
    """Write a PNG of NoC@90 per method with its 95% bootstrap interval over slides, one panel
    per dataset (``summary``: the table of :func:`histoclick.evaluation.summarize`)."""
    datasets = list(dict.fromkeys(summary.index.get_level_values("dataset")))
    if not datasets:
        raise ValueError("no results to plot: evaluate at least one sample first")
    figure = Figure(figsize=(5.0 * len(datasets), 4.0), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(datasets), squeeze=False)[0]
    for ax, dataset in zip(axes, datasets):
        table = summary.loc[dataset]
        centre = table["NoC@90"].to_numpy(float)
        low = (centre - table["NoC@90 CI low"].to_numpy(float)).clip(min=0)
        high = (table["NoC@90 CI high"].to_numpy(float) - centre).clip(min=0)
        positions = range(len(table))
        ax.bar(positions, centre, yerr=[low, high], capsize=4, color="tab:blue", alpha=0.8)
        ax.set_xticks(list(positions), list(table.index), rotation=20, ha="right", fontsize="small")
        ax.set_title(dataset)
        ax.set_ylabel("NoC@90 (95% CI over slides)")
        ax.grid(True, axis="y", alpha=0.3)
    return _save(figure, path, title)


def _save(figure: Figure, path: str | os.PathLike, title: str | None) -> Path:
    if title:
        figure.suptitle(title)
    path = Path(path).expanduser()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    return path
