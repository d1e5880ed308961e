"""Timed clicks on a ClickWidget, shared by the widget benchmarks (run from benchmarks/)."""

from __future__ import annotations

import time

import numpy as np

from histoclick.widgets import ClickWidget


def tissue_points(widget: ClickWidget, count: int) -> list[tuple[int, int]]:
    """``count`` tile pixels ``(column, row)`` spread over the shown viewport's tissue."""
    tissue = np.argwhere(widget.session.tile.image.mean(axis=2) < 200)
    picks = np.linspace(0, len(tissue) - 1, count + 2).astype(int)[1:-1]
    return [(int(tissue[i][1]), int(tissue[i][0])) for i in picks]


def timed_clicks(widget: ClickWidget, points: list[tuple[int, int]], pause: float) -> list[float]:
    """Reset, then click each point with ``pause`` seconds between; seconds per click."""
    widget.reset()
    seconds = []
    for column, row in points:
        started = time.perf_counter()
        widget.click(column, row)
        seconds.append(time.perf_counter() - started)
        time.sleep(pause)
    return seconds
