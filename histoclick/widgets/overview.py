"""The click widget's overview: the slide's thumbnail with the current viewport drawn on it.

Frames: the thumbnail is :meth:`Slide.thumbnail` (origin (0, 0), ``downsample`` level-0 pixels per
thumbnail pixel, exact), so thumbnail pixel column ``j`` covers level-0 x in
``[j * downsample, (j + 1) * downsample)`` and likewise for rows; thumbnail coordinates here are
continuous (a pixel's centre is ``j + 0.5``), level-0 ``x0 = x_thumb * downsample``. A click on
the displayed overview at CSS offset ``x`` lands at ``x_thumb = x * thumbnail_width /
displayed_width`` (the page may show it scaled), not rounded to a pixel; the click widget wires
the pointer events (as for its main image) and centres the viewport there.

The thumbnail and the saved objects' outlines are drawn once (again only when the objects
change); each navigation draws the viewport's rectangle on a copy and sends one small PNG.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import cv2
import ipywidgets as widgets
from shapely.geometry.base import BaseGeometry

from histoclick.overlay import RGB, encode_png, render_overlay
from histoclick.slides import Slide
from histoclick.widgets.viewport import Viewport

OVERVIEW_SIZE = 256
VIEWPORT_COLOR: RGB = (0, 90, 255)
# The rectangle is at least this many thumbnail pixels wide, so a small viewport stays visible.
MIN_RECTANGLE = 5
CSS_CLASS = "histoclick-overview"


class Overview:
    """Thumbnail of ``slide`` (longer side ``max_size`` pixels, never upsampled) as a clickable
    ``ipywidgets.Image`` (:attr:`image`, CSS class ``histoclick-overview``, shown unscaled)."""

    def __init__(self, slide: Slide, max_size: int = OVERVIEW_SIZE) -> None:
        self.thumbnail = slide.thumbnail(max_size)
        self.slide_size = slide.dimensions
        self._base = self.thumbnail.image
        self._outlines_key: Any = None
        self._stale = True
        self.rectangle: tuple[int, int, int, int] | None = None
        # Its own size, not stretched to the height of the tile beside it in the row.
        self.image = widgets.Image(
            format="png",
            width=str(self.thumbnail.width),
            height=str(self.thumbnail.height),
            layout=widgets.Layout(align_self="flex-start"),
        )
        self.image.add_class(CSS_CLASS)

    @property
    def downsample(self) -> float:
        """Level-0 pixels per thumbnail pixel."""
        return self.thumbnail.downsample

    def to_level0(self, x_thumb: float, y_thumb: float) -> tuple[float, float]:
        """Level-0 ``(x, y)`` of thumbnail coordinates (continuous; pixel centres at ``j + 0.5``)."""
        x0, y0 = self.thumbnail.to_level0(x_thumb, y_thumb)
        return float(x0), float(y0)

    def display_to_thumbnail(
        self, x_display: float, y_display: float, displayed_size: tuple[float, float]
    ) -> tuple[float, float]:
        """Thumbnail coordinates (continuous) under CSS offset ``(x_display, y_display)`` from the
        displayed overview's top-left corner, shown ``displayed_size`` ``(width, height)``."""
        shown_w, shown_h = displayed_size
        if shown_w <= 0 or shown_h <= 0:
            raise ValueError(f"displayed size must be positive, got {displayed_size}")
        return (
            x_display * self.thumbnail.width / shown_w,
            y_display * self.thumbnail.height / shown_h,
        )

    def to_thumbnail(self, x0: float, y0: float) -> tuple[float, float]:
        """Thumbnail coordinates (continuous) of level-0 ``(x0, y0)``; inverse of :meth:`to_level0`."""
        x, y = self.thumbnail.to_tile(x0, y0)
        return float(x), float(y)

    def viewport_rectangle(self, viewport: Viewport) -> tuple[int, int, int, int]:
        """Thumbnail pixels ``(left, top, right, bottom)``, inclusive, of the rectangle drawn for
        ``viewport``: the pixels its level-0 bounds (cut to the slide) touch, widened about its
        centre to at least :data:`MIN_RECTANGLE` pixels and kept on the thumbnail."""
        width, height = self.slide_size
        minx, miny, maxx, maxy = viewport.bounds
        sides = []
        for low, high, extent, pixels in (
            (minx, maxx, width, self.thumbnail.width),
            (miny, maxy, height, self.thumbnail.height),
        ):
            first = math.floor(low / self.downsample)
            last = math.ceil(min(high, extent) / self.downsample) - 1
            short = MIN_RECTANGLE - (last - first + 1)
            if short > 0:
                first -= short // 2
                last += short - short // 2
            shift = max(0, -first) - max(0, last - (pixels - 1))
            sides.append((max(first + shift, 0), min(last + shift, pixels - 1)))
        (left, right), (top, bottom) = sides
        return left, top, right, bottom

    def set_outlines(
        self, key: Any, outlines: Callable[[], Iterable[tuple[BaseGeometry, RGB]]]
    ) -> None:
        """Draw the saved objects' level-0 outlines ``(geometry, colour)``, which ``outlines()``
        returns, under the rectangle. ``key`` identifies the set of objects (the frame they come
        from, compared by identity and kept): with the same key as last time nothing is drawn,
        and ``outlines`` is not called."""
        if key is self._outlines_key:
            return
        self._outlines_key = key
        self._base = render_overlay(self.thumbnail, outlines=outlines())
        self._stale = True

    def draw(self, viewport: Viewport) -> None:
        """Show the thumbnail (with the outlines) and ``viewport``'s rectangle on it; sends
        nothing when neither changed since the last time."""
        rectangle = self.viewport_rectangle(viewport)
        if rectangle == self.rectangle and not self._stale:
            return
        self.rectangle, self._stale = rectangle, False
        left, top, right, bottom = self.rectangle
        picture = self._base.copy()
        cv2.rectangle(picture, (left, top), (right, bottom), VIEWPORT_COLOR, 1)
        self.image.value = encode_png(picture)

    def state(self) -> dict[str, Any]:
        """JSON-serialisable: thumbnail size (pixels), level-0 pixels per thumbnail pixel, and
        the viewport's rectangle (inclusive thumbnail pixels ``[left, top, right, bottom]``)."""
        return {
            "width": self.thumbnail.width,
            "height": self.thumbnail.height,
            "downsample": self.downsample,
            "rectangle": None if self.rectangle is None else list(self.rectangle),
        }
