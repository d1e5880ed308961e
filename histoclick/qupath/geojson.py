"""QuPath GeoJSON without QuPath: read and write the files QuPath 0.4 - 0.6 import and export.

Written files are FeatureCollections whose Features carry a UUID ``id``, a geometry (one-part
MultiPolygons as Polygon: :func:`.annotations.for_qupath`), the ROI's
``plane`` when it is not the default one, and ``properties`` with ``objectType``, ``name``, the
object's own ``color`` ``[r, g, b]``, a ``classification`` with both ``name`` and ``color``
(QuPath refuses a classification object without a colour), ``isLocked`` only when true,
``measurements`` as an object of finite numbers, ``metadata`` (text to text) and the object's
children nested in ``childObjects``, as QuPath's own writer does. Coordinates are level-0
pixels, origin top-left.

Reading follows QuPath's ``PathIO.readObjects``: a FeatureCollection, a Feature, a bare geometry
(an annotation), or a list of these; ``.geojson.gz``/``.json.gz`` and ``.zip`` exports (every
``.json``/``.geojson`` entry); QuPath 0.2 files (the object type in the top-level ``id``),
``object_type``, list-style measurements, string classifications, ``names`` lists, and the
legacy classification objects (``colorRGB``, derived classes nested in ``parentClass``).
Malformed files raise :class:`GeoJSONError`, naming the file and the feature.

:func:`edit_geojson` adds, replaces, deletes and reclassifies objects by UUID (nested ones too)
under the same lock; with a :class:`GeoJSONCache` it skips reading and re-encoding what it wrote
itself, so one writer's edits cost what they change, not the whole file.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import uuid
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import geopandas as gpd
import numpy as np
import shapely
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from histoclick.files import atomic_path, locked
from histoclick.qupath.annotations import (
    RGB,
    AnnotationLike,
    annotations_frame,
    as_rgb,
    default_class_color,
    for_qupath,
    frame_from_rows,
    measurement_dict,
    plane_dict,
    valid_uuid,
)

if TYPE_CHECKING:
    from histoclick.slides import Tile

GEOMETRY_TYPES = {
    "Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon",
    "GeometryCollection",
}  # fmt: skip
# QuPath's objectType names, and the older names it still reads (PathObjectTypeAdapter).
_OBJECT_TYPES = {
    "annotation": "annotation", "PathAnnotationObject": "annotation", "unknown": "annotation",
    "detection": "detection", "PathDetectionObject": "detection",
    "cell": "cell", "PathCellObject": "cell",
    "tile": "tile", "PathTileObject": "tile",
    "tmaCore": "tmaCore", "tma_core": "tmaCore", "TMACoreObject": "tmaCore",
    "root": "root", "PathRootObject": "root",
}  # fmt: skip
_LEGACY_TYPE_IDS = {k for k in _OBJECT_TYPES if k.startswith(("Path", "TMA"))}


class GeoJSONError(ValueError):
    """A GeoJSON file histoclick cannot read or append to; the message names the file, the
    feature (its index in the file) and the problem."""


def read_geojson(path: str | os.PathLike) -> gpd.GeoDataFrame:
    """Read a QuPath (or other) GeoJSON file into the annotation table of :mod:`.annotations`.

    ``.gz`` files are decompressed; a ``.zip`` gives the objects of all its ``.json`` and
    ``.geojson`` entries, in name order. Children (``childObjects``) become rows after their
    parent with ``parent_id`` set (a parent without a UUID gets a new one, as QuPath gives it).
    """
    path = Path(path).expanduser()
    if path.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(path) as archive:
                entries = sorted(
                    n for n in archive.namelist() if n.lower().endswith((".json", ".geojson"))
                )
                frames = [
                    _frame_of(_parse(archive.read(n), f"{path}!{n}"), f"{path}!{n}")
                    for n in entries
                ]
        except zipfile.BadZipFile as error:
            raise GeoJSONError(f"{path} is not a readable zip file ({error})") from None
        if not frames:
            raise GeoJSONError(f"{path} holds no .geojson or .json file")
        return _concat(frames)
    return _frame_of(_parse(_read_bytes(path), str(path)), str(path))


def features_to_geodataframe(features: Iterable[Mapping[str, Any]]) -> gpd.GeoDataFrame:
    """Parse GeoJSON Features (QuPath 0.2 - 0.6 variants) into the annotation table.

    Raises :class:`GeoJSONError` naming the feature (``feature 3``, ``feature 3 child 0``).
    """
    rows: list[dict[str, Any]] = []
    geometries: list[Any] = []
    for index, feature in enumerate(features):
        _parse_feature(feature, f"feature {index}", None, rows, geometries)
    return frame_from_rows(rows, geometries)


def geodataframe_to_features(
    frame: gpd.GeoDataFrame, *, class_colors: Mapping[str, RGB] | None = None
) -> list[dict[str, Any]]:
    """Turn the annotation table into QuPath-importable Features.

    A row without a valid UUID gets a new one. The class colour is, in order: ``class_colors``
    for that class, the row's ``color``, :func:`.annotations.default_class_color`. Rows whose
    ``parent_id`` is the ``id`` of another row are nested in that row's ``childObjects``.
    Non-finite measurements (NaN, infinities) are left out: QuPath 0.4 rejects them written as
    strings and the JSON standard has no bare NaN, while QuPath shows a missing measurement as
    NaN (blank) in its tables, just as it shows a NaN one.
    """
    frame = annotations_frame(frame)
    class_colors = {k: as_rgb(v) for k, v in (class_colors or {}).items()}
    ids = [row_id or str(uuid.uuid4()) for row_id in frame["id"]]
    features = []
    for index, (row, geometry, row_id) in enumerate(
        zip(frame.itertuples(index=False), frame.geometry, ids)
    ):
        if not np.isfinite(shapely.get_coordinates(geometry)).all():
            raise ValueError(f"annotation {index} has NaN or infinite coordinates")
        properties: dict[str, Any] = {"objectType": row.object_type}
        if row.name is not None:
            properties["name"] = row.name
        if row.object_color is not None:
            properties["color"] = list(row.object_color)
        if row.classification is not None:
            color = class_colors.get(row.classification) or row.color
            properties["classification"] = {
                "name": row.classification,
                "color": list(color or default_class_color(row.classification)),
            }
        if row.is_locked:
            properties["isLocked"] = True
        properties["measurements"] = {
            k: v for k, v in row.measurements.items() if math.isfinite(v)
        }
        if row.metadata:
            properties["metadata"] = dict(row.metadata)
        geometry_json = geometry_mapping(for_qupath(geometry))
        if row.plane is not None:
            geometry_json["plane"] = dict(row.plane)
        features.append(
            {"type": "Feature", "id": row_id, "geometry": geometry_json, "properties": properties}
        )
    return _nest_children(features, list(frame["parent_id"]))


def geometry_mapping(geometry: BaseGeometry) -> dict[str, Any]:
    """The GeoJSON geometry object of ``geometry``, as ``shapely.geometry.mapping`` gives it.

    Polygons and MultiPolygons (what histoclick writes) take their coordinates from numpy in a
    few vectorised calls, several times faster than ``mapping`` on outlines with ~100k vertices;
    other geometries go through ``mapping``. Coordinates unchanged (level-0 pixels).
    """
    kind = geometry.geom_type
    if kind not in ("Polygon", "MultiPolygon") or geometry.is_empty or shapely.has_z(geometry):
        return dict(mapping(geometry))
    polygons = shapely.get_parts(geometry)
    rings, owner = shapely.get_rings(polygons, return_index=True)
    xy, ring_of_point = shapely.get_coordinates(rings, return_index=True)
    bounds = np.r_[0, np.flatnonzero(np.diff(ring_of_point)) + 1, len(xy)].tolist()
    if len(bounds) - 1 != len(rings):  # an empty ring (an empty part): no fast path
        return dict(mapping(geometry))
    points = xy.tolist()  # one conversion, then slices: a call per ring costs more
    coordinates: list[list[Any]] = [[] for _ in range(len(polygons))]
    for polygon, start, stop in zip(owner.tolist(), bounds[:-1], bounds[1:]):
        coordinates[polygon].append(points[start:stop])
    return {"type": kind, "coordinates": coordinates[0] if kind == "Polygon" else coordinates}


def write_geojson(
    annotations: gpd.GeoDataFrame | Iterable[AnnotationLike],
    path: str | os.PathLike,
    *,
    mode: Literal["create", "append", "replace"] = "create",
    overwrite: bool = False,
    tile: Tile | None = None,
    class_colors: Mapping[str, RGB] | None = None,
    indent: int | None = None,
) -> Path:
    """Write annotations as a QuPath-importable FeatureCollection, atomically.

    Args:
        annotations: the annotation table, or anything :func:`.annotations.annotations_frame`
            takes (``Annotation`` objects, ``(mask_or_geometry, class_name)`` pairs, ...).
        path: the ``.geojson`` file (``.geojson.gz``: gzip-compressed, as QuPath reads it).
            A symbolic link is kept and the file it points to is written.
        mode: "create" writes a new file and refuses an existing one unless ``overwrite``;
            "append" adds the new features after those already in the file (left as they are;
            the file is created when missing); "replace" is "append", except that a feature
            whose id is already in the file takes that feature's place.
        overwrite: with mode "create", replace an existing file.
        tile: the tile masks were taken from (places them in level-0 pixels).
        class_colors: class name -> (r, g, b), overriding the table's and default colours.
        indent: JSON indentation (None: compact).

    Returns:
        The path written. Non-finite measurements are left out (QuPath 0.4 rejects them as
        strings; see :func:`geodataframe_to_features`); features already in the file keep
        their JSON unchanged. The file is replaced in one rename, so readers never see half a
        file (a file with several hard links is rewritten in place instead, keeping the links).
        Writers take turns through an OS lock (``.<name>.lock`` beside the file, see
        :func:`histoclick.files.locked`), and an append re-reads the file inside the lock, so
        concurrent appends from several processes all land. A read-only file is refused, and a
        full disk leaves the file as it was.

    Cost: an append reads, parses and rewrites the whole file, so its time grows linearly with
    the features already there: ``benchmarks/bench_geojson_append.py`` measured 0.4 - 0.6 s at
    1,000 features (0.9 MB), 3.5 s at 10,000 (9 MB) and 33 - 42 s at 100,000 (96 MB), on 2
    cores shared with other jobs (load 5). Fine for a session's annotations; for files past some
    10,000 objects, append in batches (one call with many annotations costs one rewrite) or
    start a new file per slide or per session.
    """
    if mode not in ("create", "append", "replace"):
        raise ValueError(f"mode must be 'create', 'append' or 'replace', got {mode!r}")
    if mode != "create" and overwrite:
        raise ValueError(f"overwrite=True replaces the file and mode={mode!r} keeps it: choose one")
    path = Path(path).expanduser()
    if path.suffix.lower() == ".zip":
        raise ValueError(f"{path}: histoclick writes .geojson or .geojson.gz files, not .zip")
    frame = annotations_frame(annotations, tile=tile)
    features = geodataframe_to_features(frame, class_colors=class_colors)
    with locked(path) as target:
        if mode == "create" and not overwrite and target.exists():
            raise FileExistsError(
                f"{path} exists; pass mode='append' to add to its features or overwrite=True "
                "to replace it"
            )
        document: dict[str, Any] = {"type": "FeatureCollection", "features": features}
        if mode != "create" and target.exists():
            document = _appended(target, features, replace=mode == "replace")
        # allow_nan: features read from a user's file may hold QuPath 0.4's bare NaN; ours don't.
        data = json.dumps(document, indent=indent, ensure_ascii=False).encode("utf-8")
        with atomic_path(target) as tmp:
            tmp.write_bytes(gzip.compress(data, mtime=0) if _gzipped(target) else data)
    return path


FileState = tuple[int, int, int]
"""A file's ``(st_mtime_ns, st_size, st_ino)``: it changes with every write (an atomic write makes
a new inode), so a reader can tell whether a file is still the one it read."""


def file_state(path: str | os.PathLike) -> FileState | None:
    """``(mtime_ns, size, inode)`` of the file ``path`` names (links followed); None when missing."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


@dataclass(frozen=True)
class GeoJSONEdit:
    """What :func:`edit_geojson` did.

    ``before``: the file's state when the lock was taken (None: there was no file); ``after``:
    its state once written, still under the lock. A caller that recorded ``before`` after its own
    last write or read knows that nobody else wrote in between. ``features``: the Features of
    ``put`` as written (QuPath's JSON, level-0 pixels).
    """

    path: Path
    before: FileState | None
    after: FileState
    features: list[dict[str, Any]]


class GeoJSONCache:
    """What :func:`edit_geojson` last wrote to a file, to edit it again without reading it.

    Holds the file's state right after that write, the document, and the JSON text of each
    top-level Feature. When the file still has that state under the lock, the next edit neither
    parses the file nor encodes the Features it leaves alone: its cost grows with the objects
    it changes, not with the file. A file someone else wrote is read as usual.
    """

    def __init__(self) -> None:
        self.state: FileState | None = None
        self.document: dict[str, Any] = {}
        self.encoded: dict[int, str] = {}  # id() of a top-level Feature in document -> its JSON

    def clear(self) -> None:
        self.state, self.document, self.encoded = None, {}, {}


def edit_geojson(
    path: str | os.PathLike,
    *,
    put: gpd.GeoDataFrame | Iterable[AnnotationLike] = (),
    delete: Iterable[str] = (),
    reclassify: Mapping[str, str | None] | None = None,
    class_colors: Mapping[str, RGB] | None = None,
    cache: GeoJSONCache | None = None,
) -> GeoJSONEdit:
    """Change a GeoJSON file's objects by UUID, atomically, under its lock (:func:`write_geojson`).

    Args:
        path: the ``.geojson`` (or ``.geojson.gz``) file; created when missing. Written compact.
        put: annotations (what :func:`.annotations.annotations_frame` takes), each added, or put
            in place of the object with its ``id`` (its ``childObjects`` are kept).
        delete: UUIDs of objects to remove; their children move up in their place, as QuPath's
            "Delete" keeps them.
        reclassify: UUID -> new class name (None: unclassified); the rest of the object (its
            geometry, name, measurements, children, unknown properties) is left as it is.
        class_colors: class name -> (r, g, b) for the classes written (default: the table's
            colour, else :func:`.annotations.default_class_color`).
        cache: kept between edits of the same file by one writer (:class:`GeoJSONCache`).

    Objects not named are kept unchanged, nested ones included. Ids are matched in canonical
    UUID form, at any depth of ``childObjects``. Nothing is written when an id to delete or
    reclassify is not in the file (KeyError) or the file cannot be read (GeoJSONError).
    """
    path = Path(path).expanduser()
    if path.suffix.lower() == ".zip":
        raise ValueError(f"{path}: histoclick writes .geojson or .geojson.gz files, not .zip")
    features = geodataframe_to_features(annotations_frame(put), class_colors=class_colors)
    colors = {k: as_rgb(v) for k, v in (class_colors or {}).items()}
    delete, reclassify = set(delete), dict(reclassify or {})
    cache = GeoJSONCache() if cache is None else cache
    with locked(path) as target:
        before = file_state(target)
        if before is None or before != cache.state:
            cache.clear()
            cache.document = {"type": "FeatureCollection", "features": []}
            if before is not None:
                cache.document = _appended(target, [])
        document = cache.document
        try:
            found = _features_by_id(document["features"])
            missing = sorted(i for i in (*delete, *reclassify) if valid_uuid(i) not in found)
            if missing:
                raise KeyError(
                    f"{path} holds no object with id {', '.join(missing)}; nothing was changed"
                )
            tops = _tops_by_id(document["features"])
            changed = {id(tops[valid_uuid(i)]) for i in (*delete, *reclassify)}
            for feature in features:
                old = found.get(feature["id"])
                if old is None:
                    document["features"].append(feature)
                    continue
                changed.add(id(tops[feature["id"]]))
                children = (old.get("properties") or {}).get("childObjects")
                old.clear()  # in place: the feature keeps its position in the file
                old.update(feature)
                if children:
                    old["properties"] = {**feature["properties"], "childObjects": children}
            for object_id, name in reclassify.items():
                properties = found[valid_uuid(object_id)].setdefault("properties", {})
                if name is None:
                    properties.pop("classification", None)
                else:
                    color = colors.get(name) or default_class_color(name)
                    properties["classification"] = {"name": name, "color": list(color)}
            # Kept alive until the cache is rebuilt, so no id() of a removed Feature is reused.
            before_delete = document["features"]
            if delete:
                document["features"] = _without(before_delete, {valid_uuid(i) for i in delete})
            encoded = [
                cache.encoded.get(id(f)) if id(f) not in changed else None
                for f in document["features"]
            ]
            encoded = [
                text if text is not None else json.dumps(f, ensure_ascii=False)
                for f, text in zip(document["features"], encoded)
            ]
            head = json.dumps({**document, "features": _FEATURES}, ensure_ascii=False)
            data = head.replace(json.dumps(_FEATURES), "[" + ", ".join(encoded) + "]", 1)
            with atomic_path(target) as tmp:
                tmp.write_bytes(
                    gzip.compress(data.encode("utf-8"), mtime=0) if _gzipped(target)
                    else data.encode("utf-8")
                )
            cache.encoded = {id(f): text for f, text in zip(document["features"], encoded)}
            cache.state = file_state(target)
            del before_delete
        except BaseException:
            cache.clear()  # the document in memory may hold changes the file does not
            raise
        return GeoJSONEdit(path, before, cache.state, features)


# Stands for the features list while the rest of a document is encoded (json.dumps escapes the
# NUL characters, so no real key or value encodes the same).
_FEATURES = "\0histoclick features\0"


def _tops_by_id(features: list[Any]) -> dict[str, dict[str, Any]]:
    """Canonical UUID -> the top-level Feature that is or holds that object."""
    tops: dict[str, dict[str, Any]] = {}
    for feature in features:
        for object_id in _features_by_id([feature]):
            tops.setdefault(object_id, feature)
    return tops


def _children(feature: Mapping[str, Any]) -> list[Any]:
    properties = feature.get("properties") if isinstance(feature, Mapping) else None
    if not isinstance(properties, Mapping):
        return []
    children = properties.get("childObjects", properties.get("children"))
    return children if isinstance(children, list) else []


def _features_by_id(features: list[Any], found: dict | None = None) -> dict[str, dict[str, Any]]:
    """Canonical UUID -> Feature, at every depth of ``childObjects`` (the first one of an id)."""
    found = {} if found is None else found
    for feature in features:
        if isinstance(feature, dict):
            found.setdefault(valid_uuid(feature.get("id")), feature)
            _features_by_id(_children(feature), found)
    found.pop(None, None)
    return found


def _without(features: list[Any], ids: set[str | None]) -> list[Any]:
    """``features`` less those with these ids, at any depth; a removed one's children take its
    place."""
    kept = []
    for feature in features:
        children = _children(feature)
        if children:
            key = "childObjects" if "childObjects" in feature["properties"] else "children"
            feature["properties"][key] = children = _without(children, ids)
        if isinstance(feature, Mapping) and valid_uuid(feature.get("id")) in ids:
            kept.extend(children)
        else:
            kept.append(feature)
    return kept


def _appended(path: Path, features: list[dict[str, Any]], replace: bool = False) -> dict[str, Any]:
    """The existing document as a FeatureCollection with ``features`` added after its own."""
    existing = _parse(_read_bytes(path), str(path))
    old = _features_of(existing, str(path))
    for index, feature in enumerate(old):
        if not isinstance(feature, Mapping) or not isinstance(feature.get("geometry"), Mapping):
            raise GeoJSONError(
                f"{path}: feature {index} is not a GeoJSON Feature with a geometry "
                f"({_preview(feature)}); appending would keep an invalid file. Fix or move it"
            )
    if replace:
        by_id = {f["id"]: f for f in features}
        old = [by_id.pop(f.get("id"), f) for f in old]
        features = list(by_id.values())
    taken = {f.get("id") for f in old}
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


def _gzipped(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


def _read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    if _gzipped(path):
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as error:
            raise GeoJSONError(f"{path} is not a readable gzip file ({error})") from None
    return data


def _parse(data: bytes, source: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise GeoJSONError(f"{source} is not UTF-8 text ({error}); is it a GeoJSON file?") from None
    except json.JSONDecodeError as error:
        raise GeoJSONError(f"{source} is not valid JSON ({error}); is it a GeoJSON file?") from None
    except RecursionError:
        raise GeoJSONError(f"{source} is nested too deeply to be GeoJSON") from None


def _frame_of(document: Any, source: str) -> gpd.GeoDataFrame:
    features = _features_of(document, source)
    try:
        return features_to_geodataframe(features)
    except GeoJSONError as error:
        raise GeoJSONError(f"{source}: {error}") from None


def _concat(frames: list[gpd.GeoDataFrame]) -> gpd.GeoDataFrame:
    rows = [r for f in frames for r in f.drop(columns=f.geometry.name).to_dict("records")]
    return frame_from_rows(rows, [g for f in frames for g in f.geometry])


def _features_of(document: Any, source: str) -> list[Any]:
    """The Features of a document, read as QuPath's ``GsonTools.parseObjectsFromGeoJSON`` does."""
    if isinstance(document, list):
        return [f for item in document for f in _features_of(item, source)]
    if isinstance(document, dict):
        kind = document.get("type")
        if kind == "FeatureCollection" or (kind is None and "features" in document):
            features = document.get("features")
            if not isinstance(features, list):
                raise GeoJSONError(
                    f"{source}: 'features' must be a list of Features, got {_preview(features)}"
                )
            return features
        if kind == "Feature" or (kind is None and "geometry" in document):
            return [document]
        if kind in GEOMETRY_TYPES:  # QuPath makes an annotation of a bare geometry
            return [{"type": "Feature", "geometry": document, "properties": {}}]
    raise GeoJSONError(
        f"{source}: expected a FeatureCollection, a Feature, a geometry or a list of them, "
        f"got {_preview(document)}"
    )


def _parse_feature(
    feature: Any, label: str, parent_id: str | None, rows: list, geometries: list
) -> None:
    """Append the row (and its children's rows) of one Feature; QuPath's PathObjectTypeAdapter."""
    try:
        if not isinstance(feature, Mapping) or not isinstance(feature.get("geometry"), Mapping):
            raise ValueError(f"not a GeoJSON Feature with a geometry ({_preview(feature)})")
        properties = feature.get("properties") or {}
        if not isinstance(properties, Mapping):
            raise ValueError(f"properties must be an object, got {_preview(properties)}")
        raw_id = feature.get("id")
        object_type = raw_id if raw_id in _LEGACY_TYPE_IDS else "unknown"
        for key in ("objectType", "object_type", "type"):
            if key in properties:
                object_type = properties[key]
                break
        name, color = _read_classification(properties.get("classification"))
        geometry = shape(feature["geometry"])
        if not np.isfinite(shapely.get_coordinates(geometry)).all():
            raise ValueError("NaN or infinite coordinates")
        children = properties.get("childObjects", properties.get("children"))
        if children is not None and not isinstance(children, list):
            raise ValueError(f"childObjects must be a list, got {_preview(children)}")
        row_id = valid_uuid(raw_id)
        if children and row_id is None:
            row_id = str(uuid.uuid4())  # children need their parent's id
        plane = feature["geometry"].get("plane")
        row = {
            "id": row_id,
            "object_type": _OBJECT_TYPES.get(object_type, "annotation"),
            "name": _text(properties.get("name"), "name"),
            "classification": name,
            "color": color,
            "is_locked": properties.get("isLocked") is True,
            "measurements": _read_measurements(properties.get("measurements")),
            "object_color": _read_object_color(properties.get("color")),
            "metadata": _read_metadata(properties.get("metadata")),
            "plane": plane_dict(plane) if isinstance(plane, Mapping) else None,
            "parent_id": parent_id,
        }
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as error:
        raise GeoJSONError(f"{label}: {error}") from None
    except shapely.errors.ShapelyError as error:
        raise GeoJSONError(f"{label}: invalid geometry ({error})") from None
    rows.append(row)
    geometries.append(geometry)
    for index, child in enumerate(children or []):
        _parse_feature(child, f"{label} child {index}", row_id, rows, geometries)


def _nest_children(features: list[dict[str, Any]], parent_ids: list[str | None]) -> list[dict]:
    """Move each feature whose parent is in ``features`` into the parent's ``childObjects``.

    A feature whose parent is not among them (or whose parents form a cycle) stays top-level.
    """
    parent_of = {f["id"]: p for f, p in zip(features, parent_ids)}
    by_id = {f["id"]: f for f in features}

    def reaches_top(feature_id: str) -> bool:
        seen = set()
        while parent_of.get(feature_id) in by_id:
            if feature_id in seen:
                return False
            seen.add(feature_id)
            feature_id = parent_of[feature_id]
        return True

    top = []
    for feature, parent_id in zip(features, parent_ids):
        if parent_id in by_id and reaches_top(feature["id"]):
            by_id[parent_id]["properties"].setdefault("childObjects", []).append(feature)
        else:
            top.append(feature)
    return top


def _read_classification(value: Any) -> tuple[str | None, RGB | None]:
    """(class name, colour) from QuPath's string, {name|names, color}, or the legacy
    {name, colorRGB, parentClass} of QuPath < 0.4 (derived classes nest their parent)."""
    if value is None:
        return None, None
    if isinstance(value, str):
        return value, None
    if not isinstance(value, Mapping):
        raise ValueError(f"cannot read classification {_preview(value)}")
    if "colorRGB" in value or "parentClass" in value:
        names, node, color = [], value, None
        while isinstance(node, Mapping):
            if node.get("name") is not None:
                names.insert(0, node["name"])
            if color is None and node.get("colorRGB") is not None:
                color = _unpack_rgb(node["colorRGB"])
            node = node.get("parentClass")
        return (": ".join(names) or None), color
    names = value.get("names")
    name = ": ".join(names) if names else value.get("name")
    color = as_rgb(value["color"]) if value.get("color") is not None else None
    return name, color


def _read_object_color(value: Any) -> RGB | None:
    """The object's own colour: ``[r, g, b]`` or a packed RGB integer, as QuPath reads them."""
    if value is None:
        return None
    if isinstance(value, list):
        return as_rgb(value) if len(value) == 3 else None  # QuPath ignores other lengths
    return _unpack_rgb(value)


def _unpack_rgb(value: Any) -> RGB:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"a packed RGB colour must be an integer, got {_preview(value)}")
    packed = int(value)
    return (packed >> 16) & 255, (packed >> 8) & 255, packed & 255


def _read_metadata(value: Any) -> dict[str, str]:
    """QuPath keeps metadata values that are JSON primitives, as text; others are skipped."""
    if not isinstance(value, Mapping):
        return {}
    out = {}
    for key, item in value.items():
        if isinstance(item, bool):
            out[key] = "true" if item else "false"
        elif isinstance(item, (int, float, str)):
            out[key] = item if isinstance(item, str) else json.dumps(item)
    return out


def _read_measurements(value: Any) -> dict[str, float]:
    """QuPath >= 0.4 writes an object; older versions a list of {name, value}."""
    if value is None:
        return {}
    if isinstance(value, list):
        if not all(isinstance(item, Mapping) and {"name", "value"} <= set(item) for item in value):
            raise ValueError(f"measurement lists hold {{name, value}} objects, got {_preview(value)}")
        value = {item["name"]: item["value"] for item in value}
    if not isinstance(value, Mapping):
        raise ValueError(f"measurements must be an object, got {_preview(value)}")
    return measurement_dict(value)  # float() also reads "NaN", "Infinity", "-Infinity", "inf"


def _text(value: Any, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ValueError(f"{what} must be text, got {_preview(value)}")


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
