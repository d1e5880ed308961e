"""Where masks become polygons and polygons become masks, in level-0 pixel coordinates.

Frames: a tile is a raster whose top-left corner lies at ``origin = (x0, y0)`` in level-0 pixels
and whose pixels are ``downsample`` level-0 pixels wide. Tile pixel ``(row i, column j)`` covers
the level-0 square ``[x0 + j*ds, x0 + (j+1)*ds) x [y0 + i*ds, y0 + (i+1)*ds)``.

Polygons are traced along pixel edges, so ``geometry_to_mask(mask_to_geometry(m, o, ds), m.shape,
o, ds)`` returns ``m`` exactly. Rasterisation samples pixel centres.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

Origin = Sequence[float]


def mask_to_geometry(
    mask: np.ndarray,
    origin: Origin = (0.0, 0.0),
    downsample: float = 1.0,
    *,
    simplify_tolerance: float | None = None,
    max_vertices: int | None = None,
) -> MultiPolygon:
    """Trace a binary tile mask into a (multi)polygon in level-0 pixels.

    Args:
        mask: ``(height, width)`` array, non-zero = inside, in tile pixels.
        origin: level-0 ``(x, y)`` of the tile's top-left corner.
        downsample: level-0 pixels per tile pixel.
        simplify_tolerance: Douglas-Peucker tolerance in level-0 pixels (topology preserved).
        max_vertices: upper bound on the total vertex count; the tolerance grows until it holds.

    Returns:
        A valid MultiPolygon with holes kept; empty when the mask is empty.
    """
    mask = _as_mask(mask)
    _check_downsample(downsample)
    rows, starts, ends = _row_runs(mask)
    if rows.size == 0:
        return MultiPolygon()
    boxes = shapely.box(starts, rows, ends, rows + 1)
    # simplify(0) drops the collinear vertices that row boundaries leave along straight edges.
    traced = shapely.simplify(shapely.union_all(boxes), 0.0)
    x0, y0 = float(origin[0]), float(origin[1])
    level0 = shapely.transform(traced, lambda xy: xy * downsample + (x0, y0))
    geometry = as_multipolygon(level0)
    if simplify_tolerance:
        geometry = simplify(geometry, simplify_tolerance)
    if max_vertices is not None:
        geometry = limit_vertices(geometry, max_vertices, start_tolerance=downsample / 2)
    return geometry


def geometry_to_mask(
    geometry: BaseGeometry,
    shape: tuple[int, int],
    origin: Origin = (0.0, 0.0),
    downsample: float = 1.0,
) -> np.ndarray:
    """Rasterise a level-0 geometry into a tile of ``shape = (height, width)`` pixels.

    A pixel is inside when its centre, ``origin + ((j + 0.5), (i + 0.5)) * downsample`` in
    level-0 pixels, lies inside or on the boundary of the geometry.
    """
    _check_downsample(downsample)
    height, width = (int(s) for s in shape)
    out = np.zeros((height, width), dtype=bool)
    if geometry is None or geometry.is_empty:
        return out
    x0, y0 = float(origin[0]), float(origin[1])
    local = shapely.transform(geometry, lambda xy: (xy - (x0, y0)) / downsample)
    minx, miny, maxx, maxy = local.bounds
    j0, j1 = max(0, int(np.floor(minx - 0.5))), min(width, int(np.ceil(maxx + 0.5)))
    i0, i1 = max(0, int(np.floor(miny - 0.5))), min(height, int(np.ceil(maxy + 0.5)))
    if j0 >= j1 or i0 >= i1:
        return out
    shapely.prepare(local)
    xs = np.arange(j0, j1) + 0.5
    for i in range(i0, i1):
        out[i, j0:j1] = shapely.intersects_xy(local, xs, i + 0.5)
    return out


def as_multipolygon(geometry: BaseGeometry) -> MultiPolygon:
    """Repair a geometry (``make_valid``) and keep its polygonal parts as one MultiPolygon."""
    if geometry is None or geometry.is_empty:
        return MultiPolygon()
    if not geometry.is_valid:
        geometry = shapely.make_valid(geometry)
    polygons = [
        polygon
        for part in shapely.get_parts(geometry)
        for polygon in _polygons_of(part)
        if polygon.area > 0
    ]
    return MultiPolygon(polygons)


def simplify(geometry: BaseGeometry, tolerance: float) -> MultiPolygon:
    """Douglas-Peucker simplification (topology preserved), repaired, in the geometry's units."""
    return as_multipolygon(shapely.simplify(geometry, tolerance, preserve_topology=True))


def limit_vertices(
    geometry: BaseGeometry, max_vertices: int, start_tolerance: float = 0.5
) -> MultiPolygon:
    """Simplify with a doubling tolerance until the geometry has at most ``max_vertices``."""
    if max_vertices < 4:
        raise ValueError(f"max_vertices={max_vertices} is too small: a polygon needs at least 4")
    result = as_multipolygon(geometry)
    tolerance = start_tolerance
    while shapely.get_num_coordinates(result) > max_vertices:
        result = simplify(geometry, tolerance)
        tolerance *= 2
    return result


def _polygons_of(geometry: BaseGeometry) -> list[Polygon]:
    if isinstance(geometry, Polygon):
        return [geometry]
    if isinstance(geometry, MultiPolygon):
        return list(geometry.geoms)
    if geometry.geom_type == "GeometryCollection":
        return [p for part in geometry.geoms for p in _polygons_of(part)]
    return []  # points and lines from make_valid carry no area


def _row_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (row, start column, end column) of every horizontal run of True pixels."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    rows, cols = np.nonzero(np.diff(padded, axis=1))
    # Within each row the changes alternate start, end, start, end, ... in column order.
    return rows[0::2], cols[0::2], cols[1::2]


def _as_mask(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(
            f"mask must be a 2-D (height, width) array, got shape {mask.shape}; "
            "pass one mask at a time (e.g. mask[0] for a batch)"
        )
    return mask.astype(bool, copy=False)


def _check_downsample(downsample: float) -> None:
    if not np.isfinite(downsample) or downsample <= 0:
        raise ValueError(f"downsample must be a positive number of level-0 pixels, got {downsample}")
