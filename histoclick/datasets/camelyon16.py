"""CAMELYON16: tumour-centred tiles from slides with ASAP XML annotations, at x10 by default.

ASAP XML (level-0 pixel floats)::

    <ASAP_Annotations><Annotations>
      <Annotation Name="Annotation 0" Type="Polygon" PartOfGroup="Tumor">
        <Coordinates><Coordinate Order="0" X="55486.6" Y="59360.2"/>...</Coordinates>
      </Annotation>
    </Annotations></ASAP_Annotations>

Groups ``Tumor``, ``_0`` and ``_1`` are tumour; ``_2`` is normal tissue inside tumour and is cut
out. :class:`SlideTiles` (shared with PAIP) turns a slide plus a level-0 tumour geometry into
tiles centred on tumour regions.
"""

from __future__ import annotations

import abc
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon

from histoclick.evaluation.protocol import Dataset, Sample
from histoclick.geometry import as_multipolygon, geometry_to_mask
from histoclick.slides import Slide, Tile, open_slide

TUMOUR_GROUPS = ("Tumor", "_0", "_1")
HOLE_GROUPS = ("_2",)
SLIDE_SUFFIXES = (".tif", ".tiff", ".svs", ".ndpi", ".mrxs")


def read_asap_xml(
    path: str | os.PathLike,
    tumour_groups: Sequence[str] = TUMOUR_GROUPS,
    hole_groups: Sequence[str] = HOLE_GROUPS,
) -> MultiPolygon:
    """The tumour region of an ASAP XML file in level-0 pixels: the union of the polygons in
    ``tumour_groups`` minus the union of those in ``hole_groups``.

    Vertices are sorted by ``Order``; rings are closed and repaired (``make_valid``). Annotations
    with fewer than three vertices (dots) or in other groups are ignored.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"{path} is not a readable ASAP XML file: {err}") from None
    if root.find("Annotations") is None:
        raise ValueError(
            f"{path} has no <Annotations> element: expected an ASAP XML file "
            "(<ASAP_Annotations><Annotations><Annotation PartOfGroup=...>)"
        )
    tumour, holes = [], []
    for annotation in root.iter("Annotation"):
        group = annotation.get("PartOfGroup")
        coordinates = sorted(
            annotation.iter("Coordinate"), key=lambda c: float(c.get("Order", "0"))
        )
        if len(coordinates) < 3:
            continue
        polygon = as_multipolygon(
            Polygon([(float(c.get("X")), float(c.get("Y"))) for c in coordinates])
        )
        if group in tumour_groups:
            tumour.append(polygon)
        elif group in hole_groups:
            holes.append(polygon)
    region = shapely.union_all(tumour) if tumour else MultiPolygon()
    if holes:
        region = region.difference(shapely.union_all(holes))
    return as_multipolygon(region)


@dataclass(frozen=True)
class TileSpec:
    """Where one tile is read: ``case`` (slide id) and the level-0 top-left ``(x, y)``."""

    case: str
    x: int
    y: int


class SlideTiles(Dataset):
    """Square tiles read from slides at a magnification, centred on tumour regions.

    For every case the tumour geometry (level 0) is split into its polygons; each polygon whose
    area is at least ``min_tumour_pixels`` tile pixels gives one tile of ``tile_size`` pixels
    centred on its centroid (or on a point inside it when the centroid falls outside), moved
    inside the slide when it would cross the slide's edge. Larger regions come first;
    ``tiles_per_slide`` keeps the largest ones. Sample ids are ``<case>@<x>,<y>`` (level-0 origin).

    A slide without objective power in its metadata (e.g. CAMELYON16's generic TIFFs) is read
    at the equivalent resolution ``10 / magnification`` um/px (x40 = 0.25 um/px).

    Subclasses give the cases (``cases``: id -> slide path) and the tumour geometry per case
    (``tumour_geometry``); they may override ``tile_mask`` to rasterise from another source.
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
    ) -> None:
        super().__init__(name)
        if not cases:
            raise FileNotFoundError(f"{name}: no slides with annotations found")
        self.cases = dict(sorted(cases.items()))
        self.tile_size = int(tile_size)
        self.magnification = float(magnification)
        self.tiles_per_slide = tiles_per_slide
        self.min_tumour_pixels = float(min_tumour_pixels)
        self._tiles: dict[str, TileSpec] | None = None
        self._geometry: dict[str, MultiPolygon] = {}
        self._slide: Slide | None = None

    @abc.abstractmethod
    def tumour_geometry(self, case: str) -> MultiPolygon:
        """The case's tumour region in level-0 pixels."""

    def tile_mask(self, case: str, tile: Tile) -> np.ndarray:
        """The gt of ``tile``: pixels whose centre lies in the tumour geometry."""
        shape = (tile.height, tile.width)
        return geometry_to_mask(self._geometry_of(case), shape, tile.origin, tile.downsample)

    @property
    def sample_ids(self) -> list[str]:
        return list(self._tile_specs())

    def load(self, sample_id: str) -> Sample:
        spec = self._tile_specs()[sample_id]
        slide = self._open(spec.case)
        tile = slide.read_region(spec.x, spec.y, self.tile_size, self.tile_size, **self._resolution(slide))
        return Sample(
            id=sample_id,
            image=tile.image,
            gt=self.tile_mask(spec.case, tile),
            meta={
                "slide": str(self.cases[spec.case]),
                "origin": tile.origin,
                "downsample": tile.downsample,
                "magnification": self.magnification,
            },
        )

    def _tile_specs(self) -> dict[str, TileSpec]:
        if self._tiles is None:
            self._tiles = {
                f"{spec.case}@{spec.x},{spec.y}": spec for case in self.cases for spec in self._plan(case)
            }
        return self._tiles

    def _plan(self, case: str) -> list[TileSpec]:
        slide = self._open(case)
        ds = slide.downsample_for(**self._resolution(slide))
        span = self.tile_size * ds  # level-0 pixels per tile side
        width, height = slide.dimensions
        regions = sorted(self._geometry_of(case).geoms, key=lambda p: -p.area)
        regions = [p for p in regions if p.area / ds**2 >= self.min_tumour_pixels]
        specs = []
        for polygon in regions[: self.tiles_per_slide]:
            centre = polygon.centroid
            if not polygon.contains(centre):
                centre = polygon.representative_point()
            x = int(round(min(max(centre.x - span / 2, 0.0), max(width - span, 0.0))))
            y = int(round(min(max(centre.y - span / 2, 0.0), max(height - span, 0.0))))
            specs.append(TileSpec(case, x, y))
        return list(dict.fromkeys(specs))  # regions close together can share a tile

    def _resolution(self, slide: Slide) -> dict[str, float]:
        if slide.objective_power is None and slide.mpp is not None:
            return {"mpp": 10.0 / self.magnification}
        return {"magnification": self.magnification}

    def _geometry_of(self, case: str) -> MultiPolygon:
        if case not in self._geometry:
            self._geometry[case] = self.tumour_geometry(case)
        return self._geometry[case]

    def _open(self, case: str) -> Slide:
        path = self.cases[case]
        if self._slide is None or self._slide.path != path:
            if self._slide is not None:
                self._slide.close()
            self._slide = open_slide(path)
        return self._slide


class Camelyon16Dataset(SlideTiles):
    """CAMELYON16 tumour tiles: slides in ``slides_dir``, ASAP XML files (same stem) in
    ``annotations_dir`` (e.g. ``training/tumor`` and ``training/lesion_annotations``). Slides
    without an XML file (normal slides) are not used. Defaults: 512-pixel tiles at x10."""

    def __init__(
        self,
        slides_dir: str | os.PathLike,
        annotations_dir: str | os.PathLike,
        *,
        name: str = "camelyon16",
        tile_size: int = 512,
        magnification: float = 10.0,
        tiles_per_slide: int | None = None,
        min_tumour_pixels: float = 64.0,
    ) -> None:
        slides_dir, annotations_dir = Path(slides_dir), Path(annotations_dir)
        for folder in (slides_dir, annotations_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f"CAMELYON16 folder not found: {folder}")
        self.annotations_dir = annotations_dir
        cases = {
            path.stem: path
            for path in slides_dir.iterdir()
            if path.suffix.lower() in SLIDE_SUFFIXES and (annotations_dir / f"{path.stem}.xml").is_file()
        }
        if not cases:
            raise FileNotFoundError(
                f"no slide in {slides_dir} has an ASAP XML file of the same name in "
                f"{annotations_dir} (e.g. tumor_001.tif and tumor_001.xml)"
            )
        super().__init__(
            name,
            cases,
            tile_size=tile_size,
            magnification=magnification,
            tiles_per_slide=tiles_per_slide,
            min_tumour_pixels=min_tumour_pixels,
        )

    def tumour_geometry(self, case: str) -> MultiPolygon:
        return read_asap_xml(self.annotations_dir / f"{case}.xml")
