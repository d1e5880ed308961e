"""Where masks become polygons and polygons become masks, in level-0 pixel coordinates.

Frames: a tile is a raster whose top-left corner lies at ``origin = (x0, y0)`` in level-0 pixels
and whose pixels are ``downsample`` level-0 pixels wide. Tile pixel ``(row i, column j)`` covers
the level-0 square ``[x0 + j*ds, x0 + (j+1)*ds) x [y0 + i*ds, y0 + (i+1)*ds)``.

Polygons are traced along pixel edges, so ``geometry_to_mask(mask_to_geometry(m, o, ds), m.shape,
o, ds)`` returns ``m`` exactly. Rasterisation samples pixel centres.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

Origin = Sequence[float]

# Boundary-edge directions in the tile's pixel frame (x right, y down), walked with the mask on
# the right-hand side: east, south, west, north, as (dx, dy).
_STEPS = np.array([(1, 0), (0, 1), (-1, 0), (0, -1)])


def mask_to_geometry(
    mask: np.ndarray,
    origin: Origin = (0.0, 0.0),
    downsample: float = 1.0,
    *,
    simplify_tolerance: float | None = None,
    max_vertices: int | None = None,
) -> MultiPolygon:
    """Trace a binary tile mask into a (multi)polygon in level-0 pixels.

    Every 4-connected group of mask pixels becomes one polygon with its holes; pixels that
    touch only at a corner belong to separate polygons (or to a hole) touching at that point,
    so the result is always valid. Time and memory grow linearly with the mask's pixels (plus
    a log factor in the length of the longest outline).

    Args:
        mask: ``(height, width)`` array, non-zero = inside, in tile pixels.
        origin: level-0 ``(x, y)`` of the tile's top-left corner.
        downsample: level-0 pixels per tile pixel.
        simplify_tolerance: Douglas-Peucker tolerance in level-0 pixels (topology preserved).
        max_vertices: upper bound on the total vertex count (see :func:`limit_vertices`).

    Returns:
        A valid MultiPolygon with holes kept; empty when the mask is empty.

    Raises:
        ValueError: for a mask that is not 2-D, a bad ``downsample``, or a ``max_vertices``
            that cannot be met.
    """
    mask = _as_mask(mask)
    _check_downsample(downsample)
    geometry = _trace_pixel_edges(mask, (float(origin[0]), float(origin[1])), float(downsample))
    if simplify_tolerance:
        geometry = simplify(geometry, simplify_tolerance)
    if max_vertices is not None:
        if max_vertices < 4:
            raise ValueError(f"max_vertices={max_vertices} is too small: a polygon needs at least 4")
        # Traced (or simplified) geometries are valid MultiPolygons already: no repair pass.
        geometry = _limit_vertices(geometry, max_vertices, start_tolerance=downsample / 2)
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
    """Douglas-Peucker simplification (topology preserved), repaired, in the geometry's units.

    Plain Douglas-Peucker first: when it keeps every ring and the result is valid, no ring
    crossed another, so it is the topology-preserving result at a fraction of its cost (GEOS's
    topology-preserving simplifier takes ~5 times as long on ragged 100k-vertex outlines). Else
    the topology-preserving simplifier runs.
    """
    if isinstance(geometry, (Polygon, MultiPolygon)) and not geometry.is_empty:
        plain = shapely.simplify(geometry, tolerance, preserve_topology=False)
        if (
            type(plain) is type(geometry)
            and _ring_count(plain) == _ring_count(geometry)
            and plain.is_valid
        ):
            return plain if isinstance(plain, MultiPolygon) else MultiPolygon([plain])
    return as_multipolygon(shapely.simplify(geometry, tolerance, preserve_topology=True))


def _ring_count(geometry: BaseGeometry) -> int:
    parts = shapely.get_parts(geometry)
    return int(parts.size + shapely.get_num_interior_rings(parts).sum())


def limit_vertices(
    geometry: BaseGeometry, max_vertices: int, start_tolerance: float = 0.5
) -> MultiPolygon:
    """Simplify until the geometry has at most ``max_vertices`` coordinates (closing ones counted).

    The Douglas-Peucker tolerance ``t`` (topology preserved, in the geometry's units) starts at
    ``start_tolerance`` and doubles. At each ``t``, parts and holes enclosing less than ``t**2``
    are dropped first, the smallest first (a dropped hole is filled): they are specks at that
    scale, and each ring costs at least 4 vertices however far it is simplified. When dropping
    them is enough the outlines are kept exact; otherwise the smallest tolerance in
    ``[t / 2, t]`` that meets the bound is used. The largest part is always kept, and at most
    ~log2(extent / start_tolerance) + 2 rounds are run, so this always ends.

    Raises:
        ValueError: when ``max_vertices < 4``, or when the largest part alone cannot be
            simplified to ``max_vertices`` coordinates.
    """
    if max_vertices < 4:
        raise ValueError(f"max_vertices={max_vertices} is too small: a polygon needs at least 4")
    if not start_tolerance > 0:
        raise ValueError(f"start_tolerance must be positive, got {start_tolerance}")
    return _limit_vertices(as_multipolygon(geometry), max_vertices, start_tolerance)


def _limit_vertices(geometry: MultiPolygon, max_vertices: int, start_tolerance: float) -> MultiPolygon:
    """limit_vertices on a valid MultiPolygon; ring areas are computed once, geometries built
    only at tolerances where the remaining rings can fit."""
    if shapely.get_num_coordinates(geometry) <= max_vertices:
        return geometry
    rings, owner = shapely.get_rings(shapely.get_parts(geometry), return_index=True)
    exterior = np.r_[True, owner[1:] != owner[:-1]]  # get_rings lists each exterior first
    ring_area = shapely.area(shapely.polygons(rings))
    part_area = ring_area[exterior]
    ring_coordinates = shapely.get_num_coordinates(rings)
    minx, miny, maxx, maxy = geometry.bounds
    extent = max(maxx - minx, maxy - miny)
    tolerance = start_tolerance
    while True:
        keep_part = part_area >= tolerance**2
        keep_part[np.argmax(part_area)] = True
        keep = keep_part[owner] & (exterior | (ring_area >= tolerance**2))
        if 4 * keep.sum() <= max_vertices:
            _, polygon_index = np.unique(owner[keep], return_inverse=True)
            kept = shapely.multipolygons(shapely.polygons(rings[keep], indices=polygon_index))
            if ring_coordinates[keep].sum() <= max_vertices:  # dropping specks was enough
                return kept
            result = simplify(kept, tolerance)
            if shapely.get_num_coordinates(result) <= max_vertices:
                return _finest_fitting(kept, max_vertices, tolerance / 2, tolerance, result)
        if tolerance > extent:  # only the largest part is left, at its coarsest
            raise ValueError(
                f"cannot bring the geometry down to max_vertices={max_vertices}: its largest part "
                f"alone keeps more vertices at tolerance {tolerance:g}; pass a larger max_vertices"
            )
        tolerance *= 2


def _finest_fitting(
    geometry: MultiPolygon, max_vertices: int, low: float, high: float, fitting: MultiPolygon, steps: int = 6
) -> MultiPolygon:
    """Bisect the tolerance in ``(low, high]`` (``fitting`` = simplified at ``high``) for the
    smallest one that still meets ``max_vertices``."""
    for _ in range(steps):
        middle = (low + high) / 2
        candidate = simplify(geometry, middle)
        if shapely.get_num_coordinates(candidate) <= max_vertices:
            high, fitting = middle, candidate
        else:
            low = middle
    return fitting


def _polygons_of(geometry: BaseGeometry) -> list[Polygon]:
    if isinstance(geometry, Polygon):
        return [geometry]
    if isinstance(geometry, MultiPolygon):
        return list(geometry.geoms)
    if geometry.geom_type == "GeometryCollection":
        return [p for part in geometry.geoms for p in _polygons_of(part)]
    return []  # points and lines from make_valid carry no area


def _trace_pixel_edges(mask: np.ndarray, origin: tuple[float, float], downsample: float) -> MultiPolygon:
    """Outlines of the mask's 4-connected components along pixel edges, as level-0 polygons.

    Every edge between a mask pixel and a non-mask pixel is walked with the mask on its right.
    Where two mask pixels touch only at a corner, the walk turns right (hugging the pixel it
    came along), so each outline bounds a single 4-connected component. An outline that
    touches itself at a corner is cut there into simple rings: the one around the component is
    its shell, the others (walked the other way round) are holes touching the shell at a point.
    """
    height, width = mask.shape
    start_x, start_y, direction, pixel = _boundary_edges(mask)
    if direction.size == 0:
        return MultiPolygon()
    # Successor of each edge: the edge leaving its end vertex, preferring right, straight, left.
    vertices = (height + 1) * (width + 1)
    keys = (start_y * (width + 1) + start_x) * 4 + direction
    order = np.argsort(keys)
    sorted_keys = keys[order]
    end_vertex = (start_y + _STEPS[direction, 1]) * (width + 1) + start_x + _STEPS[direction, 0]
    successor = np.full(direction.size, -1)
    for turn in (1, 0, 3):
        wanted = end_vertex * 4 + (direction + turn) % 4
        slot = np.minimum(np.searchsorted(sorted_keys, wanted), direction.size - 1)
        found = (successor < 0) & (sorted_keys[slot] == wanted)
        successor[found] = order[slot[found]]
    edges = np.arange(direction.size)
    graph = coo_matrix((np.ones(direction.size, np.int8), (edges, successor)), shape=(edges.size,) * 2)
    _, outline = connected_components(graph, directed=True, connection="weak")
    edges = edges[np.lexsort((_rank_in_cycle(successor, outline), outline))]

    vertex = (start_y * (width + 1) + start_x)[edges]
    ring = _split_self_touching(outline[edges], vertex, vertices)
    walk = np.argsort(ring, kind="stable")  # a cut ring's edges stay in walking order
    edges, ring = edges[walk], ring[walk]
    # Keep the corners only: the vertices where the direction changes along a ring.
    previous = np.r_[-1, np.arange(edges.size - 1)]
    first = np.r_[True, ring[1:] != ring[:-1]]
    ring_last = np.r_[np.nonzero(first)[0][1:], edges.size] - 1
    previous[first] = ring_last
    corner = direction[edges] != direction[edges][previous]
    edges, ring = edges[corner], ring[corner]
    _, ring = np.unique(ring, return_inverse=True)
    xy = np.column_stack([start_x[edges], start_y[edges]]).astype(np.float64)

    # Shells go clockwise on screen (positive shoelace area with y down), holes the other way.
    following = np.r_[np.arange(1, edges.size), 0]
    starts = np.r_[0, np.nonzero(np.diff(ring))[0] + 1]
    following[np.r_[starts[1:], edges.size] - 1] = starts
    cross = xy[:, 0] * xy[following, 1] - xy[following, 0] * xy[:, 1]
    is_hole = np.add.reduceat(cross, starts) < 0
    # The 4-connected component on the right of each ring's first edge owns the ring.
    _, components = cv2.connectedComponents(
        np.ascontiguousarray(mask, np.uint8), connectivity=4, ltype=cv2.CV_32S)
    owner = components.ravel()[pixel[edges[starts]]]
    ring_order = np.lexsort((is_hole, owner))  # per component: its shell, then its holes
    level0 = xy * downsample + origin
    rings = shapely.linearrings(level0, indices=ring)[ring_order]
    _, polygon_index = np.unique(owner[ring_order], return_inverse=True)
    return shapely.multipolygons(shapely.polygons(rings, indices=polygon_index))


def _boundary_edges(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unit edges between mask and non-mask pixels (outside the tile counts as non-mask).

    Returns ``(start_x, start_y, direction, pixel)``: the vertex each edge starts at, its
    direction (index into ``_STEPS``) and the flat index of the mask pixel on its right.
    """
    height, width = mask.shape
    padded = np.zeros((height + 2, width + 2), bool)
    padded[1:-1, 1:-1] = mask
    above, below = padded[:-1, 1:-1], padded[1:, 1:-1]  # across horizontal edge (y=i, x=j..j+1)
    left, right = padded[1:-1, :-1], padded[1:-1, 1:]  # across vertical edge (x=j, y=i..i+1)
    parts = []
    for direction, crossing, dx, dy, pixel_di, pixel_dj in (
        (0, below & ~above, 0, 0, 0, 0),  # east along the top of pixel (i, j)
        (2, above & ~below, 1, 0, -1, 0),  # west along the bottom of pixel (i - 1, j)
        (1, left & ~right, 0, 0, 0, -1),  # south along the right of pixel (i, j - 1)
        (3, right & ~left, 0, 1, 0, 0),  # north along the left of pixel (i, j)
    ):
        i, j = np.nonzero(crossing)
        parts.append((j + dx, i + dy, np.full(i.size, direction), (i + pixel_di) * width + j + pixel_dj))
    return tuple(np.concatenate(column) for column in zip(*parts))


def _rank_in_cycle(successor: np.ndarray, cycle: np.ndarray) -> np.ndarray:
    """Position of every edge along its cycle, counted from the cycle's lowest-numbered edge.

    Pointer jumping: log2(longest cycle) vectorised rounds instead of a Python walk.
    """
    n = successor.size
    head = np.full(cycle.max() + 1, n)
    np.minimum.at(head, cycle, np.arange(n))
    jump = successor.copy()
    to_end = np.ones(n, np.int64)
    last = successor == head[cycle]  # the edge leading back to the head ends the walk
    jump[last] = np.nonzero(last)[0]
    to_end[last] = 0
    while True:
        ahead = jump[jump]
        if np.array_equal(ahead, jump):
            break
        to_end += to_end[jump]
        jump = ahead
    return -to_end


def _split_self_touching(outline: np.ndarray, vertex: np.ndarray, vertices: int) -> np.ndarray:
    """Ring ids for edges listed in walking order per outline, cutting outlines that pass a
    vertex twice into simple rings (a stack walk, only over the outlines that need it)."""
    ring = outline.astype(np.int64)
    key = outline.astype(np.int64) * vertices + vertex
    _, first_seen, counts = np.unique(key, return_index=True, return_counts=True)
    touching = np.unique(outline[first_seen[counts > 1]])
    next_id = outline.max() + 1
    vertex_list = vertex.tolist()
    for start, stop in _runs_of(outline, touching):
        stack: list[int] = []
        position: dict[int, int] = {}
        for k in range(start, stop):
            at = position.get(vertex_list[k])
            if at is not None:  # back at a vertex: the edges since then close a ring
                for closed in stack[at:]:
                    ring[closed] = next_id
                    del position[vertex_list[closed]]
                del stack[at:]
                next_id += 1
            position[vertex_list[k]] = len(stack)
            stack.append(k)
    return ring


def _runs_of(outline: np.ndarray, wanted: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` index ranges of the runs of ``outline`` (sorted) whose value is wanted."""
    starts = np.searchsorted(outline, wanted, side="left")
    stops = np.searchsorted(outline, wanted, side="right")
    return list(zip(starts.tolist(), stops.tolist()))


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
