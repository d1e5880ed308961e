"""Brush and eraser: drag on the image to add pixels to the current mask or remove them from it.

For the boundary pixels a click cannot fix. A stroke covers every tile pixel ``(row, column)``
whose position ``(x=column, y=row)`` lies within the brush radius (tile pixels) of the polyline
through the stroke's points (tile pixels, as clicks are); one point paints a disc. Strokes are
layers over the method's prediction (:class:`~histoclick.widgets.state.ClickState` keeps them):
the mask shown, saved and handed to adaptation is the prediction with the strokes applied in the
order drawn, brush pixels set and eraser pixels cleared. The method itself sees only the clicks,
so a click after a stroke predicts again and the stroke is applied over the new prediction.

In the browser a stroke is one drag: ``mousedown`` starts it, ``mousemove`` (throttled, with the
left button held) extends it segment by segment, ``mouseup``, a move with the button released or
``mouseleave`` ends it. :class:`Drag` turns those ipyevents messages into points.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import ipywidgets as widgets
import numpy as np

Mode = Literal["click", "brush", "eraser"]
DEFAULT_RADIUS = 8
MOVE_THROTTLE_MS = 30  # mousemove messages at most every 30 ms: segments join the points anyway


def stroke_pixels(
    points: Sequence[tuple[float, float]], radius: float, shape: tuple[int, int]
) -> np.ndarray:
    """``shape`` bool layer, True at the pixels within ``radius`` of the polyline through
    ``points`` (``(x, y)`` tile pixels: column, row); pixel ``(i, j)`` sits at ``(x=j, y=i)``."""
    if radius < 0:
        raise ValueError(f"the brush radius must be at least 0 tile pixels, got {radius}")
    xy = np.asarray(points, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2 or not len(xy) or not np.isfinite(xy).all():
        raise ValueError(f"a stroke needs a list of finite (x, y) tile pixels, got {points!r}")
    layer = np.zeros(shape, dtype=bool)
    corner = (shape[1] - 1, shape[0] - 1)
    segments = zip(xy, xy[1:], strict=False) if len(xy) > 1 else [(xy[0], xy[0])]
    for start, end in segments:
        # Only the pixels in the segment's box grown by the radius can be within reach.
        x0, y0 = np.maximum(np.floor(np.minimum(start, end) - radius), 0).astype(int)
        x1, y1 = np.minimum(np.ceil(np.maximum(start, end) + radius), corner).astype(int)
        if x0 > x1 or y0 > y1:
            continue
        rows, cols = np.mgrid[y0 : y1 + 1, x0 : x1 + 1]
        offset = np.stack([cols - start[0], rows - start[1]], axis=-1)
        direction = end - start
        length2 = float(direction @ direction)
        t = np.clip(offset @ direction / length2, 0, 1) if length2 else np.zeros(rows.shape)
        distance2 = ((offset - t[..., None] * direction) ** 2).sum(axis=-1)
        layer[y0 : y1 + 1, x0 : x1 + 1] |= distance2 <= radius * radius
    return layer


@dataclass(eq=False)
class Stroke:
    """One brush or eraser stroke: ``pixels`` ``(H, W)`` bool in tile pixels, ``erase`` whether
    it removes them, ``after_clicks`` how many clicks there were when it was drawn (orders undo
    between strokes and clicks)."""

    pixels: np.ndarray
    erase: bool
    after_clicks: int

    def apply(self, mask: np.ndarray) -> None:
        """Set (brush) or clear (eraser) the stroke's pixels of ``mask`` in place."""
        mask[self.pixels] = not self.erase


class BrushControls:
    """The mode selector (Click / Brush / Eraser) and the brush radius in tile pixels."""

    def __init__(self, radius: int = DEFAULT_RADIUS) -> None:
        self.mode = widgets.ToggleButtons(
            options=[("Click", "click"), ("Brush", "brush"), ("Eraser", "eraser")],
            tooltips=[
                "clicks prompt the method",
                "drag to add pixels to the mask (key B)",
                "drag to remove pixels from the mask (key E)",
            ],
            style={"button_width": "64px"},
        )
        self.radius = widgets.IntSlider(
            value=radius,
            min=1,
            max=64,
            description="Radius",
            tooltip="brush and eraser radius in tile pixels",
            layout=widgets.Layout(width="220px"),
        )
        self.row = widgets.HBox([self.mode, self.radius])

    @property
    def painting(self) -> bool:
        """True in Brush or Eraser mode (drags paint, clicks do not prompt the method)."""
        return self.mode.value != "click"

    def toggle(self, mode: Mode) -> None:
        """Switch to ``mode``, or back to Click when already in it (keys B and E)."""
        self.mode.value = "click" if self.mode.value == mode else mode


class Drag:
    """Follows one drag through ipyevents' mouse messages (points in tile pixels)."""

    def __init__(self) -> None:
        self.last: tuple[float, float] | None = None  # None: no drag in progress

    def update(
        self, event: dict[str, Any], point: tuple[float, float]
    ) -> list[tuple[float, float]]:
        """The points to paint for one message at tile pixel ``point``: ``[point]`` when a left
        ``mousedown`` starts a stroke, ``[previous, point]`` when a move with the left button
        held or the ``mouseup`` continues it; none otherwise. A ``mouseup``, a move with the
        button released or a ``mouseleave`` ends the drag."""
        kind = event.get("event")
        if kind == "mousedown":
            self.last = point if int(event.get("button", 0)) == 0 else None
            return [point] if self.last is not None else []
        if self.last is None:
            return []
        held = kind == "mousemove" and int(event.get("buttons", 0)) & 1
        segment = [self.last, point] if held or kind == "mouseup" else []
        self.last = point if held else None
        return segment
