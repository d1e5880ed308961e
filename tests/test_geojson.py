"""QuPath GeoJSON without QuPath: exact round-trips, QuPath's import rules, older files, safe writes."""

import json
import math
import uuid

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely.geometry import MultiPolygon, Polygon, box

from histoclick.geometry import geometry_to_mask
from histoclick.qupath import (
    Annotation,
    annotations_frame,
    default_class_color,
    read_geojson,
    select_classes,
    write_geojson,
)
from histoclick.slides import Tile

HOLED = Polygon(
    [(1200, 800), (1600, 800), (1600, 1100), (1200, 1100)],
    [[(1300, 900), (1350, 900), (1350, 950), (1300, 950)]],
)
TWO_PARTS = MultiPolygon([box(10.5, 20.25, 30, 40), Polygon([(100, 100), (140, 100), (120, 133.3)])])


def reference_frame() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {
            "id": [str(uuid.uuid4()) for _ in range(3)],
            "object_type": ["annotation"] * 3,
            "name": ["tumour 1", None, "odd"],
            "classification": ["Tumor", "Lymphocytes", None],
            "color": [(200, 0, 0), (12, 34, 56), None],
            "is_locked": [False, True, False],
            "measurements": [
                {"histoclick clicks": 4.0, "histoclick predicted IoU": 0.93},
                {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "kept": 1.5},
                {},
            ],
            "object_color": [None, (1, 2, 3), (250, 0, 250)],
            "metadata": [{"source": "histoclick", "model": "vit_b"}, {}, {"x": ""}],
            "plane": [None, {"c": -1, "z": 3, "t": 1}, None],
        },
        geometry=[HOLED, TWO_PARTS, box(0, 0, 1, 1)],
    )


def strict_json(path):
    """Parse as standard JSON: bare NaN / Infinity (not valid JSON) fail."""
    def refuse(constant):
        raise ValueError(f"bare {constant} in the file")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def test_round_trip_is_exact(tmp_path):
    frame = reference_frame()
    back = read_geojson(write_geojson(frame, tmp_path / "a.geojson"))
    assert list(back["id"]) == list(frame["id"])
    for original, read in zip(frame.geometry, back.geometry):
        assert read.geom_type == original.geom_type
        assert shapely.equals_exact(read, original, tolerance=0)
    assert len(back.geometry[0].interiors) == 1 and len(back.geometry[1].geoms) == 2
    assert list(back["classification"]) == ["Tumor", "Lymphocytes", None]
    assert list(back["color"]) == [(200, 0, 0), (12, 34, 56), None]
    assert list(back["name"]) == ["tumour 1", None, "odd"]
    assert list(back["is_locked"]) == [False, True, False]
    assert list(back["object_type"]) == ["annotation"] * 3
    assert list(back["object_color"]) == [None, (1, 2, 3), (250, 0, 250)]
    assert list(back["metadata"]) == list(frame["metadata"])
    assert list(back["plane"]) == [None, {"c": -1, "z": 3, "t": 1}, None]
    finite = [{k: v for k, v in m.items() if math.isfinite(v)} for m in frame["measurements"]]
    assert list(back["measurements"]) == finite  # NaN and infinities are left out (docstring)


def test_features_follow_qupath_import_rules(tmp_path):
    path = write_geojson(reference_frame(), tmp_path / "a.geojson")
    document = strict_json(path)
    assert document["type"] == "FeatureCollection"
    for feature in document["features"]:
        assert feature["type"] == "Feature"
        assert str(uuid.UUID(feature["id"])) == feature["id"]
        properties = feature["properties"]
        assert properties["objectType"] == "annotation"
        assert isinstance(properties["measurements"], dict)
        assert properties.get("isLocked", True) is True  # written only when true
        if "classification" in properties:
            classification = properties["classification"]
            assert set(classification) == {"name", "color"}
            assert len(classification["color"]) == 3
            assert all(isinstance(c, int) and 0 <= c <= 255 for c in classification["color"])
    first, second, third = document["features"]
    assert "isLocked" not in first["properties"] and second["properties"]["isLocked"] is True
    assert "classification" not in third["properties"]  # unclassified: no classification at all
    assert second["properties"]["measurements"] == {"kept": 1.5}  # non-finite ones left out
    assert second["properties"]["color"] == [1, 2, 3] and "color" not in first["properties"]
    assert second["geometry"]["plane"] == {"c": -1, "z": 3, "t": 1}
    assert first["geometry"]["type"] == "Polygon" and len(first["geometry"]["coordinates"]) == 2
    assert second["geometry"]["type"] == "MultiPolygon"


def test_class_colours_default_deterministically_or_as_given(tmp_path):
    assert default_class_color("Tumor") == (200, 0, 0)  # QuPath's own colour for its classes
    colour = default_class_color("Lymphocytes")
    assert colour == default_class_color("Lymphocytes") != default_class_color("Mitosis")
    assert all(isinstance(c, int) and 0 <= c <= 255 for c in colour)
    items = [(box(0, 0, 5, 5), "Lymphocytes"), (box(5, 5, 9, 9), "Tumor")]
    default = strict_json(write_geojson(items, tmp_path / "default.geojson"))
    assert [f["properties"]["classification"]["color"] for f in default["features"]] == [list(colour), [200, 0, 0]]
    given = strict_json(write_geojson(items, tmp_path / "given.geojson", class_colors={"Tumor": (1, 2, 3)}))
    assert given["features"][1]["properties"]["classification"] == {"name": "Tumor", "color": [1, 2, 3]}


def test_reads_older_and_other_variants(tmp_path):
    polygon = {"type": "Polygon", "coordinates": [[[0, 0], [4, 0], [4, 3], [0, 0]]]}
    features = [
        {  # QuPath 0.2/0.3: type in "id", object_type, list measurements, colorRGB
            "type": "Feature",
            "id": "PathAnnotationObject",
            "geometry": polygon,
            "properties": {
                "object_type": "annotation",
                "classification": {"name": "Tumor", "colorRGB": -3670016},
                "isLocked": False,
                "measurements": [{"name": "Area", "value": 6.0}, {"name": "gone", "value": "NaN"}],
            },
        },
        {  # string classification, bare NaN as QuPath itself writes it, detection
            "type": "Feature",
            "geometry": polygon,
            "properties": {"objectType": "detection", "classification": "Stroma", "measurements": {"x": math.nan}},
        },
        {  # derived class as "names", colour with alpha
            "type": "Feature",
            "geometry": polygon,
            "properties": {"classification": {"names": ["Tumor", "Positive"], "color": [10, 20, 30, 128]}},
        },
    ]
    as_list = tmp_path / "list.json"
    as_list.write_text(json.dumps(features))  # json writes math.nan as a bare NaN
    frame = read_geojson(as_list)
    assert list(frame["id"]) == [None, None, None]  # "PathAnnotationObject" is no id
    assert list(frame["object_type"]) == ["annotation", "detection", "annotation"]
    assert list(frame["classification"]) == ["Tumor", "Stroma", "Tumor: Positive"]
    assert list(frame["color"]) == [(200, 0, 0), None, (10, 20, 30)]
    assert frame["measurements"][0]["Area"] == 6.0 and math.isnan(frame["measurements"][0]["gone"])
    assert math.isnan(frame["measurements"][1]["x"])

    single = tmp_path / "single.geojson"
    single.write_text(json.dumps(features[0]))
    assert len(read_geojson(single)) == 1


def test_unreadable_files_say_what_is_wrong(tmp_path):
    not_json = tmp_path / "bad.geojson"
    not_json.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_geojson(not_json)
    no_geometry = tmp_path / "nogeom.geojson"
    no_geometry.write_text(json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature"}]}))
    with pytest.raises(ValueError, match="feature 0"):
        read_geojson(no_geometry)
    text_measurement = tmp_path / "text.geojson"
    point = {"type": "Point", "coordinates": [1, 2]}
    feature = {"type": "Feature", "geometry": point, "properties": {"measurements": {"m": "high"}}}
    text_measurement.write_text(json.dumps([feature]))
    with pytest.raises(ValueError, match="'m'"):
        read_geojson(text_measurement)


def test_existing_files_are_never_silently_overwritten(tmp_path):
    path = write_geojson([box(0, 0, 1, 1)], tmp_path / "a.geojson")
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="mode='append'.*overwrite=True"):
        write_geojson([box(2, 2, 3, 3)], path)
    assert path.read_bytes() == before
    with pytest.raises(ValueError, match="choose one"):
        write_geojson([box(2, 2, 3, 3)], path, mode="append", overwrite=True)
    write_geojson([box(2, 2, 3, 3)], path, overwrite=True)
    assert list(read_geojson(path).geometry) == [box(2, 2, 3, 3)]


def test_write_replaces_the_file_in_one_rename(tmp_path):
    path = write_geojson([box(0, 0, 1, 1)], tmp_path / "a.geojson")
    with open(path, "rb") as reader_of_old_file:
        write_geojson([box(2, 2, 3, 3)] * 50, path, overwrite=True)
        # A rename leaves the open (old) file intact; an in-place rewrite would change it.
        assert len(json.loads(reader_of_old_file.read())["features"]) == 1
    assert len(read_geojson(path)) == 50
    # No temporary file left; the (empty) lock file of the writers stays.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".a.geojson.lock", "a.geojson"]


def test_append_keeps_the_users_features_untouched(tmp_path):
    path = tmp_path / "user.geojson"
    users = [
        {
            "type": "Feature",
            "id": "7f3c2a10-5d0e-4b7e-9a1c-2f6f0c1d9e42",
            "geometry": {"type": "Point", "coordinates": [5, 6]},
            "properties": {"objectType": "annotation", "custom": {"kept": [1, 2]}, "color": [1, 2, 3]},
        }
    ]
    path.write_text(json.dumps(users))  # a plain list of features, as older QuPath writes
    write_geojson([(box(0, 0, 10, 10), "Tumor")], path, mode="append")
    document = json.loads(path.read_text())
    assert document["type"] == "FeatureCollection"
    assert document["features"][0] == users[0]
    assert document["features"][1]["properties"]["classification"]["name"] == "Tumor"

    added = read_geojson(path).iloc[[1]]
    with pytest.raises(ValueError, match="already holds"):
        write_geojson(added, path, mode="append")
    assert len(json.loads(path.read_text())["features"]) == 2

    fresh = write_geojson([box(0, 0, 1, 1)], tmp_path / "new.geojson", mode="append")
    assert len(read_geojson(fresh)) == 1  # append creates a missing file


def test_replace_rewrites_only_the_feature_with_the_same_id(tmp_path):
    """The widget grows one object across viewports: the same UUID is rewritten, in its place."""
    path = tmp_path / "objects.geojson"
    write_geojson([(box(0, 0, 10, 10), "Stroma"), (box(20, 0, 30, 10), "Tumor")], path)
    before = json.loads(path.read_text())["features"]
    grown = read_geojson(path).iloc[[1]].copy()
    grown.geometry = [box(20, 0, 50, 10)]
    write_geojson(grown, path, mode="replace")
    after = json.loads(path.read_text())["features"]
    assert after[0] == before[0]
    assert after[1]["id"] == before[1]["id"] and len(after) == 2
    assert shapely.geometry.shape(after[1]["geometry"]).area == 300
    write_geojson([(box(60, 0, 70, 10), "Tumor")], path, mode="replace")  # a new id is appended
    assert len(read_geojson(path)) == 3
    with pytest.raises(ValueError, match="choose one"):
        write_geojson(grown, path, mode="replace", overwrite=True)


@pytest.mark.parametrize("downsample", [1.0, 2.0, 4.0, 16.0, 0.5])
def test_masks_land_where_histoclick_geometry_puts_them(tmp_path, downsample):
    rng = np.random.default_rng(int(downsample * 10))
    mask = np.zeros((48, 64), bool)
    mask[5:30, 8:40] = True
    mask[12:18, 15:22] = False  # a hole
    mask[35:45, 50:60] = True  # a second part
    mask |= rng.random(mask.shape) > 0.97  # single pixels and diagonal contacts
    origin = (12345.0, 678.0)
    tile = Tile(np.zeros((48, 64, 3), np.uint8), origin, downsample)

    path = write_geojson([(mask, "Tumor")], tmp_path / "m.geojson", tile=tile)
    geometry = read_geojson(path).geometry[0]
    np.testing.assert_array_equal(geometry_to_mask(geometry, mask.shape, origin, downsample), mask)
    minx, miny, maxx, maxy = geometry.bounds  # level-0 pixels of the tile's footprint
    assert origin[0] <= minx and maxx <= origin[0] + 64 * downsample
    assert origin[1] <= miny and maxy <= origin[1] + 48 * downsample


def test_annotations_from_masks_need_a_matching_region(tmp_path):
    tile = Tile(np.zeros((8, 8, 3), np.uint8), (0.0, 0.0), 1.0)
    with pytest.raises(ValueError, match="empty"):
        write_geojson([(np.zeros((8, 8), bool), "Tumor")], tmp_path / "e.geojson", tile=tile)
    with pytest.raises(ValueError, match="tile is"):
        annotations_frame([np.ones((4, 4), bool)], tile=tile)
    with pytest.raises(ValueError, match="mask_or_geometry, class_name"):
        annotations_frame([(box(0, 0, 1, 1), "Tumor", "extra")])
    with pytest.raises(ValueError, match="not a number"):
        annotations_frame([Annotation(box(0, 0, 1, 1), measurements={"model": "vit_b"})])
    assert not (tmp_path / "e.geojson").exists()


def test_annotation_fields_reach_the_file(tmp_path):
    annotation = Annotation(
        np.eye(6, dtype=bool) | np.eye(6, k=1, dtype=bool),
        "Tumor",
        name="first",
        measurements={"histoclick clicks": 3, "histoclick predicted IoU": 0.875},
        is_locked=True,
        color=(9, 8, 7),
    )
    tile = Tile(np.zeros((6, 6, 3), np.uint8), (100.0, 200.0), 2.0)
    frame = read_geojson(write_geojson([annotation], tmp_path / "a.geojson", tile=tile))
    row = frame.iloc[0]
    assert (row["name"], row["classification"]) == ("first", "Tumor")
    # Annotation.color is the object's own colour; the class keeps QuPath's colour for Tumor.
    assert (row["object_color"], row["color"]) == ((9, 8, 7), (200, 0, 0))
    assert row["is_locked"]
    assert row["measurements"] == {"histoclick clicks": 3.0, "histoclick predicted IoU": 0.875}
    assert len(select_classes(frame, "Tumor")) == 1 and select_classes(frame, ["Stroma"]).empty


@pytest.mark.slow
def test_click_session_mask_becomes_geojson_in_one_call(tmp_path):
    from histoclick import ClickSession, load_model
    from histoclick.datasets.synthetic import make_tile

    image = make_tile(seed=3, size=96)[0]
    tile = Tile(image, (4096.0, 1024.0), 4.0)
    session = ClickSession(load_model("vit_tiny", device="cpu"), tile)
    with pytest.raises(ValueError, match="click at least once"):
        Annotation.from_session(session, "Tumor")
    result = session.click(40, 50)
    assert result.mask.any()
    write_geojson([Annotation.from_session(session, "Tumor")], tmp_path / "s.geojson")

    row = read_geojson(tmp_path / "s.geojson").iloc[0]
    np.testing.assert_array_equal(geometry_to_mask(row.geometry, image.shape[:2], tile.origin, 4.0), result.mask)
    assert row["name"] == "histoclick vit_tiny"
    assert row["measurements"] == {
        "histoclick clicks": 1.0,
        "histoclick predicted IoU": pytest.approx(result.predicted_iou),
    }
