"""Where the click widget looks on a slide: pan, zoom, go-to and tissue tiles, as viewports.

Every method returns the :class:`~histoclick.widgets.viewport.Viewport` to show next (level-0
origin, downsample); the widget reads and shows it, and then sets :attr:`Navigator.viewport`.
"""

from __future__ import annotations

from dataclasses import replace

from histoclick.slides import Slide
from histoclick.widgets.viewport import Viewport


class Navigator:
    """Navigation on ``slide`` with square viewports of ``size`` tile pixels.

    ``downsample``: level-0 pixels per tile pixel of the first viewport; ``origin``: its level-0
    top-left corner (default: the grid viewport with the largest tissue fraction, the first in
    row-major order on ties, so the same slide always opens at the same place).
    """

    def __init__(
        self,
        slide: Slide,
        size: int,
        downsample: float,
        origin: tuple[float, float] | None = None,
    ) -> None:
        self.slide = slide
        self._fractions: dict[float, dict[tuple[int, int], float]] = {}
        self.viewport = Viewport((0, 0), size, downsample, slide.dimensions)
        if origin is None:
            origin = self.most_tissue(downsample)
        self.viewport = replace(self.viewport, origin=origin)

    def pan(self, side: str) -> Viewport:
        """One viewport to ``side`` ("left", "right", "up", "down")."""
        neighbour = self.viewport.neighbour(side)
        if neighbour is None:
            raise ValueError(f"cannot pan {side}: the viewport is at the slide's edge")
        return neighbour

    def centred_on(self, x0: float, y0: float, downsample: float | None = None) -> Viewport:
        """Centred on level-0 ``(x0, y0)`` (at ``downsample`` if given), kept on the slide."""
        return self.viewport.centred_on(x0, y0, downsample)

    def zoomed(self, downsample: float) -> Viewport:
        """At ``downsample``, keeping the current centre."""
        minx, miny, maxx, maxy = self.viewport.bounds
        return self.centred_on((minx + maxx) / 2, (miny + maxy) / 2, downsample)

    def next_tissue(self) -> Viewport:
        """The next grid viewport with tissue in row-major order (wrapping around), so that
        pressing on and on sweeps the slide without skipping or revisiting a viewport."""
        ds = self.viewport.downsample
        tiles = self.tissue_tiles(ds)
        if not tiles:
            raise ValueError(
                f"no tissue found at {self.zoom_label(ds)}: try another zoom or pan by hand"
            )
        x, y = self.viewport.origin
        after = [t for t in tiles if (t[1], t[0]) > (y, x)]
        return replace(self.viewport, origin=(after or tiles)[0])

    def tissue_tiles(self, downsample: float) -> list[tuple[int, int]]:
        """Level-0 origins of grid viewports at least half tissue, on sparse slides a tenth,
        in row-major order."""
        fractions = self.tissue_fractions(downsample)
        for least in (0.5, 0.1):
            tiles = [origin for origin, fraction in fractions.items() if fraction >= least]
            if tiles:
                return tiles
        return []

    def most_tissue(self, downsample: float) -> tuple[int, int]:
        """Level-0 origin of the grid viewport with the largest tissue fraction at
        ``downsample`` (the first in row-major order on ties; (0, 0) on a blank slide)."""
        fractions = self.tissue_fractions(downsample)
        return max(fractions, key=fractions.__getitem__, default=(0, 0))

    def tissue_fractions(self, downsample: float) -> dict[tuple[int, int], float]:
        """Tissue fraction of every grid viewport at ``downsample``, keyed by level-0 origin in
        row-major order (:meth:`Slide.tissue_fractions`, cached per downsample)."""
        if downsample not in self._fractions:
            self._fractions[downsample] = self.slide.tissue_fractions(
                self.viewport.size, downsample=downsample
            )
        return self._fractions[downsample]

    def magnification(self) -> float | None:
        """The current viewport's magnification (None without the slide's objective power)."""
        power = self.slide.objective_power
        return None if power is None else power / self.viewport.downsample

    def zoom_options(self, downsamples: list[float]) -> list[tuple[str, float]]:
        """Dropdown options ``(label, downsample)``, sorted, without repeats."""
        return [(self.zoom_label(ds), ds) for ds in sorted(set(downsamples))]

    def zoom_label(self, downsample: float) -> str:
        """``"10x"`` with the slide's objective power, else ``"1/4 scale"``."""
        power = self.slide.objective_power
        return f"{power / downsample:g}x" if power is not None else f"1/{downsample:g} scale"
