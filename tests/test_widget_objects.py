"""The ClickWidget's object list and its save target: list content, go-to, delete and reclassify
on disk (histoclick's objects only, unless asked), changes by others picked up, and GeoJSON edits
by UUID that never drop other objects. A real baseline method (RegionGrowing), the synthetic
pyramidal slide (0.25 um/px), real files."""

import json

import numpy as np
import pytest
import shapely
from shapely.geometry import box

from histoclick.evaluation.baselines import RegionGrowing
from histoclick.geometry import mask_to_geometry, simplify
from histoclick.qupath import read_geojson, write_geojson
from histoclick.qupath.geojson import GeoJSONCache, edit_geojson, geometry_mapping
from histoclick.widgets import ClickWidget
from histoclick.widgets.saving import SaveTarget

FOREIGN = box(1200, 800, 1300, 1000)  # 100 x 200 level-0 pixels: 20,000 px² = 1,250 µm²


def _widget(slide, out, **kwargs):
    return ClickWidget(
        slide, RegionGrowing(), geojson=out, downsample=16, origin=(0, 0), size=128, **kwargs
    )


def _accept_tissue(widget, cls="Tumor"):
    tissue = np.argwhere(widget.session.tile.image.mean(axis=2) < 200)
    row, column = tissue[len(tissue) // 2]
    widget.class_dropdown.value = cls
    widget.click(int(column), int(row))
    return widget.accept()


def test_the_list_shows_class_area_clicks_and_who_made_each_object(synthetic_slide, tmp_path):
    out = tmp_path / "objects.geojson"
    write_geojson([(FOREIGN, "Stroma")], out)
    widget = _widget(synthetic_slide.path, out)
    accepted = _accept_tissue(widget)

    theirs, mine = widget.object_list.rows
    assert (theirs.classification, theirs.area_um2, theirs.clicks) == ("Stroma", 1250.0, None)
    assert not theirs.histoclick and not theirs.editable and theirs.made_by == "unnamed"
    assert mine.object_id == accepted.object_id and mine.histoclick and mine.editable
    assert mine.area_um2 == pytest.approx(accepted.geometry.area * 0.25**2)
    assert (mine.classification, mine.clicks, mine.made_by) == ("Tumor", 1, "histoclick region_growing")
    labels = [label for label, _ in widget.object_list.select.options]
    assert labels[0] == "1: Stroma · 1,250 µm² · unnamed · read-only"
    assert labels[1].startswith("2: Tumor · ") and labels[1].endswith(" · 1 click · histoclick region_growing")
    # Saved objects carry histoclick's marker, as in QuPath projects.
    assert read_geojson(out)["metadata"].iloc[1] == {"histoclick": "created"}

    # Selecting a row goes to the object; a foreign one cannot be changed from the list.
    widget.object_list.select.value = 0
    assert box(*widget.viewport.bounds).contains(FOREIGN.centroid)
    assert widget.object_list.delete_button.disabled and "read-only" in widget.object_list.note.value
    widget.object_list.select.value = 1
    assert not widget.object_list.delete_button.disabled


def test_areas_are_not_available_without_the_slides_pixel_size(tmp_path):
    import cv2

    image = np.full((256, 256, 3), 240, np.uint8)
    cv2.circle(image, (128, 128), 50, (120, 40, 160), -1)
    cv2.imwrite(str(tmp_path / "plain.png"), image)
    out = tmp_path / "o.geojson"
    widget = ClickWidget(tmp_path / "plain.png", RegionGrowing(), geojson=out, size=256, origin=(0, 0))
    widget.click(128, 128)
    widget.accept()
    (row,) = widget.object_list.rows
    assert row.area_um2 is None and "area n/a" in widget.object_list.select.options[0][0]
    assert "no pixel size" in widget.object_list.header.value


def test_delete_and_reclassify_persist_and_foreign_objects_are_refused(synthetic_slide, tmp_path):
    out = tmp_path / "objects.geojson"
    write_geojson([(FOREIGN, "Stroma")], out)
    widget = _widget(synthetic_slide.path, out)
    first = _accept_tissue(widget).object_id
    widget.click(20, 20)
    second = widget.accept().object_id
    foreign = read_geojson(out)["id"].iloc[0]

    widget.class_dropdown.value = "Necrosis"
    widget.object_list.select.value = 1
    widget.object_list.reclassify_button.click()  # Set class: the dropdown's class
    widget.delete_object(second)
    frame = read_geojson(out)
    assert list(frame["id"]) == [foreign, first] and list(frame["classification"]) == ["Stroma", "Necrosis"]
    assert frame.geometry.iloc[0].equals(FOREIGN)

    with pytest.raises(PermissionError, match="edit_foreign=True"):
        widget.delete_object(foreign)
    widget.object_list.select.value = 0
    widget.object_list.delete_button.click()  # disabled in the page; the action refuses too
    assert "PermissionError" in widget.last_error and len(read_geojson(out)) == 2
    with pytest.raises(KeyError, match="no object with id"):
        widget.reclassify_object("00000000-0000-0000-0000-000000000000", "Tumor")

    bold = _widget(synthetic_slide.path, out, edit_foreign=True)
    bold.reclassify_object(foreign, "Other")
    assert read_geojson(out)["classification"].iloc[0] == "Other"
    bold.delete_object(foreign)
    assert list(read_geojson(out)["id"]) == [first] and len(bold.object_list.rows) == 1


def test_saves_update_the_list_without_reading_the_file_and_others_writes_are_read(
    synthetic_slide, tmp_path
):
    out = tmp_path / "shared.geojson"
    widget = _widget(synthetic_slide.path, out)
    _accept_tissue(widget)
    widget.click(20, 20)
    widget.accept()
    assert widget.target.reads == 0  # created by the widget: never read
    assert _same(widget.annotations(), read_geojson(out))

    # Another writer (another notebook or script; the file's lock makes them take turns).
    write_geojson([(box(10, 10, 90, 90), "Stroma")], out, mode="append")
    widget.reset()  # any redraw looks at the file
    assert widget.target.reads == 1 and len(widget.object_list.rows) == 3
    widget.click(20, 20)
    widget.accept()
    assert widget.target.reads == 1 and _same(widget.annotations(), read_geojson(out))
    assert "(4 objects there)" in widget.status.value


def _same(ours, on_disk):
    columns = [c for c in on_disk.columns if c != "geometry"]
    return ours[columns].astype(str).equals(on_disk[columns].astype(str)) and all(
        a.equals(b) for a, b in zip(ours.geometry, on_disk.geometry, strict=True)
    )


def test_edits_by_uuid_keep_every_other_object_nested_ones_included(tmp_path):
    out = tmp_path / "nested.geojson"
    ids = ["11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222",
           "33333333-3333-4333-8333-333333333333"]  # fmt: skip
    child = {"type": "Feature", "id": ids[2], "geometry": geometry_mapping(box(1, 1, 2, 2)),
             "properties": {"objectType": "annotation", "custom": [1, 2]}}  # fmt: skip
    parent = {"type": "Feature", "id": ids[1], "geometry": geometry_mapping(box(0, 0, 9, 9)),
              "properties": {"objectType": "annotation", "childObjects": [child]}}  # fmt: skip
    out.write_text(json.dumps({"type": "FeatureCollection", "extra": 1, "features": [parent]}))
    cache = GeoJSONCache()
    edit = edit_geojson(out, reclassify={ids[2]: "Tumor"}, cache=cache)  # a nested object
    assert edit.before is not None and edit.after == cache.state
    document = json.loads(out.read_text())
    assert document["extra"] == 1
    assert document["features"][0]["properties"]["childObjects"][0]["properties"]["custom"] == [1, 2]
    frame = read_geojson(out)
    assert list(frame["classification"]) == [None, "Tumor"] and frame["parent_id"].iloc[1] == ids[1]

    # Putting an object in place of the parent keeps its children; deleting it moves them up.
    replaced = frame.iloc[:1].copy()
    replaced["classification"] = ["Stroma"]
    edit_geojson(out, put=replaced, cache=cache)
    assert list(read_geojson(out)["classification"]) == ["Stroma", "Tumor"]
    edit_geojson(out, put=[(box(20, 20, 30, 30), "Other")], delete=[ids[1]], cache=cache)
    frame = read_geojson(out)
    assert list(frame["classification"]) == ["Tumor", "Other"] and frame["parent_id"].iloc[0] is None
    with pytest.raises(KeyError, match="nothing was changed"):
        edit_geojson(out, delete=[ids[1]], cache=cache)
    assert len(read_geojson(out)) == 2

    # The cached text is reused only while the file is the one written.
    write_geojson([(box(40, 40, 50, 50), "Necrosis")], out, mode="append")
    edit_geojson(out, delete=[ids[2]], cache=cache)
    assert list(read_geojson(out)["classification"]) == ["Other", "Necrosis"]


def test_the_target_refuses_to_change_others_objects_unless_forced(tmp_path):
    out = tmp_path / "t.geojson"
    write_geojson([(FOREIGN, "Stroma")], out)
    target = SaveTarget(out)
    foreign = target.read()["id"].iloc[0]
    with pytest.raises(PermissionError, match="not created by histoclick"):
        target.reclassify(foreign, "Tumor")
    target.reclassify(foreign, "Tumor", force=True)
    assert _same(target.read(), read_geojson(out)) and target.reads == 1


def test_fast_simplification_matches_the_topology_preserving_one_within_tolerance():
    rng = np.random.default_rng(0)
    mask = rng.random((48, 48)) < 0.55  # ragged: specks, holes, corner touches
    exact = mask_to_geometry(mask)
    simplified = simplify(exact, 0.5)
    assert simplified.is_valid and shapely.hausdorff_distance(simplified, exact) <= 0.5 + 1e-9
    parts = shapely.get_parts
    assert len(parts(simplified)) == len(parts(exact))
    assert shapely.get_num_coordinates(simplified) <= shapely.get_num_coordinates(exact)


def test_a_project_images_list_deletes_and_reclassifies_histoclicks_objects_only(
    qupath, synthetic_slide, tmp_path
):
    from histoclick.qupath import open_project

    with open_project(tmp_path / "project", mode="x") as project:
        project.add_image(synthetic_slide.path)
        image = project.image(0)
        image.entry.hierarchy.add_annotation(FOREIGN)  # a person's object: no histoclick marker
        project.save()
        widget = ClickWidget(image, RegionGrowing(), downsample=16, origin=(0, 0), size=128)
        first = _accept_tissue(widget).object_id
        widget.click(20, 20)
        second = widget.accept().object_id
        theirs, mine, _ = widget.object_list.rows
        assert not theirs.editable and mine.editable and mine.area_um2 > 0
        widget.reclassify_object(first, "Necrosis")
        widget.delete_object(second)
        with pytest.raises(PermissionError, match="edit_foreign=True"):
            widget.delete_object(theirs.object_id)
        assert widget.target.reads == 1
    with open_project(tmp_path / "project") as project:
        saved = project.image(0).annotations()
    assert list(saved["id"]) == [theirs.object_id, first]
    assert list(saved["classification"]) == [None, "Necrosis"]
