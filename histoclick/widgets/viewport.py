"""Navigation maths of the click widget: which part of a slide is shown, and where a click lands.

A viewport is a square of ``size`` x ``size`` output pixels read at ``downsample`` level-0 pixels
per output pixel, its top-left corner at the level-0 ``origin``. Panning moves by one whole
viewport, so neighbouring viewports tile the slide edge to edge and masks traced in them meet
along shared edges in level-0 coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

# Pan directions: (columns, rows) in viewports.
SIDES: dict[str, tuple[int, int]] = {
    "left": (-1, 0),
    "right": (1, 0),
    "up": (0, -1),
    "down": (0, 1),
}


@dataclass(frozen=True)
class Viewport:
    """A square window on a slide.

    ``origin``: level-0 ``(x, y)`` of the top-left corner (whole pixels, as ``Slide.read_region``
    reads them). ``size``: side in output (tile) pixels. ``downsample``: level-0 pixels per
    output pixel. ``slide_size``: the slide's level-0 ``(width, height)``.
    """

    origin: tuple[int, int]
    size: int
    downsample: float
    slide_size: tuple[int, int]

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ValueError(f"viewport size must be at least 1 pixel, got {self.size}")
        if not self.downsample >= 1:
            raise ValueError(
                f"downsample must be >= 1 (histoclick never upsamples), got {self.downsample}"
            )
        width, height = self.slide_size
        x, y = (round(v) for v in self.origin)
        # Keep some slide in view: read_region refuses a region wholly outside.
        object.__setattr__(self, "origin", (min(max(x, 0), width - 1), min(max(y, 0), height - 1)))

    @property
    def extent(self) -> int:
        """Side of the viewport in level-0 pixels (rounded to whole pixels)."""
        return max(1, round(self.size * self.downsample))

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        """Level-0 ``(min_x, min_y, max_x, max_y)`` covered by the viewport."""
        x, y = self.origin
        return x, y, x + self.extent, y + self.extent

    def outside_slide(self) -> np.ndarray | None:
        """``(size, size)`` bool: the tile pixels whose centre lies beyond the slide's level-0
        extent (padding, not tissue); None when the whole viewport is on the slide."""
        x, y = self.origin
        width, height = self.slide_size
        if x + self.extent <= width and y + self.extent <= height:
            return None
        centres = (np.arange(self.size) + 0.5) * self.downsample
        return ((y + centres)[:, None] >= height) | ((x + centres)[None, :] >= width)

    def neighbour(self, side: str) -> Viewport | None:
        """The viewport one step to ``side`` ("left", "right", "up", "down"); None past the edge."""
        if side not in SIDES:
            raise ValueError(f"side must be one of {', '.join(SIDES)}, got {side!r}")
        dx, dy = SIDES[side]
        x, y = self.origin
        width, height = self.slide_size
        new_x, new_y = x + dx * self.extent, y + dy * self.extent
        if new_x >= width or new_y >= height or (dx < 0 and x == 0) or (dy < 0 and y == 0):
            return None
        return replace(self, origin=(max(new_x, 0), max(new_y, 0)))

    def centred_on(self, x0: float, y0: float, downsample: float | None = None) -> Viewport:
        """This viewport (at ``downsample`` if given) centred on level-0 ``(x0, y0)``, on the slide."""
        downsample = self.downsample if downsample is None else downsample
        extent = self.size * downsample
        width, height = self.slide_size
        x = min(x0 - extent / 2, width - extent)
        y = min(y0 - extent / 2, height - extent)
        return replace(
            self, origin=(math.floor(max(x, 0)), math.floor(max(y, 0))), downsample=downsample
        )

    def display_to_tile(
        self, x_display: float, y_display: float, displayed_size: tuple[float, float] | None = None
    ) -> tuple[int, int]:
        """Tile pixel ``(column, row)`` under a point of the displayed image.

        ``x_display, y_display`` are CSS pixels from the image's top-left corner and
        ``displayed_size`` the image's displayed ``(width, height)`` (default: unscaled). The
        browser may scale the image, so the point is mapped as
        ``floor(x_display * size / displayed_width)``, clamped to the tile.
        """
        shown_w, shown_h = displayed_size or (self.size, self.size)
        if shown_w <= 0 or shown_h <= 0:
            raise ValueError(f"displayed size must be positive, got {displayed_size}")
        column = math.floor(x_display * self.size / shown_w)
        row = math.floor(y_display * self.size / shown_h)
        return min(max(column, 0), self.size - 1), min(max(row, 0), self.size - 1)


def zoom_levels(slide_size: tuple[int, int], size: int, start: float = 1.0) -> list[float]:
    """Downsamples to navigate: ``start``, doubling until one viewport shows the whole slide."""
    levels = [float(start)]
    while levels[-1] * size < max(slide_size):
        levels.append(levels[-1] * 2)
    return levels
