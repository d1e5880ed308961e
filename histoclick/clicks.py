"""The click: one point prompt, shared by the click engine, the simulator and the widget."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Click:
    """A positive or negative point prompt in tile pixels.

    Fields follow the order of RITM's evaluation code (row first). ``y`` is the row and ``x`` the
    column of the clicked pixel in the tile's pixel frame (origin top-left): a click on pixel
    ``(i, j)`` is ``Click(y=i, x=j)``. Valid clicks satisfy ``0 <= x < width`` and
    ``0 <= y < height``; SAM's prompt encoder adds the half pixel to reach the pixel centre, so
    the level-0 position of a click is ``origin + (x + 0.5, y + 0.5) * downsample``.

    Raises ValueError for a non-finite coordinate, or an ``is_positive`` that is not a bool
    (or 0/1): SAM reads any other label as padding or a box corner, not as a click.
    """

    y: float
    x: float
    is_positive: bool = True

    def __post_init__(self) -> None:
        for name in ("y", "x"):
            value = getattr(self, name)
            if not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(value):
                raise ValueError(f"click {name} must be a finite number of tile pixels, got {value!r}")
        label = self.is_positive
        if not isinstance(label, (bool, np.bool_, int, np.integer)) or label not in (0, 1):
            raise ValueError(
                f"is_positive must be True/False (or 1/0), got {label!r}; SAM would read it as a "
                "padding label and ignore the click"
            )
        object.__setattr__(self, "is_positive", bool(label))
