"""Annotations as a GeoDataFrame: the one table shared by GeoJSON files and QuPath projects.

Columns (:data:`COLUMNS`), one row per QuPath object, geometry in level-0 pixels (origin top-left,
x right, y down):

- ``id``: the object's UUID string (None when unknown; a new one is made on writing).
- ``object_type``: "annotation", "detection", ... (QuPath's ``objectType``).
- ``name``: the object's name or None.
- ``classification``: the class name (derived classes as "Tumor: Positive") or None.
- ``color``: the class colour as an ``(r, g, b)`` tuple, or None when the source gave none.
- ``is_locked``: bool.
- ``measurements``: dict name -> float (NaN and infinities allowed).
"""

from __future__ import annotations

import colorsys
import hashlib
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

import geopandas as gpd
import numpy as np
import pandas as pd
from shapely.geometry.base import BaseGeometry

from histoclick.geometry import mask_to_geometry

if TYPE_CHECKING:
    from histoclick.session import ClickSession
    from histoclick.slides import Tile

RGB = tuple[int, int, int]

COLUMNS = ["id", "object_type", "name", "classification", "color", "is_locked", "measurements"]

# QuPath's own colours for its standard classes (PathClass.StandardPathClasses).
STANDARD_CLASS_COLORS: dict[str, RGB] = {
    "Tumor": (200, 0, 0),
    "Stroma": (150, 200, 150),
    "Immune cells": (160, 90, 160),
    "Necrosis": (50, 50, 50),
    "Other": (255, 200, 0),
    "Region*": (0, 0, 180),
    "Ignore*": (180, 180, 180),
    "Positive": (200, 50, 50),
    "Negative": (90, 90, 180),
}


def default_class_color(name: str) -> RGB:
    """QuPath's colour for its standard classes, otherwise a bright colour derived from the name.

    Deterministic across runs and machines (a hash of the name, not Python's salted ``hash``).
    """
    if name in STANDARD_CLASS_COLORS:
        return STANDARD_CLASS_COLORS[name]
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    hue = int.from_bytes(digest[:4], "big") / 2**32
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.9)
    return round(r * 255), round(g * 255), round(b * 255)


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
    IoU). ``color`` overrides the class colour.
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
                "color": None if annotation.color is None else as_rgb(annotation.color),
                "is_locked": bool(annotation.is_locked),
                "measurements": measurement_dict(annotation.measurements),
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


def frame_from_rows(rows: list[dict[str, Any]], geometries: list[BaseGeometry]) -> gpd.GeoDataFrame:
    """The annotation table from row dicts (keys :data:`COLUMNS`) and their geometries."""
    # dtype=object keeps None as None (pandas would turn it into NaN in a string column).
    table = pd.DataFrame(rows, columns=COLUMNS, dtype=object)
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
