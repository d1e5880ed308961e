"""Tiles read from whole slides around annotated tumour (shared by CAMELYON16 and PAIP).

Two sample protocols (``SLIDE_PROTOCOLS``):

- ``"regions"`` (default; the region-level protocol): one sample per tumour region (polygon of
  the slide's tumour geometry). Its gt is that region only; the other tumour in the tile is
  marked ``ignore`` (it is tumour, but not the object being segmented). A region that fits in
  the tile is centred in it; a larger one gets a tile on its boundary
  (:func:`histoclick.datasets.regions.region_tile_origin`), never a tile of tumour only.
- ``"tiles"``: the study's tiles: one tile per region centred on its centroid, gt = every
  tumour pixel in the tile (a region larger than the tile gives a tile of tumour only; small
  regions share their tile with their neighbours). Training uses this protocol: its masks
  label every pixel.

Annotated exclusions (``ignore_geometry``, e.g. CAMELYON16's ``Exclusion`` groups) are holes in
the tumour and ``ignore`` in every sample.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from shapely.geometry import MultiPolygon, Polygon

from histoclick.datasets.regions import region_tile_origin
from histoclick.evaluation.protocol import Dataset, Sample
from histoclick.geometry import geometry_to_mask
from histoclick.slides import Slide, Tile, open_slide

SlideProtocol = Literal["regions", "tiles"]
SLIDE_PROTOCOLS: tuple[str, ...] = ("regions", "tiles")


@dataclass(frozen=True)
class TileSpec:
    """Where one sample's tile is read: ``case`` (slide id), the level-0 top-left ``(x, y)``,
    and for the region protocol the ``region`` index (in decreasing area order) and ``placement``."""

    case: str
    x: int
    y: int
    region: int | None = None
    placement: str | None = None

    @property
    def tile_id(self) -> str:
        """``<case>@<x>,<y>``: the slide and the level-0 origin of the tile."""
        return f"{self.case}@{self.x},{self.y}"

    @property
    def sample_id(self) -> str:
        """The tile id, plus ``#r<region>`` in the region protocol."""
        return self.tile_id if self.region is None else f"{self.tile_id}#r{self.region}"


class SlideTiles(Dataset):
    """Square tiles read from slides at a magnification, around tumour regions.

    For every case the tumour geometry (level 0) is split into its polygons, largest first; each
    polygon whose area is at least ``min_tumour_pixels`` tile pixels gives one sample (see the
    module docstring for the two protocols); ``tiles_per_slide`` keeps the largest ones. Tiles
    are moved inside the slide when they would cross its edge. Sample ids are ``<case>@<x>,<y>``
    (level-0 origin of the tile) and, in the region protocol, ``<case>@<x>,<y>#r<k>`` (the
    case's k-th largest region).

    ``meta`` of each sample: slide, case, tile_id, origin (level-0 top-left of the tile),
    downsample (level-0 pixels per tile pixel), magnification, mpp (micrometres per tile pixel,
    None when the slide lacks it), protocol; in the region protocol also object_id (``r<k>``),
    placement (``centred`` or ``boundary``) and region_bounds (level-0 ``minx, miny, maxx,
    maxy``).

    A slide without objective power in its metadata (e.g. CAMELYON16's generic TIFFs) is read
    at the equivalent resolution ``10 / magnification`` um/px (x40 = 0.25 um/px).

    Subclasses give the cases (``cases``: id -> slide path) and the tumour geometry per case
    (``tumour_geometry``); they may give regions to ignore (``ignore_geometry``), override
    ``tile_mask`` to rasterise from another source, and ``region_tolerance`` when that source
    and the geometry differ slightly.
    """

    def __init__(
        self,
        name: str,
        cases: dict[str, Path],
        *,
        tile_size: int = 512,
        magnification: float = 10.0,
        tiles_per_slide: int | None = None,
        min_tumour_pixels: float = 64.0,
        protocol: SlideProtocol = "regions",
    ) -> None:
        super().__init__(name)
        if not cases:
            raise FileNotFoundError(f"{name}: no slides with annotations found")
        if protocol not in SLIDE_PROTOCOLS:
            raise ValueError(f"protocol must be one of {', '.join(SLIDE_PROTOCOLS)}, got {protocol!r}")
        self.cases = dict(sorted(cases.items()))
        self.tile_size = int(tile_size)
        self.magnification = float(magnification)
        self.tiles_per_slide = tiles_per_slide
        self.min_tumour_pixels = float(min_tumour_pixels)
        self.protocol = protocol
        self._tiles: dict[str, TileSpec] | None = None
        self._geometry: dict[str, MultiPolygon] = {}
        self._ignored: dict[str, MultiPolygon] = {}
        self._sorted: dict[str, list[Polygon]] = {}
        self._slide: Slide | None = None

    @abc.abstractmethod
    def tumour_geometry(self, case: str) -> MultiPolygon:
        """The case's tumour region in level-0 pixels."""

    def ignore_geometry(self, case: str) -> MultiPolygon:
        """Level-0 areas of the case that count neither as tumour nor as background (none here)."""
        return MultiPolygon()

    def region_tolerance(self, case: str) -> float:
        """Level-0 pixels by which a region's polygon may miss its own ``tile_mask`` pixels
        (0 when the mask is rasterised from the same geometry)."""
        return 0.0

    def tile_mask(self, case: str, tile: Tile) -> np.ndarray:
        """All tumour of ``tile``: pixels whose centre lies in the tumour geometry."""
        shape = (tile.height, tile.width)
        return geometry_to_mask(self._geometry_of(case), shape, tile.origin, tile.downsample)

    @property
    def sample_ids(self) -> list[str]:
        return list(self._tile_specs())

    def load(self, sample_id: str) -> Sample:
        spec = self._tile_specs()[sample_id]
        slide = self._open(spec.case)
        tile = slide.read_region(spec.x, spec.y, self.tile_size, self.tile_size, **self._resolution(slide))
        shape = (tile.height, tile.width)
        tumour = self.tile_mask(spec.case, tile)
        ignore = geometry_to_mask(self._ignored_of(spec.case), shape, tile.origin, tile.downsample)
        meta = {
            "slide": str(self.cases[spec.case]),
            "case": spec.case,
            "tile_id": spec.tile_id,
            "origin": tile.origin,
            "downsample": tile.downsample,
            "magnification": self.magnification,
            "mpp": None if slide.mpp is None else slide.mpp * tile.downsample,
            "protocol": self.protocol,
        }
        if spec.region is None:
            gt = tumour & ~ignore
        else:
            region = self._regions(spec.case)[spec.region]
            tolerance = self.region_tolerance(spec.case)
            outline = region.buffer(tolerance) if tolerance else region
            gt = tumour & geometry_to_mask(outline, shape, tile.origin, tile.downsample) & ~ignore
            ignore |= tumour & ~gt  # the other tumour of the tile
            meta.update(
                object_id=f"r{spec.region}",
                placement=spec.placement,
                region_bounds=tuple(float(v) for v in region.bounds),
            )
        return Sample(id=sample_id, image=tile.image, gt=gt, ignore=ignore if ignore.any() else None, meta=meta)

    def _tile_specs(self) -> dict[str, TileSpec]:
        if self._tiles is None:
            self._tiles = {spec.sample_id: spec for case in self.cases for spec in self._plan(case)}
        return self._tiles

    def _plan(self, case: str) -> list[TileSpec]:
        slide = self._open(case)
        ds = slide.downsample_for(**self._resolution(slide))
        span = self.tile_size * ds  # level-0 pixels per tile side
        width, height = slide.dimensions
        regions = self._regions(case)
        kept = [k for k, p in enumerate(regions) if p.area / ds**2 >= self.min_tumour_pixels]
        specs = []
        for k in kept[: self.tiles_per_slide]:
            polygon = regions[k]
            if self.protocol == "regions":
                x, y, placement = region_tile_origin(polygon, span, (width, height))
                specs.append(TileSpec(case, x, y, k, placement))
                continue
            centre = polygon.centroid
            if not polygon.contains(centre):
                centre = polygon.representative_point()
            x = int(round(min(max(centre.x - span / 2, 0.0), max(width - span, 0.0))))
            y = int(round(min(max(centre.y - span / 2, 0.0), max(height - span, 0.0))))
            specs.append(TileSpec(case, x, y))
        return list(dict.fromkeys(specs))  # in the tile protocol, close regions can share a tile

    def _regions(self, case: str) -> list[Polygon]:
        """The case's tumour polygons, largest first."""
        if case not in self._sorted:
            self._sorted[case] = sorted(self._geometry_of(case).geoms, key=lambda p: -p.area)
        return self._sorted[case]

    def _resolution(self, slide: Slide) -> dict[str, float]:
        if slide.objective_power is None and slide.mpp is not None:
            return {"mpp": 10.0 / self.magnification}
        return {"magnification": self.magnification}

    def _geometry_of(self, case: str) -> MultiPolygon:
        if case not in self._geometry:
            self._geometry[case] = self.tumour_geometry(case)
        return self._geometry[case]

    def _ignored_of(self, case: str) -> MultiPolygon:
        if case not in self._ignored:
            self._ignored[case] = self.ignore_geometry(case)
        return self._ignored[case]

    def _open(self, case: str) -> Slide:
        path = self.cases[case]
        if self._slide is None or self._slide.path != path:
            if self._slide is not None:
                self._slide.close()
            self._slide = open_slide(path)
        return self._slide
