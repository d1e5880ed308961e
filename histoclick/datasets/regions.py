"""Where a tile goes for one target region (the region-level protocol), in level-0 pixels.

A region whose bounding box fits in the tile is centred (the whole region and its whole boundary
are in the tile). A larger region gets a tile centred on the point of its outer boundary nearest
its centroid, so the tile holds both tumour and non-tumour and the boundary to be traced crosses
it (centring it on the centroid would give a tile of tumour only). Tiles are then moved inside
the slide; near the slide's edge that shift is less than half a tile, so the chosen point stays
inside the tile.
"""

from __future__ import annotations

from typing import Literal

from shapely.geometry import MultiLineString, MultiPolygon, Polygon

Placement = Literal["centred", "boundary"]


def region_tile_origin(
    region: Polygon | MultiPolygon, span: float, slide_size: tuple[int, int]
) -> tuple[int, int, Placement]:
    """Level-0 top-left ``(x, y)`` of a tile of ``span`` level-0 pixels per side for ``region``
    (a level-0 polygon), and how it was placed (``"centred"`` or ``"boundary"``).

    ``slide_size`` is the slide's level-0 ``(width, height)``.
    """
    minx, miny, maxx, maxy = region.bounds
    if maxx - minx <= span and maxy - miny <= span:
        cx, cy, placement = (minx + maxx) / 2, (miny + maxy) / 2, "centred"
    else:
        parts = region.geoms if isinstance(region, MultiPolygon) else [region]
        outline = MultiLineString([part.exterior for part in parts])  # outer rings: holes are not targets
        point = outline.interpolate(outline.project(region.centroid))
        cx, cy, placement = point.x, point.y, "boundary"
    width, height = slide_size
    x = int(round(min(max(cx - span / 2, 0.0), max(width - span, 0.0))))
    y = int(round(min(max(cy - span / 2, 0.0), max(height - span, 0.0))))
    return x, y, placement
