"""The click: one point prompt, shared by the click engine, the simulator and the widget."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Click:
    """A positive or negative point prompt in tile pixels.

    Fields follow the order of RITM's evaluation code (row first). ``y`` is the row and ``x`` the
    column of the clicked pixel in the tile's pixel frame (origin top-left): a click on pixel
    ``(i, j)`` is ``Click(y=i, x=j)``. Valid clicks satisfy ``0 <= x < width`` and
    ``0 <= y < height``; SAM's prompt encoder adds the half pixel to reach the pixel centre, so
    the level-0 position of a click is ``origin + (x + 0.5, y + 0.5) * downsample``.
    """

    y: float
    x: float
    is_positive: bool = True
