"""QuPath GeoJSON without QuPath: read and write the files QuPath 0.4 - 0.6 import and export.

Written files are FeatureCollections whose Features carry a UUID ``id``, ``properties.objectType``,
a ``classification`` with both ``name`` and ``color`` (QuPath refuses a classification object
without a colour), ``isLocked`` only when true, and ``measurements`` as an object (NaN and
infinities as the strings "NaN", "Infinity", "-Infinity"). Coordinates are level-0 pixels, origin
top-left. Reading also accepts a list of Features or a single Feature, the older ``object_type``
key, list-style measurements, string classifications, ``names`` lists and ``colorRGB`` integers.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import geopandas as gpd
from shapely.geometry import mapping, shape

from histoclick.files import atomic_path
from histoclick.qupath.annotations import (
    RGB,
    AnnotationLike,
    annotations_frame,
    as_rgb,
    default_class_color,
    frame_from_rows,
    measurement_dict,
    valid_uuid,
)

if TYPE_CHECKING:
    from histoclick.slides import Tile


def read_geojson(path: str | os.PathLike) -> gpd.GeoDataFrame:
    """Read a QuPath (or other) GeoJSON file into the annotation table of :mod:`.annotations`."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); is it a GeoJSON file?") from None
    try:
        return features_to_geodataframe(_features_of(document))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def features_to_geodataframe(features: Iterable[Mapping[str, Any]]) -> gpd.GeoDataFrame:
    """Parse GeoJSON Features (QuPath 0.2 - 0.6 variants) into the annotation table."""
    rows, geometries = [], []
    for index, feature in enumerate(features):
        if not isinstance(feature, Mapping) or feature.get("geometry") is None:
            raise ValueError(f"feature {index} is not a GeoJSON Feature with a geometry")
        properties = feature.get("properties") or {}
        name, color = _read_classification(properties.get("classification"))
        object_type = properties.get("objectType", properties.get("object_type", "annotation"))
        rows.append(
            {
                "id": valid_uuid(feature.get("id")),
                "object_type": object_type,
                "name": properties.get("name"),
                "classification": name,
                "color": color,
                "is_locked": bool(properties.get("isLocked", False)),
                "measurements": _read_measurements(properties.get("measurements"), index),
            }
        )
        geometries.append(shape(feature["geometry"]))
    return frame_from_rows(rows, geometries)


def geodataframe_to_features(
    frame: gpd.GeoDataFrame, *, class_colors: Mapping[str, RGB] | None = None
) -> list[dict[str, Any]]:
    """Turn the annotation table into QuPath-importable Features.

    A row without a valid UUID gets a new one. The class colour is, in order: ``class_colors``
    for that class, the row's ``color``, :func:`.annotations.default_class_color`.
    """
    frame = annotations_frame(frame)
    class_colors = {k: as_rgb(v) for k, v in (class_colors or {}).items()}
    features = []
    for row, geometry in zip(frame.itertuples(index=False), frame.geometry):
        properties: dict[str, Any] = {"objectType": row.object_type}
        if row.name is not None:
            properties["name"] = row.name
        if row.classification is not None:
            color = class_colors.get(row.classification) or row.color
            properties["classification"] = {
                "name": row.classification,
                "color": list(color or default_class_color(row.classification)),
            }
        if row.is_locked:
            properties["isLocked"] = True
        properties["measurements"] = {k: _write_number(v) for k, v in row.measurements.items()}
        features.append(
            {
                "type": "Feature",
                "id": row.id or str(uuid.uuid4()),
                "geometry": mapping(geometry),
                "properties": properties,
            }
        )
    return features


def write_geojson(
    annotations: gpd.GeoDataFrame | Iterable[AnnotationLike],
    path: str | os.PathLike,
    *,
    mode: Literal["create", "append"] = "create",
    overwrite: bool = False,
    tile: Tile | None = None,
    class_colors: Mapping[str, RGB] | None = None,
    indent: int | None = None,
) -> Path:
    """Write annotations as a QuPath-importable FeatureCollection, atomically.

    Args:
        annotations: the annotation table, or anything :func:`.annotations.annotations_frame`
            takes (``Annotation`` objects, ``(mask_or_geometry, class_name)`` pairs, ...).
        path: the ``.geojson`` file.
        mode: "create" writes a new file and refuses an existing one unless ``overwrite``;
            "append" adds the new features after those already in the file (left as they are;
            the file is created when missing).
        overwrite: with mode "create", replace an existing file.
        tile: the tile masks were taken from (places them in level-0 pixels).
        class_colors: class name -> (r, g, b), overriding the table's and default colours.
        indent: JSON indentation (None: compact).

    Returns:
        The path written. The file is replaced in one rename, so readers never see half a file.
    """
    if mode not in ("create", "append"):
        raise ValueError(f"mode must be 'create' or 'append', got {mode!r}")
    if mode == "append" and overwrite:
        raise ValueError("overwrite=True replaces the file and mode='append' keeps it: choose one")
    path = Path(path)
    if mode == "create" and not overwrite and path.exists():
        raise FileExistsError(
            f"{path} exists; pass mode='append' to add to its features or overwrite=True "
            "to replace it"
        )
    frame = annotations_frame(annotations, tile=tile)
    features = geodataframe_to_features(frame, class_colors=class_colors)
    document: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    if mode == "append" and path.exists():
        document = _appended(path, features)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(document, indent=indent, ensure_ascii=False), encoding="utf-8")
    return path


def _appended(path: Path, features: list[dict[str, Any]]) -> dict[str, Any]:
    """The existing document as a FeatureCollection with ``features`` added after its own."""
    existing = json.loads(path.read_text(encoding="utf-8"))
    old = _features_of(existing)
    taken = {f.get("id") for f in old if isinstance(f, Mapping)}
    clashes = [f["id"] for f in features if f["id"] in taken]
    if clashes:
        raise ValueError(
            f"{path} already holds features with ids {clashes[:3]}; appending them again would "
            "duplicate those objects in QuPath"
        )
    document = dict(existing) if isinstance(existing, dict) and "features" in existing else {}
    document["type"] = "FeatureCollection"
    document["features"] = [*old, *features]
    return document


def _features_of(document: Any) -> list[Any]:
    if isinstance(document, list):
        return document
    if isinstance(document, dict):
        if document.get("type") == "FeatureCollection" or "features" in document:
            return list(document.get("features") or [])
        if document.get("type") == "Feature" or "geometry" in document:
            return [document]
    raise ValueError("expected a FeatureCollection, a list of Features or a single Feature")


def _read_classification(value: Any) -> tuple[str | None, RGB | None]:
    """(class name, colour) from QuPath's string, {name|names, color} or older {name, colorRGB}."""
    if value is None:
        return None, None
    if isinstance(value, str):
        return value, None
    if not isinstance(value, Mapping):
        raise ValueError(f"cannot read classification {value!r}")
    names = value.get("names")
    name = ": ".join(names) if names else value.get("name")
    if "color" in value:
        color = as_rgb(value["color"])
    elif "colorRGB" in value:  # QuPath < 0.4: packed (A)RGB integer
        packed = int(value["colorRGB"])
        color = ((packed >> 16) & 255, (packed >> 8) & 255, packed & 255)
    else:
        color = None
    return name, color


def _read_measurements(value: Any, index: int) -> dict[str, float]:
    """QuPath >= 0.4 writes an object; older versions a list of {name, value}."""
    if value is None:
        return {}
    if isinstance(value, list):
        value = {item["name"]: item["value"] for item in value}
    if not isinstance(value, Mapping):
        raise ValueError(f"feature {index}: measurements must be an object, got {value!r}")
    try:
        return measurement_dict(value)  # float() also reads "NaN", "Infinity", "-Infinity"
    except (TypeError, ValueError) as error:
        raise ValueError(f"feature {index}: {error}") from None


def _write_number(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value
