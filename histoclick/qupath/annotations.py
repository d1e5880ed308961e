"""Annotations as a GeoDataFrame: the one table shared by GeoJSON files and QuPath projects.

Columns (:data:`COLUMNS`), one row per QuPath object, geometry in level-0 pixels (origin top-left,
x right, y down):

- ``id``: the object's UUID string (None when unknown; a new one is made on writing).
- ``object_type``: "annotation", "detection", "cell", "tile", "tmaCore" (QuPath's ``objectType``).
- ``name``: the object's name or None.
- ``classification``: the class name (derived classes as "Tumor: Positive") or None.
- ``color``: the class colour as an ``(r, g, b)`` tuple, or None when the source gave none.
- ``is_locked``: bool.
- ``measurements``: dict name -> float (NaN and infinities allowed).
- ``object_color``: the object's own colour ``(r, g, b)`` (QuPath's ``PathObject.getColor()``,
  shown instead of the class colour), or None.
- ``metadata``: dict name -> str (QuPath's ``PathObject.getMetadata()``).
- ``plane``: ``{"c": c, "z": z, "t": t}`` of the object's ROI, or None for QuPath's default plane
  (c -1, z 0, t 0).
- ``parent_id``: the ``id`` of the object this one is a child of (QuPath's ``childObjects``), or
  None for a top-level object.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely.geometry import MultiPolygon
from shapely.geometry.base import BaseGeometry

from histoclick.geometry import mask_to_geometry

if TYPE_CHECKING:
    from histoclick.session import ClickSession
    from histoclick.slides import Tile

RGB = tuple[int, int, int]

COLUMNS = [
    "id",
    "object_type",
    "name",
    "classification",
    "color",
    "is_locked",
    "measurements",
    "object_color",
    "metadata",
    "plane",
    "parent_id",
]
# QuPath's object types (the ``objectType`` of its GeoJSON).
OBJECT_TYPES = ("annotation", "detection", "cell", "tile", "tmaCore")
# The value a row takes for a column its source does not give.
_DEFAULTS: dict[str, Any] = {
    "id": None,
    "object_type": "annotation",
    "name": None,
    "classification": None,
    "color": None,
    "is_locked": False,
    "object_color": None,
    "plane": None,
    "parent_id": None,
}

# QuPath's own colours for its standard classes (PathClass.StandardPathClasses).
STANDARD_CLASS_COLORS: dict[str, RGB] = {
    "Tumor": (200, 0, 0),
    "Stroma": (150, 200, 150),
    "Immune cells": (160, 90, 160),
    "Necrosis": (50, 50, 50),
    "Other": (255, 200, 0),
    "Region*": (0, 0, 180),
    "Ignore*": (180, 180, 180),
    "Image": (128, 128, 128),
}
# PathClass's base colours of its intensity classes, scaled by getDefaultColor.
_INTENSITY_COLORS: dict[str, RGB] = {
    "1+": (255, 215, 0),
    "2+": (225, 150, 50),
    "3+": (200, 50, 50),
    "Positive": (200, 50, 50),
    "Negative": (90, 90, 180),
}
# How a derived intensity class darkens (<1) or brightens (>1) its parent's colour.
_DERIVED_SCALE = {"1+": 0.9, "2+": 0.6, "3+": 0.4, "Positive": 0.75, "Negative": 1.25}


def for_qupath(geometry: BaseGeometry) -> BaseGeometry:
    """The geometry as every QuPath version reads it: a one-part MultiPolygon becomes its Polygon.

    QuPath 0.4.x and 0.5.x throw a NullPointerException (GeometryTools -> RoiTools.getShapeROI) on
    a MultiPolygon of one part, through GeoJSON import and paquo's ``from_shapely`` alike. Use this
    wherever histoclick hands geometry to QuPath. Coordinates are unchanged (level-0 pixels).
    """
    if isinstance(geometry, MultiPolygon) and len(geometry.geoms) == 1:
        return geometry.geoms[0]
    return geometry


def default_class_color(name: str) -> RGB:
    """The colour QuPath gives class ``name`` when it creates it without one (0.4 - 0.6).

    Follows ``PathClass.getDefaultColor``: QuPath's standard classes keep their colours,
    "Positive", "Negative", "1+", "2+", "3+" get QuPath's intensity colours (derived from their
    parent's colour for derived classes such as "Stroma: Positive"), and any other name gets the
    colour of Java's ``Random`` seeded with the class's ``String.hashCode()``. Deterministic
    across runs and machines; derived classes are written "Parent: Child".
    """
    names = [part.strip() for part in name.split(":")]
    if names[0] in _INTENSITY_COLORS:
        color = _scaled(_INTENSITY_COLORS[names[0]], 1.25)
    else:
        color = STANDARD_CLASS_COLORS.get(names[0]) or _java_random_color(names[0])
    for depth in range(1, len(names)):
        parent, child = names[:depth], names[depth]
        if child in _INTENSITY_COLORS:
            if parent == ["Tumor"]:
                color = _INTENSITY_COLORS[child]
            else:
                color = _scaled(color, _DERIVED_SCALE[child])
        else:
            color = _java_random_color("\n".join(names[: depth + 1]))
    return color


def _scaled(color: RGB, scale: float) -> RGB:
    """QuPath's ``ColorTools.makeScaledRGB``: each channel times ``scale``, floored, at most 255."""
    r, g, b = (min(255, int(c * scale)) for c in color)
    return r, g, b


def _java_random_color(cache_name: str) -> RGB:
    """QuPath's colour for a new class: ``new Random(cacheName.hashCode())``, redrawn while dark."""
    seed = 0
    utf16 = cache_name.encode("utf-16-be")
    for i in range(0, len(utf16), 2):  # Java chars are UTF-16 code units
        seed = (31 * seed + int.from_bytes(utf16[i : i + 2], "big")) & 0xFFFFFFFF
    if seed >= 2**31:  # String.hashCode is a signed int; Random(long) sign-extends it
        seed -= 2**32
    state = (seed ^ 0x5DEECE66D) & (2**48 - 1)

    def next_int_256() -> int:  # Random.nextInt(256): a power of two takes the top 8 bits
        nonlocal state
        state = (state * 0x5DEECE66D + 0xB) & (2**48 - 1)
        return state >> 40

    r = g = b = 0
    while r < 40 and g < 40 and b < 40:
        r, g, b = next_int_256(), next_int_256(), next_int_256()
    return r, g, b


def as_rgb(color: Any) -> RGB:
    """Validate an ``(r, g, b)`` or ``(r, g, b, a)`` colour of 0-255 integers; alpha is dropped."""
    values = list(color)
    if len(values) not in (3, 4) or not all(
        float(v).is_integer() and 0 <= v <= 255 for v in values
    ):
        raise ValueError(f"a colour must be [r, g, b] integers in 0..255, got {color!r}")
    r, g, b = (int(v) for v in values[:3])
    return r, g, b


Shape = Union[np.ndarray, BaseGeometry]


@dataclass(frozen=True)
class Annotation:
    """One annotation to write: a mask (tile pixels) or a geometry (level-0 pixels), plus its class.

    ``measurements`` are numbers shown in QuPath's measurement table (e.g. clicks used, predicted
    IoU). ``color`` is the object's own colour (QuPath's ``PathObject.setColor``: the object is
    drawn in it instead of its class colour); None leaves the class colour.
    """

    shape: Shape
    classification: str | None = None
    name: str | None = None
    measurements: Mapping[str, float] = field(default_factory=dict)
    is_locked: bool = False
    color: RGB | None = None

    @classmethod
    def from_session(
        cls,
        session: ClickSession,
        classification: str | None,
        *,
        name: str | None = None,
        simplify_tolerance: float | None = None,
        max_vertices: int | None = None,
    ) -> Annotation:
        """The current mask of a :class:`~histoclick.ClickSession`, in level-0 pixels.

        Measurements: ``histoclick clicks`` (clicks used) and ``histoclick predicted IoU``; the
        name defaults to ``histoclick <model name>`` so the model stays visible in QuPath.
        """
        if session.last is None:
            raise ValueError("the session has no mask yet: click at least once before saving it")
        geometry = session.geometry(
            simplify_tolerance=simplify_tolerance, max_vertices=max_vertices
        )
        return cls(
            shape=geometry,
            classification=classification,
            name=name if name is not None else f"histoclick {session.model.name}",
            measurements={
                "histoclick clicks": float(len(session.clicks)),
                "histoclick predicted IoU": float(session.last.predicted_iou),
            },
        )


AnnotationLike = Union[Annotation, Shape, tuple]


def annotations_frame(
    annotations: gpd.GeoDataFrame | Iterable[AnnotationLike],
    *,
    tile: Tile | None = None,
    origin: Sequence[float] = (0.0, 0.0),
    downsample: float = 1.0,
    simplify_tolerance: float | None = None,
    max_vertices: int | None = None,
) -> gpd.GeoDataFrame:
    """Build the annotation table (:data:`COLUMNS` + geometry) from what a user holds.

    Args:
        annotations: a GeoDataFrame (validated and completed), or an iterable of
            :class:`Annotation`, ``(mask_or_geometry, class_name)`` pairs, or bare masks/geometries
            (unclassified).
        tile: the tile the masks were taken from; its origin and downsample place them.
        origin, downsample: the same for masks without a Tile (level-0 top-left, level-0
            pixels per mask pixel).
        simplify_tolerance, max_vertices: passed to :func:`histoclick.geometry.mask_to_geometry`.

    Every row gets a new UUID ``id`` (GeoDataFrame rows keep theirs). An empty mask or geometry is
    an error: QuPath cannot hold an object without a region.
    """
    if isinstance(annotations, gpd.GeoDataFrame):
        return _complete_frame(annotations)
    if tile is not None:
        if tuple(origin) != (0.0, 0.0) or downsample != 1.0:
            raise ValueError("give either tile or origin/downsample, not both")
        origin, downsample = tile.origin, tile.downsample
    rows, geometries = [], []
    for index, item in enumerate(annotations):
        annotation = _as_annotation(item)
        if isinstance(annotation.shape, BaseGeometry):
            geometry = annotation.shape
        else:
            mask = np.asarray(annotation.shape)
            if tile is not None and mask.shape != (tile.height, tile.width):
                raise ValueError(
                    f"annotation {index}: mask is {mask.shape} but the tile is "
                    f"{(tile.height, tile.width)}; masks must cover the tile's pixels"
                )
            geometry = mask_to_geometry(
                mask,
                origin,
                downsample,
                simplify_tolerance=simplify_tolerance,
                max_vertices=max_vertices,
            )
        if geometry.is_empty:
            raise ValueError(
                f"annotation {index} is empty: QuPath cannot hold an object without a region"
            )
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "object_type": "annotation",
                "name": annotation.name,
                "classification": annotation.classification,
                "is_locked": bool(annotation.is_locked),
                "measurements": measurement_dict(annotation.measurements),
                "object_color": None if annotation.color is None else as_rgb(annotation.color),
            }
        )
        geometries.append(geometry)
    return frame_from_rows(rows, geometries)


def select_classes(frame: gpd.GeoDataFrame, classes: str | Iterable[str]) -> gpd.GeoDataFrame:
    """Rows whose classification is one of ``classes`` (exact names)."""
    wanted = {classes} if isinstance(classes, str) else set(classes)
    return frame[frame["classification"].isin(wanted)]


def measurement_dict(measurements: Mapping[str, Any] | None) -> dict[str, float]:
    """Validate measurements: string names, real numbers (NaN and infinities allowed)."""
    out: dict[str, float] = {}
    for key, value in (measurements or {}).items():
        if not isinstance(key, str):
            raise TypeError(f"measurement names must be strings, got {key!r}")
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"measurement {key!r} = {value!r} is not a number; QuPath measurements are numeric"
            ) from None
    return out


def metadata_dict(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    """Validate object metadata: QuPath keeps string keys and string values only."""
    out: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(
                f"metadata {key!r}: {value!r} is not text; QuPath object metadata maps text to text"
            )
        out[key] = value
    return out


def plane_dict(plane: Mapping[str, Any] | None) -> dict[str, int] | None:
    """``{"c", "z", "t"}`` integers of a QuPath ImagePlane (missing keys: c -1, z 0, t 0), or
    None for the default plane (c -1, z 0, t 0), as QuPath leaves it out of its files."""
    if plane is None:
        return None
    full = {"c": -1, "z": 0, "t": 0}
    for key, value in plane.items():
        if key in full:
            if isinstance(value, bool) or not float(value).is_integer():
                raise ValueError(f"plane {key} must be an integer, got {value!r}")
            full[key] = int(value)
    return None if full == {"c": -1, "z": 0, "t": 0} else full


def frame_from_rows(rows: list[dict[str, Any]], geometries: list[BaseGeometry]) -> gpd.GeoDataFrame:
    """The annotation table from row dicts (keys of :data:`COLUMNS`) and their geometries.

    A key missing from a row takes its default (None, "annotation", False, or an empty dict).
    """
    complete = [
        {k: row[k] if k in row else _DEFAULTS.get(k, {}) for k in COLUMNS} for row in rows
    ]
    # dtype=object keeps None as None (pandas would turn it into NaN in a string column).
    table = pd.DataFrame(complete, columns=COLUMNS, dtype=object)
    table["is_locked"] = table["is_locked"].astype(bool)
    return gpd.GeoDataFrame(table, geometry=gpd.GeoSeries(geometries, index=table.index))


def _as_annotation(item: AnnotationLike) -> Annotation:
    if isinstance(item, Annotation):
        return item
    if isinstance(item, tuple):
        if len(item) != 2:
            raise ValueError(
                f"annotation tuples are (mask_or_geometry, class_name), got {len(item)} items; "
                "use histoclick.qupath.Annotation for names and measurements"
            )
        return Annotation(shape=item[0], classification=item[1])
    if isinstance(item, (np.ndarray, BaseGeometry)):
        return Annotation(shape=item)
    raise TypeError(
        f"cannot make an annotation from {type(item).__name__}; give an Annotation, a "
        "(mask_or_geometry, class_name) pair, a boolean mask or a shapely geometry"
    )


def _complete_frame(frame: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Validate a user's table into a new one; missing columns take their defaults."""
    rows = []
    for row in pd.DataFrame(frame.drop(columns=frame.geometry.name)).to_dict("records"):
        text = {k: row.get(k) if isinstance(row.get(k), str) else None for k in COLUMNS}
        rows.append(
            {
                "id": valid_uuid(text["id"]),
                "object_type": text["object_type"] or "annotation",
                "name": text["name"],
                "classification": text["classification"],
                "color": None if _is_missing(row.get("color")) else as_rgb(row["color"]),
                "is_locked": not _is_missing(row.get("is_locked")) and bool(row["is_locked"]),
                "measurements": measurement_dict(
                    row["measurements"] if isinstance(row.get("measurements"), Mapping) else None
                ),
                "object_color": (
                    None if _is_missing(row.get("object_color")) else as_rgb(row["object_color"])
                ),
                "metadata": metadata_dict(
                    row["metadata"] if isinstance(row.get("metadata"), Mapping) else None
                ),
                "plane": plane_dict(
                    row["plane"] if isinstance(row.get("plane"), Mapping) else None
                ),
                "parent_id": valid_uuid(row.get("parent_id")),
            }
        )
    completed = frame_from_rows(rows, list(frame.geometry))
    completed.index = frame.index
    return completed


def valid_uuid(value: Any) -> str | None:
    """The canonical form of a UUID string, or None for anything else (QuPath ignores non-UUID
    ids; QuPath 0.2 put the object type there)."""
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _is_missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))
