"""ClickWidget without a browser: real SAM (vit_tiny), the synthetic pyramidal slide, real files.

The browser end of the widget (ipyevents in JupyterLab/Voila) is tested in test_widget_browser.py;
here the same code paths are driven from Python, including the event dictionaries ipyevents sends.
"""

import cv2
import numpy as np
import pytest
import shapely
from shapely.geometry import box

from histoclick import load_model
from histoclick.qupath import QuPathNotFoundError, find_qupath, open_project, read_geojson
from histoclick.widgets import DEFAULT_CLASSES, ClickWidget
from histoclick.overlay import NEGATIVE_COLOR, POSITIVE_COLOR
from histoclick.widgets.viewport import Viewport, zoom_levels


@pytest.fixture(scope="module")
def model():
    return load_model("vit_tiny", device="cpu")


def decode(png: bytes) -> np.ndarray:
    return cv2.cvtColor(
        cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB
    )


def pointer_event(widget, kind, x, y, shown=(384.0, 384.0), left=10.5, top=20.25):
    """The message ipyevents sends for a click on the image shown at (left, top), size ``shown``."""
    content = {
        "event": kind,
        "button": 2 if kind == "contextmenu" else 0,
        "clientX": left + x,
        "clientY": top + y,
        "relativeX": round(x),
        "relativeY": round(y),
        "boundingRectLeft": left,
        "boundingRectTop": top,
        "boundingRectWidth": shown[0],
        "boundingRectHeight": shown[1],
    }
    widget._events._dom_handlers(content)


# ----- viewport maths ------------------------------------------------------------------------------


def test_display_coordinates_map_to_tile_pixels_by_floor():
    view = Viewport((0, 0), 256, 4.0, (2048, 1536))
    assert view.display_to_tile(0, 0, (384, 384)) == (0, 0)
    # 1.5 display pixels per tile pixel: 100.4 -> 66.93 -> 66; 200.7 -> 133.8 -> 133
    assert view.display_to_tile(100.4, 200.7, (384, 384)) == (66, 133)
    assert view.display_to_tile(383.9, 383.9, (384, 384)) == (255, 255)
    assert view.display_to_tile(500, -3, (384, 384)) == (255, 0)  # clamped to the tile
    assert view.display_to_tile(17.9, 3, None) == (17, 3)
    with pytest.raises(ValueError, match="displayed size"):
        view.display_to_tile(1, 1, (0, 10))


def test_neighbours_tile_the_slide_and_stop_at_its_edges():
    view = Viewport((0, 0), 256, 4.0, (2048, 1536))
    assert view.extent == 1024 and view.bounds == (0, 0, 1024, 1024)
    assert view.neighbour("left") is None and view.neighbour("up") is None
    assert view.neighbour("right").origin == (1024, 0)
    assert view.neighbour("down").origin == (0, 1024)
    assert view.neighbour("right").neighbour("right") is None  # x = 2048 is past the slide
    assert Viewport((300, 0), 256, 4.0, (2048, 1536)).neighbour("left").origin == (0, 0)
    with pytest.raises(ValueError, match="side must be one of"):
        view.neighbour("north")


def test_centring_keeps_the_viewport_on_the_slide():
    view = Viewport((0, 0), 256, 4.0, (2048, 1536))
    assert view.centred_on(1024, 768).origin == (512, 256)
    assert view.centred_on(2040, 1530).origin == (1024, 512)
    assert view.centred_on(5, 5).origin == (0, 0)
    assert view.centred_on(1024, 768, downsample=1.0).origin == (896, 640)
    assert Viewport((9999, -5), 256, 1.0, (2048, 1536)).origin == (2047, 0)
    assert zoom_levels((2048, 1536), 256) == [1.0, 2.0, 4.0, 8.0]


# ----- clicks, overlay, undo -----------------------------------------------------------------------


def test_left_and_right_clicks_from_ipyevents_reach_the_session_and_the_overlay(
    synthetic_slide, model, tmp_path
):
    widget = ClickWidget(
        synthetic_slide.path,
        model,
        geojson=tmp_path / "o.geojson",
        magnification=10,
        origin=(0, 0),
        size=256,
        display_width=384,
    )
    widget.wait_for_embedding()  # clicks on the image are refused until it is ready
    assert widget.image.width == "384"
    before = decode(widget.image.value)
    assert before.shape == (256, 256, 3)
    np.testing.assert_array_equal(before, widget.session.tile.image)  # nothing drawn yet

    pointer_event(widget, "click", 100.4, 200.7)
    (first,) = widget.session.clicks
    assert (first.x, first.y, first.is_positive) == (66, 133, True)
    after = decode(widget.image.value)
    assert not np.array_equal(after, before)
    assert (
        np.abs(after[135, 68].astype(int) - POSITIVE_COLOR).max() < 40
    )  # inside the marker disc, off its "+"
    assert widget.state()["clicks"] == [{"x": 66, "y": 133, "positive": True}]
    assert widget.state()["model_seconds"] > 0 and "predicted IoU" in widget.status.value

    pointer_event(widget, "contextmenu", 300.0, 30.0)
    second = widget.session.clicks[1]
    assert (second.x, second.y, second.is_positive) == (200, 20, False)
    assert np.abs(decode(widget.image.value)[22, 202].astype(int) - NEGATIVE_COLOR).max() < 40

    widget.mode.value = False  # the toggle makes left clicks negative
    pointer_event(widget, "click", 3.0, 3.0)
    assert widget.session.clicks[2].is_positive is False

    widget.undo()
    assert len(widget.session.clicks) == 2
    widget.reset()
    assert widget.session.clicks == []
    np.testing.assert_array_equal(decode(widget.image.value), widget.session.tile.image)


def test_ui_errors_land_in_the_status_line(synthetic_slide, model):
    widget = ClickWidget(synthetic_slide.path, model, magnification=10, origin=(0, 0), size=256)
    with pytest.raises(ValueError, match="click on the object first"):
        widget.accept()
    accept = next(
        b for b in widget.children[0].children if getattr(b, "description", "") == "Accept"
    )
    accept.click()
    assert "click on the object first" in widget.last_error
    assert "click on the object first" in widget.status.value
    widget.click(10, 10)
    with pytest.raises(ValueError, match="nowhere to save"):
        widget.accept()
    assert widget.state()["pending_parts"] == 0 and len(widget.session.clicks) == 1


# ----- accept and save -----------------------------------------------------------------------------


def test_accept_appends_annotations_to_geojson(synthetic_slide, model, tmp_path):
    out = tmp_path / "objects.geojson"
    # One viewport holds the whole slide, so no neighbour is offered and Accept saves at once.
    widget = ClickWidget(
        synthetic_slide.path, model, geojson=out, downsample=16, origin=(0, 0), size=128,
        outline_tolerance=None,  # the exact pixel outline
    )
    assert widget.class_dropdown.options == DEFAULT_CLASSES
    widget.click(40, 50)
    # The 2048 x 2048 viewport runs past the slide's bottom (y = 1536): saved objects stop there.
    expected = widget.session.geometry().intersection(box(0, 0, 2048, 1536))
    assert widget.session.geometry().bounds[3] > 1536
    widget.class_dropdown.value = "Stroma"
    accepted = widget.accept()
    assert accepted.saved and accepted.open_sides == ()
    assert accepted.geometry.equals(expected)
    widget.click(80, 20, positive=True)
    widget.accept()

    frame = read_geojson(out)
    assert list(frame["classification"]) == ["Stroma", "Stroma"]
    assert frame.geometry.iloc[0].equals(expected)
    assert frame["measurements"].iloc[0]["histoclick clicks"] == 1.0
    assert frame["name"].iloc[0] == "histoclick vit_tiny"
    assert widget.saved_count == 2 and widget.session.clicks == []
    assert len(widget.annotations()) == 2
    assert [label.split(" · ")[0] for label, _ in widget.object_list.select.options] == [
        "1: Stroma",
        "2: Stroma",
    ]

    # A second widget on the same file appends after what is there and shows it.
    again = ClickWidget(
        synthetic_slide.path, model, geojson=out, downsample=16, origin=(0, 0), size=128
    )
    assert len(again.annotations()) == 2
    again.click(60, 60)
    again.accept()
    assert len(read_geojson(out)) == 3


def test_accept_saves_at_once_and_continuing_extends_the_same_object(
    synthetic_slide, model, tmp_path
):
    out = tmp_path / "big.geojson"
    widget = ClickWidget(
        synthetic_slide.path, model, geojson=out, magnification=10, origin=(0, 0), size=256,
        outline_tolerance=None,
    )
    widget.click(250, 128)
    first = widget.session.geometry()
    accepted = widget.accept()
    # vit_tiny's (random) mask reaches the right and bottom borders of the viewport: the object
    # is written all the same, and continuing there is offered.
    assert accepted.saved and set(accepted.open_sides) == {"right", "down"}
    (written,) = read_geojson(out).itertuples()
    assert written.id == accepted.object_id and written.geometry.equals(first)
    labels = [b.description for b in widget._continue_row.children[1:]]
    assert labels == ["Continue ▶", "Continue ▼", "Done"]

    widget.continue_to("right")
    assert widget.viewport.origin == (1024, 0)
    widget.click(5, 128)
    second = widget.session.geometry()
    accepted = widget.accept()
    assert "left" not in accepted.open_sides  # where the object came from is not offered again

    # Rewritten in place: one object, the same UUID, both parts merged in level-0 pixels.
    (saved,) = read_geojson(out).itertuples()
    assert saved.id == written.id == accepted.object_id
    assert saved.geometry.equals(shapely.union_all([first, second]))
    assert saved.geometry.bounds[2] > 1024 > saved.geometry.bounds[0]
    assert saved.measurements["histoclick viewports"] == 2.0
    assert saved.measurements["histoclick clicks"] == 2.0
    assert widget.saved_count == 1 and widget.state()["pending_parts"] == 0

    # Back in a viewport the object already has a part in, Accept starts a new object.
    widget.finish()
    assert widget.state()["object_parts"] == 0
    widget.click(100, 100)
    assert widget.accept().object_id != written.id
    assert len(read_geojson(out)) == 2 and widget.saved_count == 2


def test_discard_drops_only_the_part_a_failed_write_left(synthetic_slide, model, tmp_path):
    out = tmp_path / "x.geojson"
    out.write_text('{"type": "FeatureCollection", "features": []}')
    out.chmod(0o444)
    widget = ClickWidget(
        synthetic_slide.path, model, geojson=out, magnification=10, origin=(0, 0), size=256
    )
    widget.click(250, 128)
    with pytest.raises(PermissionError):
        widget.accept()
    widget.click(20, 20)
    with pytest.raises(ValueError, match="not saved yet: press Save now"):
        widget.accept()  # a second object would push the unsaved one out
    widget.discard()
    assert widget.state()["pending_parts"] == 0 and widget._continue_row.layout.display == "none"
    out.chmod(0o644)
    assert widget.accept().saved and len(read_geojson(out)) == 1


# ----- navigation ----------------------------------------------------------------------------------


def test_navigation_pans_zooms_and_jumps(synthetic_slide, model, tmp_path):
    out = tmp_path / "nav.geojson"
    widget = ClickWidget(
        synthetic_slide.path, model, geojson=out, magnification=10, origin=(0, 0), size=256
    )
    widget.pan("right")
    assert widget.viewport.origin == (1024, 0)
    with pytest.raises(ValueError, match="slide's edge"):
        widget.pan("right")
    widget.pan("left")
    assert widget.method.embed_reused  # computed once per viewport, then cached

    widget.set_magnification(20)  # keeps the centre (512, 512)
    assert widget.viewport.downsample == 2.0 and widget.viewport.origin == (256, 256)
    assert widget.zoom_dropdown.value == 2.0 and widget.state()["viewport"]["magnification"] == 20.0
    widget.zoom_dropdown.value = 4.0  # the dropdown drives the same change
    assert widget.viewport.downsample == 4.0 and widget.viewport.origin == (0, 0)
    assert [label for label, _ in widget.zoom_dropdown.options] == ["40x", "20x", "10x", "5x"]

    tissue = widget.slide.tissue_tiles(256, magnification=10)
    widget.next_tissue_tile()
    assert widget.viewport.origin in tissue

    widget.set_downsample(16)  # not offered in the dropdown yet: added
    assert widget.zoom_dropdown.value == 16 and widget.zoom_dropdown.options[-1] == ("2.5x", 16)
    widget.click(60, 40)
    widget.accept()
    target = read_geojson(out).geometry.iloc[0]
    assert box(0, 0, 2048, 1536).contains(
        target
    )  # the viewport ran past the slide; the object does not
    widget.set_downsample(4)
    widget.go_to(0, 0)
    assert widget.viewport.origin == (0, 0)
    widget.jump_to_annotation(0)
    minx, miny, maxx, maxy = target.bounds
    assert box(*widget.viewport.bounds).contains(
        shapely.Point((minx + maxx) / 2, (miny + maxy) / 2)
    )
    assert widget.viewport.origin != (0, 0)
    outline = decode(widget.image.value)
    assert not np.array_equal(outline, widget.session.tile.image)  # the saved object is outlined


def test_an_image_file_without_magnification_uses_downsamples(tmp_path, model):
    image = np.full((300, 400, 3), 240, np.uint8)
    cv2.circle(image, (200, 150), 60, (120, 40, 160), -1)
    path = tmp_path / "plain.png"
    cv2.imwrite(str(path), image)
    widget = ClickWidget(path, model, geojson=tmp_path / "p.geojson", size=256, origin=(0, 0))
    assert widget.zoom_dropdown.options[0] == ("1/1 scale", 1.0)
    assert widget.state()["viewport"]["magnification"] is None
    with pytest.raises(ValueError, match="no objective power"):
        widget.set_magnification(10)
    widget.pan("right")
    assert widget.viewport.origin == (256, 0)
    assert widget.session.tile.image.shape == (
        256,
        256,
        3,
    )  # past the image's edge: white background


def _qupath_missing() -> str | None:
    try:
        find_qupath()
    except QuPathNotFoundError as error:
        return str(error)
    return None


@pytest.mark.skipif(
    _qupath_missing() is not None, reason=f"needs QuPath for paquo: {_qupath_missing()}"
)
def test_accept_adds_to_a_qupath_project(synthetic_slide, model, tmp_path):
    with open_project(tmp_path / "project", mode="x") as project:
        project.add_image(synthetic_slide.path)
        widget = ClickWidget(
            project.image(0), model, downsample=16, origin=(0, 0), size=128, outline_tolerance=None
        )
        widget.click(40, 50)
        expected = widget.session.geometry().intersection(box(0, 0, 2048, 1536))
        widget.accept()
    with open_project(tmp_path / "project") as project:
        saved = project.image(0).annotations()
    assert len(saved) == 1 and saved.geometry.iloc[0].equals(expected)
    assert saved["classification"].iloc[0] == widget.class_dropdown.value
    assert box(0, 0, 2048, 1536).contains(saved.geometry.iloc[0])


# ----- saving under faults ---------------------------------------------------------------------


def test_a_failed_save_is_shown_and_keeps_the_object_until_save_now_succeeds(
    synthetic_slide, model, tmp_path
):
    out = tmp_path / "objects.geojson"
    out.write_text('{"type": "FeatureCollection", "features": []}')
    out.chmod(0o444)  # histoclick refuses to replace a read-only file
    widget = ClickWidget(synthetic_slide.path, model, geojson=out, downsample=16, origin=(0, 0), size=128)
    widget.click(40, 50)
    widget._guard(widget.accept)  # as the Accept button runs it
    assert widget.saved_count == 0 and widget.state()["pending_parts"] == 1
    assert "PermissionError" in widget.last_error and "read-only" in widget.last_error
    assert "not saved" in widget.status.value and "saved Tumor" not in widget.status.value
    assert widget._continue_row.layout.display == "flex"  # Save now / Discard are offered
    assert read_geojson(out).empty

    out.chmod(0o644)
    widget._guard(widget.finish)  # the Save now button
    assert widget.last_error is None and widget.saved_count == 1
    assert "saved Tumor object" in widget.status.value
    assert len(read_geojson(out)) == 1 and widget.state()["pending_parts"] == 0


def test_the_object_list_shows_what_other_processes_wrote(synthetic_slide, model, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "shared.geojson"
    widget = ClickWidget(synthetic_slide.path, model, geojson=out, downsample=16, origin=(0, 0), size=128)
    other = (
        "import sys; from shapely.geometry import box; from histoclick.qupath import write_geojson; "
        "write_geojson([(box(10, 10, 90, 90), 'Stroma')] * 3, sys.argv[1], mode='append')"
    )
    subprocess.run([sys.executable, "-c", other, str(out)], check=True, timeout=120)
    widget.click(40, 50)
    widget.accept()
    assert len(read_geojson(out)) == 4
    assert len(widget.annotations()) == 4 and len(widget.object_list.rows) == 4
    assert "(4 objects there)" in widget.status.value


def test_closing_the_widget_twice_is_harmless(synthetic_slide, model, tmp_path):
    widget = ClickWidget(synthetic_slide.path, model, geojson=tmp_path / "c.geojson", downsample=16, size=128)
    widget.close()
    widget.close()
    with pytest.raises(Exception, match="closed"):
        widget.slide.read_region(0, 0, 8, 8)


# ----- where a click lands -------------------------------------------------------------------------


def test_a_click_on_a_pixel_centre_lands_there_when_the_image_edge_is_fractional(
    synthetic_slide, model
):
    # Chromium reports mouse events in whole CSS pixels (the position truncated; measured in
    # test_widget_browser.py) while the image's box may start at 20.25: the centre of tile row 200
    # (unscaled) is at 220.75, reported as 220, which the plain difference put on row 199.
    widget = ClickWidget(synthetic_slide.path, model, magnification=10, origin=(0, 0), size=256)
    widget.wait_for_embedding()
    for column, row, left, top in ((100, 200, 10.0, 20.25), (37, 3, 8.75, 100.5), (255, 0, 0.1, 0.9)):
        x, y = left + column + 0.5, top + row + 0.5
        widget._events._dom_handlers(
            {
                "event": "click",
                "button": 0,
                "clientX": float(int(x)),
                "clientY": float(int(y)),
                "boundingRectLeft": left,
                "boundingRectTop": top,
                "boundingRectWidth": 256.0,
                "boundingRectHeight": 256.0,
            }
        )
        assert widget.last_error is None
        last = widget.session.clicks[-1]
        assert (last.x, last.y) == (column, row)


def test_saved_outlines_are_simplified_within_half_a_tile_pixel_by_default(
    synthetic_slide, model, tmp_path
):
    widget = ClickWidget(
        synthetic_slide.path, model, geojson=tmp_path / "s.geojson", magnification=10,
        origin=(0, 0), size=256,
    )
    widget.click(250, 128)
    exact = widget.session.geometry()
    saved = widget.accept().geometry
    # Each within half a tile pixel of the other (Hausdorff distance; buffers are far cheaper).
    within = 0.5 * widget.viewport.downsample + 1e-6
    assert exact.buffer(within).contains(saved) and saved.buffer(within).contains(exact)
    assert shapely.get_num_coordinates(saved) < shapely.get_num_coordinates(exact)
    assert abs(saved.area - exact.area) < 0.01 * exact.area
