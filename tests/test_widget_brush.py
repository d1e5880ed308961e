"""Brush and eraser strokes over the click widget's mask: real methods (RegionGrowing, and vit_tiny
with the real adaptation engine once), the synthetic pyramidal slide, the GeoJSON file read back.

Stroke pixels are checked against shapely's exact point-to-polyline distance, an independent
computation from the widget's own (numpy, segment by segment)."""

import numpy as np
import pytest
import shapely

from histoclick import load_model
from histoclick.adaptation import AdaptConfig, Adapter
from histoclick.evaluation.baselines import RegionGrowing
from histoclick.geometry import geometry_to_mask
from histoclick.qupath import read_geojson
from histoclick.widgets import ClickWidget
from histoclick.widgets.brush import Drag, stroke_pixels

SIZE = 128


def within(points, radius, shape=(SIZE, SIZE)) -> np.ndarray:
    """Pixels (i, j) whose position (x=j, y=i) is within ``radius`` of the polyline (shapely)."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    line = shapely.LineString(points) if len(points) > 1 else shapely.Point(points[0])
    distance = shapely.distance(shapely.points(cols.ravel(), rows.ravel()), line)
    return distance.reshape(shape) <= radius


def open_widget(slide, tmp_path, method=None, **kwargs):
    return ClickWidget(
        slide.path, method or RegionGrowing(), geojson=tmp_path / "objects.geojson",
        magnification=10, origin=(0, 0), size=SIZE, outline_tolerance=None, **kwargs,
    )


def drag_event(widget, kind, x, y, buttons=1, shown=(256.0, 256.0), left=10.5, top=20.25):
    """The message ipyevents sends for a mouse event at CSS offset (x, y) on the image shown at
    (left, top) with size ``shown`` (twice the tile: 2 CSS pixels per tile pixel)."""
    content = {
        "event": kind, "button": 0, "buttons": buttons,
        "clientX": left + x, "clientY": top + y,
        "boundingRectLeft": left, "boundingRectTop": top,
        "boundingRectWidth": shown[0], "boundingRectHeight": shown[1],
    }
    handlers = widget._moves if kind == "mousemove" else widget._drags
    handlers._dom_handlers(content)


@pytest.mark.parametrize(
    "points, radius",
    [
        ([(30, 40)], 5),
        ([(10, 20), (40.5, 33), (41, 90)], 6.5),
        ([(0, 0), (127, 127)], 0),
        ([(120, 5), (140, -9)], 9),  # runs off the tile
    ],
)
def test_a_stroke_covers_exactly_the_pixels_within_its_radius_of_the_polyline(points, radius):
    np.testing.assert_array_equal(stroke_pixels(points, radius, (SIZE, SIZE)), within(points, radius))


def test_stroke_arguments_are_checked():
    with pytest.raises(ValueError, match="at least 0"):
        stroke_pixels([(1, 1)], -1, (8, 8))
    with pytest.raises(ValueError, match="finite"):
        stroke_pixels([], 2, (8, 8))
    with pytest.raises(ValueError, match="finite"):
        stroke_pixels([(1, 2, 3)], 2, (8, 8))


def test_brush_adds_eraser_removes_and_strokes_survive_a_later_click(synthetic_slide, tmp_path):
    widget = open_widget(synthetic_slide, tmp_path)
    prediction = widget.click(60, 60).mask.copy()
    stroke = [(5, 5), (30, 12)]
    widget.paint(stroke, radius=4)
    np.testing.assert_array_equal(widget.session.mask, prediction | within(stroke, 4))
    eraser = [(60, 60), (70, 64)]
    widget.paint(eraser, radius=3, erase=True)
    expected = (prediction | within(stroke, 4)) & ~within(eraser, 3)
    np.testing.assert_array_equal(widget.session.mask, expected)
    assert widget.state()["mask_pixels"] == expected.sum() and widget.state()["strokes"] == 2

    # A later click predicts again from the clicks; both strokes are applied over it, in order.
    step = widget.click(100, 100, positive=False)
    after = (step.mask | within(stroke, 4)) & ~within(eraser, 3)
    np.testing.assert_array_equal(widget.session.mask, after)
    # The eraser after the brush wins where they overlap; in the other order the brush wins.
    widget.reset()
    widget.paint([(20, 20)], radius=6)
    widget.paint([(20, 20)], radius=3, erase=True)
    np.testing.assert_array_equal(widget.session.mask, within([(20, 20)], 6) & ~within([(20, 20)], 3))
    widget.close()


def test_undo_forgets_strokes_and_clicks_in_the_order_made_and_reset_both(synthetic_slide, tmp_path):
    widget = open_widget(synthetic_slide, tmp_path)
    first = widget.click(60, 60).mask.copy()
    widget.paint([(5, 5)], radius=3)
    second = widget.click(90, 30).mask.copy()
    widget.paint([(120, 120)], radius=2, erase=False)
    brush1, brush2 = within([(5, 5)], 3), within([(120, 120)], 2)
    np.testing.assert_array_equal(widget.session.mask, second | brush1 | brush2)
    widget.undo()  # the second stroke
    np.testing.assert_array_equal(widget.session.mask, second | brush1)
    widget.undo()  # the second click
    assert len(widget.session.clicks) == 1
    np.testing.assert_array_equal(widget.session.mask, first | brush1)
    widget.undo()  # the first stroke
    np.testing.assert_array_equal(widget.session.mask, first)
    widget.undo()  # the first click: nothing left
    assert widget.session.mask is None and widget.session.clicks == []

    widget.click(60, 60)
    widget.paint([(5, 5)], radius=3)
    widget.reset()
    assert widget.session.mask is None and widget.session.strokes == [] and widget.session.clicks == []
    widget.close()


def test_accept_saves_the_edited_mask_to_the_pixel(synthetic_slide, tmp_path):
    widget = open_widget(synthetic_slide, tmp_path)
    widget.click(60, 60)
    widget.paint([(3, 100), (40, 120)], radius=5)
    widget.paint([(60, 60), (60, 75)], radius=4, erase=True)
    edited = widget.session.mask.copy()
    tile = widget.session.tile
    widget.accept()
    (shape,) = read_geojson(tmp_path / "objects.geojson").geometry
    np.testing.assert_array_equal(
        geometry_to_mask(shape, edited.shape, tile.origin, tile.downsample), edited
    )
    assert widget.session.mask is None  # accepted: the viewport starts afresh

    # Strokes alone (no click) make an object too.
    widget.paint([(20, 20), (30, 25)], radius=4)
    widget.accept()
    objects = read_geojson(tmp_path / "objects.geojson")
    np.testing.assert_array_equal(
        geometry_to_mask(objects.geometry.iloc[1], edited.shape, tile.origin, tile.downsample),
        within([(20, 20), (30, 25)], 4),
    )
    # No prediction, so no predicted IoU (NaN, which GeoJSON leaves out); no click.
    assert objects.measurements.iloc[1] == {"histoclick clicks": 0.0, "histoclick viewports": 1.0}
    widget.close()


def test_a_drag_in_the_browser_paints_one_stroke_and_clicks_do_not_prompt(synthetic_slide, tmp_path):
    widget = open_widget(synthetic_slide, tmp_path, display_width=256)
    assert widget._moves.watched_events == []  # Click mode: no message per pointer move
    widget.brush.mode.value = "brush"
    assert widget._moves.watched_events == ["mousemove"]
    widget.brush.radius.value = 3
    drag_event(widget, "mousedown", 20, 20)  # tile pixel (10, 10): 2 CSS pixels per tile pixel
    drag_event(widget, "mousemove", 60, 24)
    drag_event(widget, "mousemove", 61, 81)
    drag_event(widget, "mouseup", 101, 81)
    widget._events._dom_handlers(  # the click the browser sends after the drag
        {"event": "click", "button": 0, "clientX": 111.5, "clientY": 101.25, "boundingRectLeft": 10.5,
         "boundingRectTop": 20.25, "boundingRectWidth": 256.0, "boundingRectHeight": 256.0}
    )
    assert widget.last_error is None and widget.session.clicks == []
    assert len(widget.session.strokes) == 1
    path = [(10, 10), (30, 12), (30, 40), (50, 40)]
    np.testing.assert_array_equal(widget.session.mask, within(path, 3))
    drag_event(widget, "mousemove", 200, 200)  # after mouseup: no stroke in progress
    drag_event(widget, "mousemove", 200, 200, buttons=0)
    assert len(widget.session.strokes) == 1

    widget.brush.mode.value = "eraser"
    drag_event(widget, "mousedown", 60, 24)
    drag_event(widget, "mouseleave", 250, 24)  # leaving the image ends the stroke
    drag_event(widget, "mousemove", 250, 24)
    np.testing.assert_array_equal(widget.session.mask, within(path, 3) & ~within([(30, 12)], 3))
    widget.undo()
    np.testing.assert_array_equal(widget.session.mask, within(path, 3))
    widget.close()


def test_drag_follows_the_left_button():
    drag = Drag()
    assert drag.update({"event": "mousemove", "buttons": 1}, (1, 1)) == []  # no drag yet
    assert drag.update({"event": "mousedown", "button": 2}, (1, 1)) == []  # right button
    assert drag.update({"event": "mousedown", "button": 0}, (1, 1)) == [(1, 1)]
    assert drag.update({"event": "mousemove", "buttons": 1}, (4, 1)) == [(1, 1), (4, 1)]
    assert drag.update({"event": "mousemove", "buttons": 0}, (9, 1)) == []  # released outside
    assert drag.update({"event": "mousemove", "buttons": 1}, (9, 2)) == []


def test_keys_b_and_e_switch_tools(synthetic_slide, tmp_path):
    widget = open_widget(synthetic_slide, tmp_path)
    for key, tool in (("b", "brush"), ("e", "eraser"), ("E", "click"), ("B", "brush")):
        widget._keys._dom_handlers({"event": "keydown", "key": key, "ctrlKey": False, "metaKey": False})
        assert widget.brush.mode.value == tool and widget.state()["tool"] == tool
        assert (f"{tool}: drag on the image" if tool != "click" else "click mode") in widget.status.value
    widget.close()


def test_adaptation_learns_the_edited_mask(synthetic_slide, tmp_path):
    model = load_model("vit_tiny", device="cpu", seed=0)
    config = AdaptConfig(
        steps=1, batch_size=1, max_extra_clicks=0, first_clicks="single", time_budget_s=None,
        replay_every=0, replay_size=1, replay_clicks=1, threads=1,
    )
    adapter = Adapter(model, config, background=False)
    widget = open_widget(synthetic_slide, tmp_path, method=model, adapter=adapter)
    widget.click(60, 60)
    widget.paint([(10, 10), (30, 30)], radius=5)
    widget.paint([(60, 60)], radius=8, erase=True)
    edited = widget.session.mask.copy()
    widget.accept()
    (pair,) = adapter.pairs
    np.testing.assert_array_equal(pair.mask, edited)
    widget.close()
    adapter.close()
