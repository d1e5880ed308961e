"""GeoJSON written by histoclick, judged by QuPath's own reader (PathIO.readObjects), per version.

Every test here runs on QuPath 0.5.1 and 0.6.0 (tests/test_qupath_versions.py), through QuPath's
core library in ../shared/qupath-core; older and compressed files are read by QuPath and by
histoclick, and the two must agree.
"""

from __future__ import annotations

import gzip
import json
import math
import uuid
import zipfile

import numpy as np
import pytest
from shapely.geometry import MultiPolygon, box

from histoclick.qupath import Annotation, default_class_color, read_geojson, write_geojson
from histoclick.slides import Tile


@pytest.fixture(scope="module")
def qupath_objects(qupath):
    """QuPath's reader, reporting what ``qupath_read_objects`` leaves out: measurements, object
    colour, metadata, plane and children (nested the same way)."""
    from paquo.java import File, PathIO

    def describe(item) -> dict:
        color = item.getColor()
        plane = item.getROI().getImagePlane()
        measurements = item.getMeasurementList()
        return {
            "type": str(item.getClass().getSimpleName()),
            "id": str(item.getID()),
            "classification": None if item.getPathClass() is None else str(item.getPathClass()),
            "area": float(item.getROI().getArea()),
            "measurements": {
                str(name): float(measurements.get(name)) for name in measurements.getMeasurementNames()
            },
            "color": None if color is None else ((color >> 16) & 255, (color >> 8) & 255, color & 255),
            "metadata": {str(k): str(v) for k, v in item.getMetadata().items()},
            "plane": {"c": int(plane.getC()), "z": int(plane.getZ()), "t": int(plane.getT())},
            "children": [describe(child) for child in item.getChildObjectsAsArray()],
        }

    return lambda path: [describe(item) for item in PathIO.readObjects(File(str(path)))]


def blob_masks() -> dict[str, np.ndarray]:
    single = np.zeros((40, 50), bool)
    single[5:25, 10:30] = True
    single[25:30, 12:14] = True  # not a rectangle
    two_parts = single.copy()
    two_parts[32:38, 40:48] = True
    holed = single.copy()
    holed[10:15, 15:20] = False
    return {"single": single, "two parts": two_parts, "holed": holed}


@pytest.mark.parametrize("kind", ["single", "two parts", "holed"])
def test_qupath_reads_every_written_mask_with_class_area_and_id(tmp_path, qupath_read_objects, kind):
    mask = blob_masks()[kind]
    tile = Tile(np.zeros((*mask.shape, 3), np.uint8), (1000.0, 2000.0), 4.0)
    path = write_geojson([(mask, "Tumor")], tmp_path / "m.geojson", tile=tile)
    written_id = read_geojson(path)["id"][0]

    (read,) = qupath_read_objects(path)
    assert read["type"] == "PathAnnotationObject"
    assert read["classification"] == "Tumor"
    assert read["id"] == written_id and uuid.UUID(written_id)
    assert read["area"] == mask.sum() * 4.0**2  # level-0 pixels, to the pixel
    assert read["geometry"].geom_type == ("MultiPolygon" if kind == "two parts" else "Polygon")
    assert len(getattr(read["geometry"], "interiors", ())) == (1 if kind == "holed" else 0)


def test_one_part_multipolygon_geometry_is_written_as_polygon(tmp_path, qupath_read_objects):
    one_part = MultiPolygon([box(10, 10, 20, 30)])
    path = write_geojson([(one_part, "Stroma")], tmp_path / "g.geojson")
    assert json.loads(path.read_text())["features"][0]["geometry"]["type"] == "Polygon"
    (read,) = qupath_read_objects(path)  # QuPath 0.5.1 throws a NullPointerException otherwise
    assert (read["classification"], read["area"]) == ("Stroma", 200.0)


@pytest.mark.slow
def test_qupath_reads_a_click_session_mask(tmp_path, qupath_read_objects):
    from histoclick import ClickSession, load_model
    from histoclick.datasets.synthetic import make_tile

    tile = Tile(make_tile(seed=3, size=64)[0], (4096.0, 1024.0), 2.0)
    session = ClickSession(load_model("vit_tiny", device="cpu"), tile)
    result = session.click(30, 34)
    assert result.mask.any()
    path = write_geojson([Annotation.from_session(session, "Tumor")], tmp_path / "s.geojson")

    (read,) = qupath_read_objects(path)
    assert (read["type"], read["classification"]) == ("PathAnnotationObject", "Tumor")
    assert read["id"] == read_geojson(path)["id"][0]
    assert read["area"] == result.mask.sum() * 2.0**2


def test_non_finite_measurements_are_left_out_so_every_qupath_reads_the_file(tmp_path, qupath_objects):
    measurements = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "IoU": 0.75}
    path = write_geojson([Annotation(box(0, 0, 8, 8), "Tumor", measurements=measurements)], tmp_path / "n.geojson")

    def refuse(constant):
        raise AssertionError(f"bare {constant} in the file")

    written = json.loads(path.read_text(), parse_constant=refuse)["features"][0]["properties"]["measurements"]
    assert written == {"IoU": 0.75}  # no "NaN"/"Infinity" strings, which QuPath 0.4 rejects
    (read,) = qupath_objects(path)
    assert read["measurements"] == {"IoU": 0.75}


def compare_with_qupath(path, qupath_objects) -> list[dict]:
    """Read ``path`` with QuPath and with histoclick; assert they find the same objects."""
    theirs = qupath_objects(path)
    flat = []
    stack = list(reversed(theirs))
    while stack:  # depth first, parents before their children, as read_geojson orders rows
        item = stack.pop()
        flat.append(item)
        stack.extend(reversed(item["children"]))
    ours = read_geojson(path)
    types = {"annotation": "PathAnnotationObject", "detection": "PathDetectionObject",
             "cell": "PathCellObject", "tile": "PathTileObject"}  # fmt: skip
    # The order of a zip's entries is QuPath's directory walk: compare as multisets.
    assert sorted(
        (types[row.object_type], str(row.classification), round(geometry.area, 6))
        for row, geometry in zip(ours.itertuples(), ours.geometry)
    ) == sorted((item["type"], str(item["classification"]), round(item["area"], 6)) for item in flat)
    ids = {i for i in ours["id"] if i is not None}
    assert ids <= {item["id"] for item in flat}  # QuPath gives objects without a UUID new ones
    return theirs


POLYGON = {"type": "Polygon", "coordinates": [[[0, 0], [40, 0], [40, 30], [0, 30], [0, 0]]]}


def test_older_and_compressed_files_read_as_qupath_reads_them(tmp_path, qupath_objects):
    qupath_02 = {  # QuPath 0.2: the object type in the top-level id, legacy nested derived class
        "type": "Feature",
        "id": "PathDetectionObject",
        "geometry": POLYGON,
        "properties": {
            "classification": {
                "name": "Positive",
                "colorRGB": -3657166,  # 0xFFC83232: (200, 50, 50)
                "parentClass": {"name": "Tumor", "colorRGB": -3670016},
            },
            "measurements": [{"name": "Area", "value": 1200.0}],
        },
    }
    path = tmp_path / "qupath02.json"
    path.write_text(json.dumps([qupath_02]))
    (read,) = compare_with_qupath(path, qupath_objects)
    frame = read_geojson(path)
    assert (frame["object_type"][0], frame["classification"][0]) == ("detection", "Tumor: Positive")
    assert frame["color"][0] == (200, 50, 50) and read["measurements"] == {"Area": 1200.0}

    feature = {
        "type": "Feature",
        "id": str(uuid.uuid4()),
        "geometry": POLYGON,
        "properties": {"objectType": "annotation", "classification": {"names": ["Stroma", "Negative"], "color": [1, 2, 3]}},
    }
    bare_geometry = tmp_path / "geometry.geojson"
    bare_geometry.write_text(json.dumps(POLYGON))
    bare_feature = tmp_path / "feature.geojson"
    bare_feature.write_text(json.dumps(feature))
    a_list = tmp_path / "list.geojson"
    a_list.write_text(json.dumps([feature, {"type": "FeatureCollection", "features": [qupath_02]}, POLYGON]))
    collection = json.dumps({"type": "FeatureCollection", "features": [feature, qupath_02]}).encode()
    gzipped = tmp_path / "export.geojson.gz"
    gzipped.write_bytes(gzip.compress(collection))
    zipped = tmp_path / "export.zip"
    with zipfile.ZipFile(zipped, "w") as archive:  # as QuPath's export dialog writes it
        archive.writestr("export.geojson", collection)
        archive.writestr("more/second.json", json.dumps(feature | {"id": str(uuid.uuid4())}))
    counts = {bare_geometry: 1, bare_feature: 1, a_list: 3, gzipped: 2, zipped: 3}
    for path, count in counts.items():
        assert len(compare_with_qupath(path, qupath_objects)) == count, path.name
    assert read_geojson(bare_feature)["classification"][0] == "Stroma: Negative"


def test_what_qupath_keeps_survives_a_round_trip(tmp_path, qupath_objects):
    parent_id, child_id = str(uuid.uuid4()), str(uuid.uuid4())
    child = {
        "type": "Feature",
        "id": child_id,
        "geometry": {"type": "Polygon", "coordinates": [[[5, 5], [9, 5], [9, 9], [5, 5]]], "plane": {"c": -1, "z": 2, "t": 3}},
        "properties": {"objectType": "detection", "color": [10, 20, 30], "metadata": {"stain": "CD3"}},
    }
    parent = {
        "type": "Feature",
        "id": parent_id,
        "geometry": POLYGON,
        "properties": {
            "objectType": "annotation",
            "color": [250, 100, 0],
            "classification": {"name": "Tumor", "color": [200, 0, 0]},
            "metadata": {"reviewer": "A. B.", "round": "2"},
            "childObjects": [child],
        },
    }
    original = tmp_path / "from_qupath.geojson"
    original.write_text(json.dumps({"type": "FeatureCollection", "features": [parent]}))
    frame = read_geojson(original)
    assert list(frame["id"]) == [parent_id, child_id]
    assert list(frame["parent_id"]) == [None, parent_id]
    assert list(frame["object_color"]) == [(250, 100, 0), (10, 20, 30)]
    assert list(frame["plane"]) == [None, {"c": -1, "z": 2, "t": 3}]

    again = write_geojson(frame, tmp_path / "again.geojson")
    before, after = qupath_objects(original), qupath_objects(again)
    assert after == before  # QuPath sees the same objects, colours, metadata, planes, children
    (read,) = after
    assert read["color"] == (250, 100, 0) and read["metadata"] == {"reviewer": "A. B.", "round": "2"}
    (read_child,) = read["children"]
    assert read_child["plane"] == {"c": -1, "z": 2, "t": 3} and read_child["color"] == (10, 20, 30)


def test_annotation_color_is_the_colour_qupath_draws_the_object_in(tmp_path, qupath_objects):
    path = write_geojson([Annotation(box(0, 0, 4, 4), "Tumor", color=(9, 8, 7))], tmp_path / "c.geojson")
    (read,) = qupath_objects(path)
    assert read["color"] == (9, 8, 7) and read["classification"] == "Tumor"


def test_qupaths_own_export_is_read_back(tmp_path, qupath):
    """QuPath's writer (PathIO.exportObjectsAsGeoJSON) output, read by histoclick."""
    from paquo.java import File, JClass, PathIO

    ROIs = JClass("qupath.lib.roi.ROIs")
    ImagePlane = JClass("qupath.lib.regions.ImagePlane")
    PathObjects = JClass("qupath.lib.objects.PathObjects")
    PathClass = JClass("qupath.lib.objects.classes.PathClass")
    ArrayList = JClass("java.util.ArrayList")
    Options = JClass("qupath.lib.io.PathIO$GeoJsonExportOptions")

    roi = ROIs.createRectangleROI(10.0, 20.0, 30.0, 40.0, ImagePlane.getPlane(4, 1))
    annotation = PathObjects.createAnnotationObject(roi, PathClass.fromString("Tumor: Positive"))
    annotation.setColor(JClass("qupath.lib.common.ColorTools").packRGB(1, 2, 3))
    annotation.getMetadata().put("k", "v")
    annotation.getMeasurementList().put("m", float("nan"))
    annotation.getMeasurementList().put("n", 2.5)
    objects = ArrayList()
    objects.add(annotation)
    path = tmp_path / "exported.geojson"
    PathIO.exportObjectsAsGeoJSON(File(str(path)), objects, Options.FEATURE_COLLECTION)

    row = read_geojson(path).iloc[0]
    assert row["id"] == str(annotation.getID())
    assert (row["classification"], row["color"]) == ("Tumor: Positive", default_class_color("Tumor: Positive"))
    assert row["object_color"] == (1, 2, 3) and row["metadata"] == {"k": "v"}
    assert row["plane"] == {"c": -1, "z": 4, "t": 1}
    assert math.isnan(row["measurements"]["m"]) and row["measurements"]["n"] == 2.5
    assert row.geometry.bounds == (10.0, 20.0, 40.0, 60.0)


def test_default_class_colours_are_qupaths(qupath):
    from paquo.java import JClass

    PathClass = JClass("qupath.lib.objects.classes.PathClass")
    fresh = f"Class{uuid.uuid4().hex[:8]}"  # not created yet in this JVM: QuPath's default colour
    names = ["Tumor", "Stroma", "Positive", "Negative", "1+", "2+", "3+", "Tumor: Positive",
             "Tumor: Negative", "Tumor: 2+", fresh, f"{fresh}: Positive", f"{fresh}: Negative",
             f"{fresh}: 1+", f"Stroma: {fresh}", f"{fresh}x: Sub: 3+"]  # fmt: skip
    for name in names:
        rgb = int(PathClass.fromString(name).getColor())
        assert default_class_color(name) == ((rgb >> 16) & 255, (rgb >> 8) & 255, rgb & 255), name


def test_gzipped_files_are_written_and_appended_as_qupath_reads_them(tmp_path, qupath_read_objects):
    path = write_geojson([(box(0, 0, 10, 10), "Tumor")], tmp_path / "objects.geojson.gz")
    write_geojson([(box(20, 0, 30, 5), "Stroma")], path, mode="append")
    assert gzip.decompress(path.read_bytes()).startswith(b'{"type": "FeatureCollection"')
    read = qupath_read_objects(path)
    assert [(o["classification"], o["area"]) for o in read] == [("Tumor", 100.0), ("Stroma", 50.0)]
    assert list(read_geojson(path)["id"]) == [o["id"] for o in read]
