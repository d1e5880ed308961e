"""CAMELYON16: tiles around tumour regions of slides with ASAP XML annotations, at x10 by default.

ASAP XML (level-0 pixel floats)::

    <ASAP_Annotations><Annotations>
      <Annotation Name="Annotation 0" Type="Polygon" PartOfGroup="Tumor">
        <Coordinates><Coordinate Order="0" X="55486.6" Y="59360.2"/>...</Coordinates>
      </Annotation>
    </Annotations></ASAP_Annotations>

Groups ``Tumor``, ``_0`` and ``_1`` are tumour; ``_2`` and ``Exclusion`` are areas inside tumour
that are not tumour: they are cut out of the tumour and ignored in evaluation (neither tumour
nor background). Other groups are reported with a warning and not used. Tiles and the two
sample protocols: :class:`histoclick.datasets.slide_tiles.SlideTiles`.
"""

from __future__ import annotations

import logging
import os
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import shapely
from shapely.geometry import MultiPolygon, Polygon

from histoclick.datasets.slide_tiles import SlideProtocol, SlideTiles
from histoclick.geometry import as_multipolygon

TUMOUR_GROUPS = ("Tumor", "_0", "_1")
EXCLUSION_GROUPS = ("_2", "Exclusion")
SLIDE_SUFFIXES = (".tif", ".tiff", ".svs", ".ndpi", ".mrxs")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AsapAnnotations:
    """An ASAP XML file's areas in level-0 pixels: ``tumour`` (the tumour groups minus the
    exclusions) and ``exclusion`` (the union of the exclusion groups)."""

    tumour: MultiPolygon
    exclusion: MultiPolygon


def read_asap_annotations(
    path: str | os.PathLike,
    tumour_groups: Sequence[str] = TUMOUR_GROUPS,
    exclusion_groups: Sequence[str] = EXCLUSION_GROUPS,
) -> AsapAnnotations:
    """Read the tumour and exclusion areas of an ASAP XML file (level-0 pixels).

    Vertices are sorted by ``Order``; rings are closed and repaired (``make_valid``).
    Annotations with fewer than three vertices (dots) are not areas and are skipped; those in
    a group that is neither tumour nor exclusion are skipped with a warning naming the groups.
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
    tumour, exclusion, unknown = [], [], {}
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
        elif group in exclusion_groups:
            exclusion.append(polygon)
        else:
            unknown[group] = unknown.get(group, 0) + 1
    if unknown:
        found = ", ".join(f"{group!r} ({n} polygons)" for group, n in unknown.items())
        warnings.warn(
            f"{path}: annotation groups {found} are neither tumour ({', '.join(tumour_groups)}) "
            f"nor exclusion ({', '.join(exclusion_groups)}) and are not used; pass "
            "tumour_groups= / exclusion_groups= to read them",
            stacklevel=2,
        )
    holes = as_multipolygon(shapely.union_all(exclusion)) if exclusion else MultiPolygon()
    region = shapely.union_all(tumour) if tumour else MultiPolygon()
    return AsapAnnotations(as_multipolygon(region.difference(holes)), holes)


def read_asap_xml(
    path: str | os.PathLike,
    tumour_groups: Sequence[str] = TUMOUR_GROUPS,
    exclusion_groups: Sequence[str] = EXCLUSION_GROUPS,
) -> MultiPolygon:
    """The tumour area of an ASAP XML file in level-0 pixels: the union of the polygons in
    ``tumour_groups`` minus those in ``exclusion_groups`` (see :func:`read_asap_annotations`)."""
    return read_asap_annotations(path, tumour_groups, exclusion_groups).tumour


class Camelyon16Dataset(SlideTiles):
    """CAMELYON16 tumour samples: slides in ``slides_dir``, ASAP XML files (same stem) in
    ``annotations_dir`` (e.g. ``training/tumor`` and ``training/lesion_annotations``).

    Slides without an XML file (normal slides) are not used; ``dropped`` maps each unused slide
    to the reason (also logged). Exclusion groups are holes in the tumour and ignored pixels in
    every sample. Defaults: 512-pixel tiles at x10, region-level protocol (see
    :class:`~histoclick.datasets.slide_tiles.SlideTiles`; ``protocol="tiles"`` for the study's
    tumour-centred tiles).
    """

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
        protocol: SlideProtocol = "regions",
    ) -> None:
        slides_dir, annotations_dir = Path(slides_dir).expanduser(), Path(annotations_dir).expanduser()
        for folder in (slides_dir, annotations_dir):
            if not folder.is_dir():
                raise FileNotFoundError(f"CAMELYON16 folder not found: {folder}")
        self.annotations_dir = annotations_dir
        slides = sorted(p for p in slides_dir.iterdir() if p.suffix.lower() in SLIDE_SUFFIXES)
        cases = {p.stem: p for p in slides if (annotations_dir / f"{p.stem}.xml").is_file()}
        self.dropped = {
            str(p): f"no annotation {annotations_dir / f'{p.stem}.xml'} (a normal slide)"
            for p in slides
            if p.stem not in cases
        }
        for path, reason in self.dropped.items():
            logger.info("CAMELYON16: slide %s not used: %s", path, reason)
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
            protocol=protocol,
        )
        self._annotations: dict[str, AsapAnnotations] = {}

    def tumour_geometry(self, case: str) -> MultiPolygon:
        return self._read(case).tumour

    def ignore_geometry(self, case: str) -> MultiPolygon:
        return self._read(case).exclusion

    def _read(self, case: str) -> AsapAnnotations:
        if case not in self._annotations:
            self._annotations[case] = read_asap_annotations(self.annotations_dir / f"{case}.xml")
        return self._annotations[case]
